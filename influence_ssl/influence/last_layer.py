"""Closed-form first and second derivatives of a cross-entropy classifier layer.

Convention (shared by every function here):
  features x [N, D] -> logits z = x W + b, W [D, K], b [K].
  Parameters are stacked as Theta = [W; b] [D+1, K] and act on augmented rows x~ = [x, 1] [N, D+1],
  so z = x~ Theta. A flat parameter vector is Theta in row-major order (index d*K + k).
  targets t [N, K] are held constant; s = sum_k t_k (1 for a probability row, 0 for a masked row).
  CE(t, z) = -sum_k t_k log softmax(z)_k, so grad_z CE = s*p - t ("residual") and
  hess_z CE = s*(diag(p) - p p^T).

Per-row curvature is kept in the factored form  C_i = diag(a_i) - beta_i * q_i q_i^T  ([K', K']), so the
same Hessian/HVP code serves the K-logit softmax head (a = s*p, q = p, beta = s) and the one-logit binary
reparametrization of Ren et al. App. D (K' = 1, a = 4*s*p1*p2, beta = 0).

Kernel only (the authors' code differentiates the dense kernel W alone): pass with_bias=False to the row
builders and Theta = W; rows are then x_i themselves [N, D], and everything below applies unchanged.
"""
import collections

import tensorflow as tf

# Everything a weighted-CE linear head needs, for one set of rows (all float64).
#   xt [N, D+1] augmented features; residual [N, K'] = d loss / d logits (per row, unweighted);
#   curv_diag [N, K'], curv_beta [N], curv_vec [N, K']: C_i = diag(curv_diag_i) - curv_beta_i q_i q_i^T.
HeadRows = collections.namedtuple("HeadRows", ["xt", "residual", "curv_diag", "curv_beta", "curv_vec"])


def augment(features):
    """[N, D] -> [N, D+1]: append the constant 1 that multiplies the bias."""
    ones = tf.ones_like(features[:, :1])
    return tf.concat([features, ones], axis=1)


def stack_params(kernel, bias):
    """W [D, K], b [K] -> Theta [D+1, K]."""
    return tf.concat([kernel, bias[tf.newaxis, :]], axis=0)


def softmax_rows(features, targets, theta, bias=None):
    """HeadRows of the K-logit softmax head; features [N, D], targets [N, K].

    Theta [D+1, K] (kernel and bias), or with `bias` [K] given: Theta = W [D, K] alone, the bias a constant
    (kernel-only influence), rows x_i [N, D]."""
    if bias is None:
        xt = augment(features)
        logits = tf.matmul(xt, theta)
    else:
        xt = features
        logits = tf.matmul(xt, theta) + bias
    p = tf.nn.softmax(logits, axis=-1)
    s = tf.reduce_sum(targets, axis=-1)
    residual = s[:, tf.newaxis] * p - targets
    return HeadRows(xt, residual, s[:, tf.newaxis] * p, s, p)


def binary_params(kernel, bias):
    """2-logit head -> one-logit parameters phi = [theta'; b'] [D+1, 1] with f = x theta' + b'.

    Logits (f, -f) with theta' = (W[:, 0] - W[:, 1]) / 2 equal the original logits minus their row mean,
    so every softmax (hence every loss) is unchanged (Ren et al. App. D; shift invariance of softmax).
    """
    theta = stack_params(kernel, bias)
    return 0.5 * (theta[:, :1] - theta[:, 1:2])


def binary_rows(features, targets, phi):
    """HeadRows of the reparametrized binary head (logits (f, -f)) at phi [D+1, 1]; targets [N, 2]."""
    xt = augment(features)
    f = tf.matmul(xt, phi)[:, 0]
    p = tf.nn.softmax(tf.stack([f, -f], axis=1), axis=-1)
    s = tf.reduce_sum(targets, axis=-1)
    r = s[:, tf.newaxis] * p - targets
    # d/df of logits (f, -f) is (1, -1): chain rule on the residual and on hess_z CE.
    residual = (r[:, 0] - r[:, 1])[:, tf.newaxis]
    curv = (4.0 * s * p[:, 0] * p[:, 1])[:, tf.newaxis]
    return HeadRows(xt, residual, curv, tf.zeros_like(s), tf.zeros_like(curv))


def mean_gradient(rows):
    """Gradient of the MEAN loss over the rows w.r.t. Theta: x~^T residual / N -> [D+1, K']."""
    n = tf.cast(tf.shape(rows.xt)[0], rows.xt.dtype)
    return tf.matmul(rows.xt, rows.residual, transpose_a=True) / n


def per_example_gradients(rows):
    """Per-row gradients x~_i (outer) residual_i -> [N, D+1, K'] (materialised; for tests/diagnostics)."""
    return rows.xt[:, :, tf.newaxis] * rows.residual[:, tf.newaxis, :]


def _apply_curvature(rows, weights, z):
    """w_i * C_i z_i for every row: z [N, K'] -> [N, K']."""
    qz = tf.reduce_sum(rows.curv_vec * z, axis=-1, keepdims=True)
    cz = rows.curv_diag * z - rows.curv_beta[:, tf.newaxis] * rows.curv_vec * qz
    return weights[:, tf.newaxis] * cz


def hessian_vector_product(rows, weights, l2, v):
    """(sum_i w_i C_i (x) x~_i x~_i^T + diag(l2)) v, matrix-free: v [D+1, K'] -> [D+1, K'].

    With z = x~ v this is x~^T (w * C z) + l2 * v; cost O(N (D+1) K'). l2 is a scalar or [D+1, 1]
    (one coefficient per parameter row, e.g. no decay on the bias row).
    """
    z = tf.matmul(rows.xt, v)
    return tf.matmul(rows.xt, _apply_curvature(rows, weights, z), transpose_a=True) + l2 * v


def hessian(rows, weights, l2):
    """Dense Hessian of sum_i w_i CE_i + sum_d (l2_d/2)||Theta_d||^2 over flat Theta -> [(D+1)K', (D+1)K'].

    H[(d,k),(e,l)] = sum_i w_i x~_id x~_ie (delta_kl a_ik - beta_i q_ik q_il) + l2_d delta.
    l2: scalar or [D+1, 1] per-row coefficients.
    """
    xt, num_cols = rows.xt, rows.curv_diag.shape[-1]
    d1 = tf.shape(xt)[1]
    dim = d1 * num_cols
    # Diagonal-in-class part: one [D+1, D+1] Gram matrix per class k, weighted by w_i a_ik.
    wa = weights[:, tf.newaxis] * rows.curv_diag                                  # [N, K']
    gram = tf.einsum("nk,nd,ne->kde", wa, xt, xt)                                  # [K', D+1, D+1]
    eye_k = tf.eye(num_cols, dtype=xt.dtype)
    block = tf.reshape(tf.einsum("kde,kl->dkel", gram, eye_k), [dim, dim])
    # Rank-structured part: Y_i = x~_i (outer) q_i flattened, sum_i w_i beta_i Y_i Y_i^T.
    y = tf.reshape(xt[:, :, tf.newaxis] * rows.curv_vec[:, tf.newaxis, :], [-1, dim])  # [N, (D+1)K']
    wb = weights * rows.curv_beta
    low_rank = tf.matmul(y * wb[:, tf.newaxis], y, transpose_a=True)
    reg = tf.reshape(tf.broadcast_to(l2, [d1, num_cols]), [dim])
    return block - low_rank + tf.linalg.diag(reg)


def hessian_mean_diagonal(rows, weights, l2):
    """mean(diag(H)) without forming H (scale of H, used to make damping scale-free) -> scalar."""
    sq = tf.reduce_sum(tf.square(rows.xt), axis=1)                                 # ||x~_i||^2
    diag_c = rows.curv_diag - rows.curv_beta[:, tf.newaxis] * tf.square(rows.curv_vec)  # diag of C_i
    total = tf.reduce_sum(weights * sq * tf.reduce_sum(diag_c, axis=1))
    size = tf.cast(tf.shape(rows.xt)[1] * tf.shape(rows.residual)[1], total.dtype)
    l2_mean = tf.reduce_mean(tf.broadcast_to(l2, [tf.shape(rows.xt)[1], 1]))
    return total / size + l2_mean


def influence_from_solution(rows, solution):
    """-grad(l_u)^T S for every row, with S = H^-1 grad(L_val) [D+1, K'] -> [N].

    grad(l_u)^T S = <x~_u (outer) r_u, S> = (x~_u S) . r_u, so per-example gradients are never formed.
    """
    return -tf.reduce_sum(tf.matmul(rows.xt, solution) * rows.residual, axis=1)
