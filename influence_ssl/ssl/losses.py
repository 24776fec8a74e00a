"""Per-example losses shared by the SSL algorithms. Every function returns one value per row."""
import tensorflow as tf

from influence_ssl.influence.losses import soft_cross_entropy  # the one definition, shared with the influence


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


__all__ = ["soft_cross_entropy", "sparse_cross_entropy", "hard_pseudo_labels"]
