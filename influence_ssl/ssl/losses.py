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


def hard_pseudo_labels(logits, threshold):
    """Targets of Pseudo-Label and FixMatch: one-hot arg-max of sg(softmax(logits)), times the
    confidence mask [max p >= threshold].

    Args:
      logits: [B, K] of the view the pseudo-labels come from.
      threshold: τ (0: every example).
    Returns:
      (targets [B, K], mask [B]).
    """
    probs = tf.nn.softmax(tf.stop_gradient(logits))
    mask = tf.cast(tf.reduce_max(probs, axis=-1) >= threshold, probs.dtype)
    targets = tf.one_hot(tf.argmax(probs, axis=-1), tf.shape(logits)[-1], dtype=probs.dtype)
    return targets * mask[:, None], mask
