"""Alg. 1 under Keras' `fit`: a classifier that learns one weight λ_u per unlabeled example.

    model = WeightedSSLModel(classifier, PseudoLabel(), validation=(val_x, val_y), num_unlabeled=len(ux),
                             inner_steps=20)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(ssl_dataset(labeled, unlabeled), steps_per_epoch=100, epochs=3, callbacks=[...])
    model.example_weights.to_numpy()    # λ by unlabeled id

`train_step` is the Trainer's (steps.Alg1Steps, one engine): a θ step on the λ-weighted loss every step, and
after warm-up, every N θ steps, a Λ step on the same batch's D' and U' and a validation batch V'. λ, its
optimizer's state (M-Adam's moments), the step counters and the algorithm's state (a weighting rule's
statistics) are tracked by the model, so Keras' callbacks see them: BackupAndRestore restores them with θ,
TensorBoard logs the step's metrics, TerminateOnNaN stops a run whose loss, or whose hypergradient, became
NaN/Inf (the reported loss is NaN from then on). Keras'
`validation_data` keeps its usual meaning (compile with a loss to use it); V is the wrapper's own.
"""
import dataclasses

import tensorflow as tf
import tf_keras as keras

from influence_ssl.data.sampling import batch_indices
from influence_ssl.influence import InfluenceOptions
from influence_ssl.models import Classifier
from influence_ssl.optimizers import MaskedAdam
from influence_ssl.trainer.steps import Alg1Steps, check_influence, decayed_variables
from influence_ssl.weights import ExampleWeights


def ssl_dataset(labeled, unlabeled):
    """Alg. 1's θ batches from a labeled and an unlabeled tf.data.Dataset of batches.

    Args:
      labeled: elements (x [B, ...], y [B] int), or dicts with labeled_x and labeled_y.
      unlabeled: elements (x [U, ...], ids [U] int: each example's id in 0 .. |U|-1), or dicts with
        unlabeled_ids and the algorithm's views (unlabeled_x: Pseudo-Label; unlabeled_weak and
        unlabeled_strong: FixMatch, UDA).
    Returns:
      A Dataset of dicts, the batches an SSLAlgorithm reads; it ends when either input ends.
    """

    def merge(lab, unl):
        lab = lab if isinstance(lab, dict) else {"labeled_x": lab[0], "labeled_y": lab[1]}
        unl = unl if isinstance(unl, dict) else {"unlabeled_x": unl[0], "unlabeled_ids": unl[1]}
        return {**lab, **unl}

    return tf.data.Dataset.zip((labeled, unlabeled)).map(merge)


class WeightedSSLModel(keras.Model):
    """A classifier trained by `fit` on the λ-weighted SSL loss, with λ learned on a validation set.

    Args:
      classifier: an influence_ssl.models.Classifier, or a (backbone, head) pair: backbone maps inputs to
        features [B, D], head is a Dense layer (features -> logits [B, K]). Built.
      algorithm: an influence_ssl.ssl.SSLAlgorithm (PseudoLabel, FixMatch, UDA).
      validation: (x [V, ...], y [V] int), the validation set whose loss λ is learned on.
      num_unlabeled: |U|; unlabeled ids are 0 .. num_unlabeled - 1.
      inner_steps: θ steps per Λ step [N]; weight_warmup: θ steps before the first Λ step.
      weight_optimizer: Λ's optimizer (default MaskedAdam(0.01), the paper's M-Adam).
      weight_init: λ's initial value.
      influence: an InfluenceOptions (default: the paper's exact last-layer influence); its l2 and bias_l2
        are set from weight_decay and weight_decay_on.
      weight_decay, weight_decay_on: the L2 term wd·Σ½||w||² of the θ loss, on "kernels" or "all" variables.
      unlabeled_rampup: θ steps over which the unsupervised term ramps linearly to full weight (0: none).
      validation_batch: rows of V per Λ step, drawn by the Λ step's number (None: all of V, in order).
      seed: of that draw.
    Runs on one device (no tf.distribute strategy with several replicas).
    """

    def __init__(self, classifier, algorithm, validation, num_unlabeled, *, inner_steps=100, weight_warmup=0,
                 weight_optimizer=None, weight_init=1.0, influence=None, weight_decay=0.0,
                 weight_decay_on="kernels", unlabeled_rampup=0, validation_batch=None, seed=0, **kwargs):
        super().__init__(**kwargs)
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise ValueError("WeightedSSLModel runs on one device; use influence_ssl.trainer.Trainer to distribute.")
        if not isinstance(classifier, Classifier):
            backbone, head = classifier
            classifier = Classifier(backbone, head.units, head=head)
        influence = dataclasses.replace(influence or InfluenceOptions(), l2=weight_decay,
                                        bias_l2=weight_decay if weight_decay_on == "all" else 0.0)
        check_influence(classifier, influence)
        self.classifier = classifier
        self.example_weights = ExampleWeights(num_unlabeled, weight_init, weight_optimizer or MaskedAdam(0.01))
        self.alg1 = Alg1Steps(classifier, algorithm, self.example_weights, influence, inner_steps=inner_steps,
                              weight_warmup=weight_warmup, unlabeled_rampup=unlabeled_rampup, loss_l2=weight_decay,
                              decayed=decayed_variables(classifier, weight_decay_on))
        # Tracked by the model, hence saved by BackupAndRestore and save_weights with θ and Λ.
        self.step, self.bad_step = self.alg1.step, self.alg1.bad_step
        if getattr(algorithm, "state", None) is not None:  # e.g. a weighting rule's statistics
            self.algorithm_state = algorithm.state
        self.lambda_movement = self.alg1.lambda_movement
        self._val_x, self._val_y = (tf.constant(a) for a in validation)
        self._validation_batch, self._seed = validation_batch, seed
        self(self._val_x[:1])  # built: BackupAndRestore and summaries need a built model

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    def compile(self, optimizer="rmsprop", **kwargs):
        """Keras' compile; `optimizer` steps θ (a loss is needed only for evaluate / validation_data)."""
        super().compile(optimizer=optimizer, **kwargs)
        self.alg1.theta_optimizer = self.optimizer

    def validation_batch(self, outer_step):
        """V' of Λ step `outer_step`: {"val_x": [V', ...], "val_y": [V']}."""
        if self._validation_batch is None:
            return {"val_x": self._val_x, "val_y": self._val_y}
        index = batch_indices(outer_step, self._validation_batch, int(self._val_y.shape[0]), self._seed, 0)
        return {"val_x": tf.gather(self._val_x, index), "val_y": tf.gather(self._val_y, index)}

    @tf.autograph.experimental.do_not_convert  # no Python control flow on tensors (explicit tf.cond)
    def train_step(self, batch):
        """A θ step on `batch` (a dict from ssl_dataset), then, when due, a Λ step on its D', U' and a V'."""
        alg1 = self.alg1
        metrics = alg1.theta_update(batch)
        alg1.step.assign_add(1)
        step = alg1.step.read_value()
        metrics.update(tf.cond(
            alg1.is_outer_step(step),
            lambda: alg1.outer_update({**batch, **self.validation_batch(step // alg1.inner_steps)}),
            lambda: {"hypergradient_abs_mean": tf.zeros([]), "lambda_step_abs_mean": tf.zeros([])}))
        # NaN once any θ or Λ step was not finite, so that TerminateOnNaN also stops a diverged Λ step.
        metrics["loss"] = tf.where(alg1.bad_step >= 0, tf.constant(float("nan")), metrics["loss"])
        metrics["lambda_mean"] = tf.reduce_mean(self.example_weights.values)
        metrics["lambda_steps"] = tf.identity(self.example_weights.optimizer.iterations)
        return metrics
