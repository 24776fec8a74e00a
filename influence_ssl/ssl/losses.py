"""Per-example losses shared by the SSL algorithms. Every function returns one value per row."""
import tensorflow as tf


def soft_cross_entropy(targets, logits):
    """CE(t, z) = -Σ_k t_k log softmax(z)_k.

    Args:
      targets: [B, K] class probabilities (one-hot, soft, or scaled by a mask).
      logits: [B, K].
    Returns:
      [B] losses.
    """
    return -tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=-1), axis=-1)


def sparse_cross_entropy(labels, logits):
    """CE with integer labels [B] and logits [B, K]. Returns [B]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
