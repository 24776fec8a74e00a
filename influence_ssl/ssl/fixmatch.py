"""FixMatch (Sohn et al., NeurIPS 2020), as used by Ren et al. Sec. 4.2.

ℓ_U(u) = [max p_weak(u) >= τ] · CE(argmax p_weak(u), p_strong(u)), p_weak = sg(softmax(z_weak)) from
the same training-mode forward (FixMatch's code), τ = 0.95 (note >=). For the influence step the
unlabeled features are the strong view's and the targets the one-hot pseudo-labels times the mask.
With a weighting rule (influence_ssl.ssl.weighting) the rule's weight w(p_weak, id) takes the mask's place:
ℓ_U(u) = w_u · CE(argmax p_weak(u), p_strong(u)), the targets one-hot times w.
"""
import tensorflow as tf

from influence_ssl.ssl.base import SSLLosses, forward_concat
from influence_ssl.ssl.losses import soft_cross_entropy, sparse_cross_entropy
from influence_ssl.ssl.weighting import HardPseudoLabels


class FixMatch(HardPseudoLabels):
    """Batch keys: labeled_x, labeled_y, unlabeled_weak, unlabeled_strong (and unlabeled_ids for a rule that
    keeps a record per example).

    Args:
      threshold: τ of the fixed mask [max p_weak >= τ] (unused with a rule).
      rule: a weighting.WeightingRule in place of the fixed mask, or None.
    """

    name, title = "fixmatch", "FixMatch"

    def __init__(self, threshold=0.95, rule=None):
        super().__init__(threshold, rule)

    def losses(self, model, batch, *, training, step, update_state=None):
        (fx, zx), (fw, zw), (fs, zs) = forward_concat(
            model, [batch["labeled_x"], batch["unlabeled_weak"], batch["unlabeled_strong"]], training)
        targets, mask = self.targets(zw, batch.get("unlabeled_ids"), training if update_state is None else update_state)
        return SSLLosses(
            labeled=sparse_cross_entropy(batch["labeled_y"], zx),
            unlabeled=soft_cross_entropy(targets, zs),
            labeled_features=fx,
            labeled_targets=tf.one_hot(batch["labeled_y"], tf.shape(zx)[-1], dtype=zx.dtype),
            unlabeled_features=fs,
            unlabeled_targets=targets,
            unlabeled_inputs=batch["unlabeled_strong"],
            unlabeled_weak_features=fw,
            unlabeled_target_logits=tf.stop_gradient(zw),
            metrics={"mask_rate": tf.reduce_mean(mask)},
        )
