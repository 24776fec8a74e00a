"""UDA for images (Xie et al., NeurIPS 2020), as used by Ren et al. Sec. 4.2.

ℓ_U(u) = mask_u · KL(sg(softmax(z_weak / T)) ‖ softmax(z_strong)), mask_u = [max softmax(z_weak) > β]
(strict >, on the unsharpened probabilities, as UDA's code). The supervised loss is CE with optional
Training Signal Annealing. For the influence step the unlabeled features are those of the strong
view and the targets are the sharpened weak-view probabilities times the mask: KL and CE against a
constant target differ by the target's entropy, so their gradients and Hessians are the same.
"""
import tensorflow as tf

from influence_ssl.ssl.base import SSLAlgorithm, SSLLosses, forward_concat
from influence_ssl.ssl.losses import soft_cross_entropy, sparse_cross_entropy
from influence_ssl.ssl.tsa import tsa_scale, tsa_threshold


def entropy(p):
    """Σ_k -p_k log p_k per row, 0 log 0 = 0. p: [B, K] -> [B]."""
    return -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(p), p), axis=-1)


class UDA(SSLAlgorithm):
    """Batch keys: labeled_x, labeled_y, unlabeled_weak (UDA's "ori"), unlabeled_strong ("aug").

    Args:
      temperature: T of the target's softmax (1: no sharpening; UDA "current" 0.4).
      threshold: β of the confidence mask (0 with T=1 and no mask: the 2019 "paper" preset).
      tsa: "none", "linear", "log" or "exp"; total_steps: the r = step/total of TSA.
    """

    name = "uda"

    def __init__(self, temperature=1.0, threshold=0.0, tsa="none", total_steps=1):
        if temperature <= 0:
            raise ValueError(f"UDA temperature must be > 0, got {temperature}.")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"UDA confidence threshold must be in [0, 1), got {threshold}.")
        tsa_threshold(tsa, 0, 1, 2)  # validates the schedule name
        self.temperature, self.threshold, self.tsa, self.total_steps = temperature, threshold, tsa, total_steps

    def example_weights(self, logits, ids=None):
        """The confidence mask [max softmax(z) > β] [U] (the soft targets' only per-example weight)."""
        return tf.cast(tf.reduce_max(tf.nn.softmax(tf.stop_gradient(logits)), axis=-1) > self.threshold,
                       logits.dtype)

    def losses(self, model, batch, *, training, step, update_state=None):  # no state to update
        (fx, zx), (fw, zw), (fs, zs) = forward_concat(
            model, [batch["labeled_x"], batch["unlabeled_weak"], batch["unlabeled_strong"]], training)
        num_classes = tf.shape(zx)[-1]
        eta = tsa_threshold(self.tsa, step, self.total_steps, int(zx.shape[-1]))
        scale = tsa_scale(batch["labeled_y"], zx, eta)

        zw = tf.stop_gradient(zw)
        mask = tf.cast(self.example_weights(zw), zs.dtype)
        targets = tf.nn.softmax(zw / self.temperature) * mask[:, None]
        # KL(t ‖ q) = CE(t, q) - H(t); the mask already zeroes t for masked rows.
        unlabeled = soft_cross_entropy(targets, zs) - entropy(targets)
        return SSLLosses(
            labeled=scale * sparse_cross_entropy(batch["labeled_y"], zx),
            unlabeled=unlabeled,
            labeled_features=fx,
            labeled_targets=tf.one_hot(batch["labeled_y"], num_classes, dtype=zx.dtype) * scale[:, None],
            unlabeled_features=fs,
            unlabeled_targets=targets,
            unlabeled_inputs=batch["unlabeled_strong"],
            unlabeled_weak_features=fw,
            unlabeled_target_logits=zw,
            metrics={"mask_rate": tf.reduce_mean(mask), "tsa_kept": tf.reduce_mean(tf.cast(scale > 0, zx.dtype))},
        )
