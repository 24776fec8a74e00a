"""The interface between an SSL algorithm and the trainer.

An algorithm does one job: given a batch, return the supervised loss of every labeled
example and the unsupervised loss ℓ_U(u) of every unlabeled example, never averaged and
never weighted (the trainer applies λ_u), together with the last-layer features and the
constant targets that the last-layer influence needs (Sec. 3.1): for every unlabeled row,
ℓ_U(u) must equal CE(target_u, head(feature_u)) with the mask folded into the target.
"""
import dataclasses
from typing import Dict, Optional

import tensorflow as tf


@dataclasses.dataclass
class SSLLosses:
    """What an SSL algorithm returns for one batch.

    Attributes:
      labeled: [B] supervised loss per labeled example.
      unlabeled: [U] unsupervised loss ℓ_U(u) per unlabeled example (no λ).
      labeled_features: [B, D] penultimate features of the labeled examples.
      labeled_targets: [B, K] their class-probability targets (one-hot labels).
      unlabeled_features: [U, D] features of the view that ℓ_U is computed on.
      unlabeled_targets: [U, K] constant targets, mask folded in (an all-zero row is an
        example whose ℓ_U is exactly zero, so its hypergradient is zero too).
      metrics: scalar summaries for logs (e.g. the mask rate).
      unlabeled_inputs: [U, ...] the model inputs of the view ℓ_U is computed on (the strong view for
        FixMatch and UDA): per-example gradients of parameters below the head start from them.
      unlabeled_weak_features: [U, D] features of the view the targets come from (the weak view of
        FixMatch and UDA; Pseudo-Label's one view). For influence variants.
      unlabeled_target_logits: [U, K] the logits the targets are made from (held constant). For a
        temperature on the influence's targets.
    """

    labeled: tf.Tensor
    unlabeled: tf.Tensor
    labeled_features: tf.Tensor
    labeled_targets: tf.Tensor
    unlabeled_features: tf.Tensor
    unlabeled_targets: tf.Tensor
    metrics: Dict[str, tf.Tensor] = dataclasses.field(default_factory=dict)
    unlabeled_inputs: Optional[tf.Tensor] = None
    unlabeled_weak_features: Optional[tf.Tensor] = None
    unlabeled_target_logits: Optional[tf.Tensor] = None


def forward_concat(model, views, training):
    """One forward over the concatenated views, so batch norm sees them together (as FixMatch and
    UDA do). views: list of [B_i, ...]. Returns [(features [B_i, D], logits [B_i, K])] per view."""
    sizes = [tf.shape(v)[0] for v in views]
    features = model.features(tf.concat(views, axis=0), training=training)
    logits = model.head(features)
    return list(zip(tf.split(features, sizes), tf.split(logits, sizes)))


class SSLAlgorithm:
    """Base class. Subclasses implement `losses`.

    The model must expose `features(x, training)` -> [B, D] and `head`, a Dense layer
    mapping features to logits (see influence_ssl.models.Classifier).
    """

    name = "base"
    # What the algorithm keeps across batches (a tf.Module of variables, e.g. a weighting rule's statistics), for
    # the run's checkpoint; None: nothing.
    state = None

    def example_weights(self, logits, ids=None):
        """w [U]: the weight the unlabeled loss gives each example whose pseudo-labels come from `logits` [U, K]
        (unlabeled ids [U]), the algorithm's state left as it is; None where it has none."""
        return None

    def losses(self, model, batch, *, training, step, update_state=None):
        """Compute SSLLosses for `batch`, a dict of tensors (keys per algorithm).

        Args:
          model: the classifier.
          batch: dict with at least "labeled_x", "labeled_y" ([B] int) and the
            algorithm's unlabeled views.
          training: forward in training mode (batch-norm statistics, dropout).
          step: scalar int tensor, the θ step (for schedules such as TSA).
          update_state: let the algorithm's state (`state`) take in this batch; None: as `training`. The θ step
            updates it, the Λ step passes False (it may forward in training mode, yet must leave it as it is).
        """
        raise NotImplementedError
