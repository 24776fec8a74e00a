"""The soft cross-entropy: the per-example loss whose gradients and Hessians the influence takes.

One definition for the package: the SSL algorithms train on it (influence_ssl.ssl.losses re-exports it)
and the influence differentiates it, so the two cannot drift apart.
"""
import tensorflow as tf


def soft_cross_entropy(targets, logits):
    """CE(t, z) = -Σ_k t_k log softmax(z)_k.

    Not tf.nn.softmax_cross_entropy_with_logits: that op's gradient is p - t even for an all-zero (masked)
    target row, whose loss and gradient here are exactly 0.

    Args:
      targets: [B, K] class probabilities (one-hot, soft, or scaled by a mask).
      logits: [B, K].
    Returns:
      [B] losses.
    """
    return -tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=-1), axis=-1)
