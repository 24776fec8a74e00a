"""Pseudo-Label (Lee, 2013) as used by Ren et al. Sec. 2 and 4.1.

ℓ_U(u) = mask_u · CE(one_hot(argmax p_θ(u)), p_θ(u)), the target held constant.
With threshold 0 (the paper's synthetic experiments) every example is used; FixMatch's
pseudo_label.py uses 0.95 (mask_u = [max p >= threshold]). A weighting rule (influence_ssl.ssl.weighting)
replaces the mask by its weight w(p_θ(u), id).
"""
import tensorflow as tf

from influence_ssl.ssl.base import SSLLosses, forward_concat
from influence_ssl.ssl.losses import soft_cross_entropy, sparse_cross_entropy
from influence_ssl.ssl.weighting import HardPseudoLabels


class PseudoLabel(HardPseudoLabels):
    """Hard arg-max pseudo-labels on one view `batch["unlabeled_x"]`; threshold τ of the fixed mask, or rule: a
    weighting.WeightingRule in its place (None: the mask)."""

    name, title = "pseudo_label", "Pseudo-Label"

    def __init__(self, threshold=0.0, rule=None):
        super().__init__(threshold, rule)

    def losses(self, model, batch, *, training, step, update_state=None):
        (fx, zx), (fu, zu) = forward_concat(model, [batch["labeled_x"], batch["unlabeled_x"]], training)
        # From the same view it trains.
        targets, mask = self.targets(zu, batch.get("unlabeled_ids"), training if update_state is None else update_state)
        return SSLLosses(
            labeled=sparse_cross_entropy(batch["labeled_y"], zx),
            unlabeled=soft_cross_entropy(targets, zu),
            labeled_features=fx,
            labeled_targets=tf.one_hot(batch["labeled_y"], tf.shape(zx)[-1], dtype=zx.dtype),
            unlabeled_features=fu,
            unlabeled_targets=targets,
            unlabeled_inputs=batch["unlabeled_x"],
            unlabeled_weak_features=fu,
            unlabeled_target_logits=tf.stop_gradient(zu),
            metrics={"mask_rate": tf.reduce_mean(mask)},
        )
