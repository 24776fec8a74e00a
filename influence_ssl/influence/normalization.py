"""Normalisations of the per-example hypergradient (variants , not the paper's method).

The paper steps λ_u along g_u = dL_val/dλ_u = -∇L_valᵀ H⁻¹ ∇ℓ_u as it is. Its size carries ∇ℓ_u's, and with
hard pseudo-labels ∇ℓ_u = x̃_u ⊗ (p_u - t_u) vanishes as the model grows confident, right or wrong; a
uniform component (every λ up, or every λ of one class up) can also dominate the differences between
examples. Each mode below removes one of these:
  batch    standardise over the batch: (g - mean) / std over the active rows;
  class    standardise within each pseudo-label class (the arg-max of the target row);
  example  divide by the example's own gradient norm ||∇ℓ_u||: the direction of its influence, not its size.
A row whose target is all zero (a masked example, ℓ_u ≡ 0) is inactive: its g is 0 and stays 0, and it is
left out of the batch and class statistics.
"""
import tensorflow as tf

NORMALIZATIONS = ("none", "batch", "class", "example")


def active_rows(targets):
    """[U] bool: rows whose target is not all zero. targets [U, K] (the mask folded in)."""
    return tf.reduce_sum(tf.abs(targets), axis=-1) > 0


def head_gradient_norms(features, targets, kernel, bias):
    """||∇ℓ_u|| over the head's (W, b) for every row -> [U].

    ℓ_u = CE(t_u, x_u W + b) has gradient x̃_u ⊗ (s_u p_u - t_u), x̃_u = [x_u, 1], s_u = Σ_k t_uk, whose
    Frobenius norm is ||x̃_u|| · ||s_u p_u - t_u||. features [U, D], targets [U, K], kernel [D, K], bias [K];
    the result is float64.
    """
    # float64, as the hypergradient itself: a confident row's residual is below float32's resolution of p.
    features, targets, kernel, bias = (tf.cast(v, tf.float64) for v in (features, targets, kernel, bias))
    p = tf.nn.softmax(tf.matmul(features, kernel) + bias, axis=-1)
    residual = tf.reduce_sum(targets, axis=-1, keepdims=True) * p - targets
    feature_norm = tf.sqrt(tf.reduce_sum(tf.square(features), axis=-1) + 1.0)
    return feature_norm * tf.norm(residual, axis=-1)


def standardize_in_groups(grads, groups, num_groups, active):
    """(g - mean_G) / std_G within each group G over its active rows; inactive rows -> 0.

    grads [U] float, groups [U] int in [0, num_groups), active [U] bool. std is the population std; a group
    whose active rows all share one value (e.g. a single row) gives 0 for them.
    """
    weight = tf.cast(active, grads.dtype)
    count = tf.math.unsorted_segment_sum(weight, groups, num_groups)
    mean = tf.math.divide_no_nan(tf.math.unsorted_segment_sum(grads * weight, groups, num_groups), count)
    centred = (grads - tf.gather(mean, groups)) * weight
    variance = tf.math.divide_no_nan(tf.math.unsorted_segment_sum(tf.square(centred), groups, num_groups), count)
    return tf.math.divide_no_nan(centred, tf.sqrt(tf.gather(variance, groups)))


def normalize_hypergradient(grads, mode, targets, gradient_norms=None):
    """g [U] under normalisation `mode` (NORMALIZATIONS). targets [U, K]: the influence targets (they decide
    which rows are active and, for "class", each row's class). gradient_norms [U]: ||∇ℓ_u||, needed by
    "example" (see head_gradient_norms)."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"Unknown hypergradient normalization {mode!r}; valid: {', '.join(NORMALIZATIONS)}.")
    if mode == "none":
        return grads
    if mode == "example":
        if gradient_norms is None:
            raise ValueError("normalization 'example' needs the per-example gradient norms.")
        return tf.math.divide_no_nan(grads, tf.cast(gradient_norms, grads.dtype))
    active = active_rows(targets)
    if mode == "batch":
        return standardize_in_groups(grads, tf.zeros_like(grads, tf.int32), 1, active)
    classes = tf.argmax(targets, axis=-1, output_type=tf.int32)
    return standardize_in_groups(grads, classes, tf.shape(targets)[-1], active)
