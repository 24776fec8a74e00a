"""Solvers for H x = v: exact Cholesky and the matrix-free approximations of Ren et al. Table A1.

The iterative solvers take `hvp`, a function v -> H v on tensors of any fixed shape ([D+1, K] here),
and use only TF ops (tf.while_loop), so they run eagerly and inside tf.function alike.
"""
import tensorflow as tf


class HessianFactorizationError(ValueError):
    """The (damped) Hessian is not numerically positive definite, so Cholesky failed."""


_CHOLESKY_HINT = (
    "Cholesky factorization of the last-layer Hessian failed: the damped Hessian is not numerically "
    "positive definite. A softmax head's Hessian is singular without l2 (logit shift invariance; "
    "low-rank features add more null directions), and negative example weights make it indefinite. "
    "Increase `damping` (relative to mean(diag(H))) or `l2`, or use binary_reparam=True for two classes.")


def _vdot(a, b):
    return tf.reduce_sum(a * b)


def cholesky_solve(matrix, rhs, damping_abs, check=True):
    """Solve (matrix + damping_abs I) x = rhs by Cholesky. matrix [P, P], rhs [P, R] -> [P, R].

    With check=False a failed factorization returns NaNs, for callers that test the result
    (the trainer stops on a non-finite hypergradient) and under XLA.

    TF 2.21 does not raise on a failed factorization: it logs a warning and fills the factor with NaNs.
    So the factor's diagonal is checked: eagerly a failure raises HessianFactorizationError; inside a
    tf.function a tf.debugging.Assert raises InvalidArgumentError carrying the same hint (XLA drops
    asserts, so under jit_compile the result is NaN instead).
    """
    size = tf.shape(matrix)[0]
    damped = matrix + damping_abs * tf.eye(size, dtype=matrix.dtype)
    chol = tf.linalg.cholesky(damped)
    if check:
        chol = _checked_factor(chol)
    return tf.linalg.cholesky_solve(chol, rhs)


def _checked_factor(chol):
    """chol, or HessianFactorizationError (eagerly) / a failing Assert (in a graph) if it holds NaNs."""
    ok = tf.reduce_all(tf.math.is_finite(tf.linalg.diag_part(chol)))
    if tf.executing_eagerly():
        if not bool(ok):
            raise HessianFactorizationError(_CHOLESKY_HINT)
        return chol
    with tf.control_dependencies([tf.debugging.Assert(ok, [_CHOLESKY_HINT])]):
        return tf.identity(chol)


def power_iteration(hvp, like, num_iterations):
    """Estimate lambda_max of a PSD operator by power iteration; `like` fixes shape and dtype -> scalar.

    Starts from a fixed pseudo-random vector (deterministic, graph-safe) and returns the Rayleigh quotient,
    which approaches lambda_max from below.
    """
    v = tf.random.stateless_normal(tf.shape(like), seed=[17, 29], dtype=like.dtype)
    v = v / tf.norm(v)

    def body(i, v):
        hv = hvp(v)
        return i + 1, hv / tf.maximum(tf.norm(hv), tf.constant(1e-300, like.dtype))

    _, v = tf.while_loop(lambda i, v: i < num_iterations, body, [tf.constant(0), v])
    return _vdot(v, hvp(v))


def neumann_solve(hvp, rhs, num_terms, scale):
    """Truncated Neumann series  scale * sum_{j=0}^{num_terms} (I - scale H)^j rhs  (Lorraine et al.).

    Converges to H^-1 rhs when 0 < scale < 2 / lambda_max (error factor |1 - scale*lambda| per term);
    num_terms = 0 is the identity approximation scale * rhs.
    """
    def body(j, term, total):
        term = term - scale * hvp(term)
        return j + 1, term, total + term

    _, _, total = tf.while_loop(lambda j, term, total: j < num_terms, body, [tf.constant(0), rhs, rhs])
    return scale * total


def conjugate_gradient(hvp, rhs, max_iterations, tolerance):
    """Conjugate gradients for H x = rhs from x = 0 (Koh & Liang use CG on HVPs).

    Stops after max_iterations or when ||r|| <= tolerance * ||rhs||, or if a direction has non-positive
    curvature (H not PD on the Krylov space; the iterate so far is returned).
    """
    x = tf.zeros_like(rhs)
    rr = _vdot(rhs, rhs)
    target = tf.square(tf.cast(tolerance, rhs.dtype)) * rr

    def cond(i, x, r, p, rr, ok):
        return tf.logical_and(tf.logical_and(i < max_iterations, rr > target), ok)

    def body(i, x, r, p, rr, ok):
        hp = hvp(p)
        php = _vdot(p, hp)
        ok = php > 0
        alpha = tf.where(ok, rr / tf.where(ok, php, tf.ones_like(php)), tf.zeros_like(php))
        x = x + alpha * p
        r = r - alpha * hp
        rr_new = _vdot(r, r)
        p = r + (rr_new / tf.where(rr > 0, rr, tf.ones_like(rr))) * p
        return i + 1, x, r, p, rr_new, ok

    loop_vars = [tf.constant(0), x, rhs, rhs, rr, tf.constant(True)]
    _, x, *_ = tf.while_loop(cond, body, loop_vars)
    return x
