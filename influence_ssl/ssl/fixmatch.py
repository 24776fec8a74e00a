"""FixMatch (Sohn et al., NeurIPS 2020), as used by Ren et al. Sec. 4.2.

ℓ_U(u) = [max p_weak(u) >= τ] · CE(argmax p_weak(u), p_strong(u)), p_weak = sg(softmax(z_weak)) from
the same training-mode forward (FixMatch's code), τ = 0.95 (note >=). For the influence step the
unlabeled features are the strong view's and the targets the one-hot pseudo-labels times the mask.
"""
import tensorflow as tf

from influence_ssl.ssl.base import SSLAlgorithm, SSLLosses, forward_concat
from influence_ssl.ssl.losses import hard_pseudo_labels, soft_cross_entropy, sparse_cross_entropy


class FixMatch(SSLAlgorithm):
    """Batch keys: labeled_x, labeled_y, unlabeled_weak, unlabeled_strong."""

    name = "fixmatch"

    def __init__(self, threshold=0.95):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"FixMatch confidence threshold must be in [0, 1], got {threshold}.")
        self.threshold = threshold

    def losses(self, model, batch, *, training, step):
        (fx, zx), (fw, zw), (fs, zs) = forward_concat(
            model, [batch["labeled_x"], batch["unlabeled_weak"], batch["unlabeled_strong"]], training)
        targets, mask = hard_pseudo_labels(zw, self.threshold)
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
