"""Training Signal Annealing (UDA, Xie et al. 2020): drop labeled examples the model already fits.

An example is dropped while its correct-class probability exceeds η_t = α_t (1 - 1/K) + 1/K
(strict >), with r = step / total_steps and α_t = r (linear), 1 - exp(-5r) (log) or exp(5(r - 1))
(exp). The supervised loss is Σ kept CE / max(#kept, 1).
"""
import tensorflow as tf

TSA_SCHEDULES = ("none", "linear", "log", "exp")


def tsa_threshold(schedule, step, total_steps, num_classes):
    """η_t, a scalar tensor (1.0 for schedule "none")."""
    if schedule not in TSA_SCHEDULES:
        raise ValueError(f"Unknown TSA schedule {schedule!r}; choose one of {TSA_SCHEDULES}.")
    if schedule == "none":
        return tf.constant(1.0)
    r = tf.minimum(tf.cast(step, tf.float32) / float(total_steps), 1.0)
    alpha = {"linear": lambda: r, "log": lambda: 1.0 - tf.exp(-5.0 * r),
             "exp": lambda: tf.exp(5.0 * (r - 1.0))}[schedule]()
    return alpha * (1.0 - 1.0 / num_classes) + 1.0 / num_classes


def tsa_scale(labels, logits, threshold):
    """Per-example factor c_i with mean_i(c_i CE_i) = Σ_kept CE_i / max(#kept, 1).

    Args:
      labels: [B] int; logits: [B, K]; threshold: scalar η_t.
    Returns:
      [B] float: B / max(#kept, 1) for kept examples, 0 for dropped ones (constant, no gradient).
    """
    probs = tf.nn.softmax(tf.stop_gradient(logits))
    correct = tf.gather(probs, labels, batch_dims=1)
    kept = tf.cast(correct <= threshold, logits.dtype)
    batch = tf.cast(tf.shape(labels)[0], logits.dtype)
    return kept * batch / tf.maximum(tf.reduce_sum(kept), 1.0)
