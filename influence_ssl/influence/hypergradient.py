"""Influence-function hypergradient of the validation loss w.r.t. per-example weights (Ren et al. Eq. 6).

Only the classifier layer is treated as trainable (Sec. 3.1 "Influence Approximation"), so H is the
[(D+1)K, (D+1)K] Hessian of the last layer (1,290 for the WRN-28-2 head) and the per-example gradients
are outer products x~_u (outer) (s_u p_u - t_u), never materialised.
"""
import functools

import tensorflow as tf

from influence_ssl.influence import last_layer, solvers

# Damping added to H as damping * mean(diag(H)) * I (scale-free). Chosen with experiments.benchmarks.damping_study
# (results/speed/damping_study.json, docs/design/influence.md): where the pseudo-inverse is well defined, the error
# against it is proportional to the damping (1e-8 -> under 1e-6); on rank-deficient ReLU features it acts as a
# soft eigenvalue cutoff (near 1e-10 * lambda_max), where the pinv answer itself depends on the cutoff; and
# float64 Cholesky failed there at 1e-10 and below, a margin of two orders of magnitude.
DEFAULT_DAMPING = 1e-8

_COMPUTE_DTYPE = tf.float64
_COMMON_OPTIONS = {"binary_reparam": False, "kernel_only": False}
_HESSIAN_OPTIONS = {"damping": DEFAULT_DAMPING, "bias_l2": None}
METHOD_OPTIONS = {
    "exact": {**_COMMON_OPTIONS, **_HESSIAN_OPTIONS, "check_factorization": True},
    "identity": {**_COMMON_OPTIONS, "scale": 1.0},
    "neumann": {**_COMMON_OPTIONS, **_HESSIAN_OPTIONS,
                "num_terms": 20, "scale": None, "power_iterations": 20},
    "cg": {**_COMMON_OPTIONS, **_HESSIAN_OPTIONS, "max_iterations": 100, "tolerance": 1e-6},
}


def last_layer_weight_gradients(labeled_features, labeled_targets, unlabeled_features, unlabeled_targets,
                                unlabeled_weights, val_features, val_targets, kernel, bias, *, l2=0.0,
                                method="exact", labeled_weights=None, **options):
    """dL_val/dlambda_u = -grad L_val^T H^-1 grad l_u for every unlabeled row u -> [m].

    Model: logits z = x W + b with features x [N, D], kernel W [D, K], bias b [K]. Targets are rows of class
    probabilities [N, K] (one-hot labels or the SSL algorithm's soft/hard pseudo-targets, held constant). A
    row may be scaled by a mask; an all-zero row has zero loss and gradient, hence hypergradient exactly 0.
    CE(t, z) = -sum_k t_k log softmax(z)_k. Inner objective at the given (W, b):
        L(W, b) = sum_i a_i CE(t_i, x_i W + b)            (labeled rows, a = labeled_weights, default 1)
                + sum_u lambda_u CE(t_u, x_u W + b)        (unlabeled rows, lambda = unlabeled_weights)
                + (l2/2) ||W||^2 + (bias_l2/2) ||b||^2     (bias_l2 defaults to l2)
    Validation loss L_val = MEAN CE over validation rows. H = Hessian of L over (W, b) (assumed to be at
    the optimum, as influence functions require); grad l_u = gradient of CE(t_u, .) WITHOUT lambda_u.
    Negative values mean that up-weighting u lowers the validation loss.

    Mean-normalised training losses: for (1/|D'|) sum_i CE_i + (1/|U'|) sum_u lambda_u l_u + decay, pass
    labeled_weights=1/|D'| and unlabeled_weights=lambda/|U'|. The result is then dL_val/dw_u with
    w_u = lambda_u/|U'|, and dL_val/dlambda_u = result / |U'|. (M-Adam is nearly invariant to this scale.)

    Args:
      labeled_features [n, D], labeled_targets [n, K]; unlabeled_features [m, D], unlabeled_targets [m, K],
      unlabeled_weights [m]; val_features [v, D], val_targets [v, K]; kernel [D, K]; bias [K].
      l2: decay coefficient of the inner objective (>= 0).
      method: "exact" (dense H in float64, Cholesky; the paper's choice), "identity" (H^-1 = scale * I,
        Luketina et al.), "neumann" (Lorraine et al.), "cg" (conjugate gradients on HVPs, Koh & Liang).
      labeled_weights: None (ones), a scalar or [n].
      **options (per method; see METHOD_OPTIONS for the defaults):
        binary_reparam (all, False): K must be 2; use one logit f = x theta' + b' with logits (f, -f),
          theta' = (W[:,0] - W[:,1])/2 (Ren et al. App. D). Same losses, but no shift null space. l2 and
          bias_l2 then decay theta' and b' directly; a 2-logit head with decay l2 has the same optimum and
          hypergradient as the reparametrized one with decay 2*l2.
        kernel_only (all, False): the influence's parameters are W alone, b a constant (the authors' code:
          H [DK, DK], the gradients of W only); bias_l2 is then unused.
        damping (exact/neumann/cg, DEFAULT_DAMPING): solve with H + damping * mean(diag(H)) * I.
        bias_l2 (exact/neumann/cg, None = l2): decay on the bias row only.
        check_factorization (exact, True): raise on a failed Cholesky; False returns NaNs instead.
        scale (identity, 1.0): H^-1 ~ scale * I, i.e. the result is -scale * grad L_val^T grad l_u.
        num_terms (neumann, 20): J in scale * sum_{j=0}^{J} (I - scale H)^j v.
        scale (neumann, None): None estimates lambda_max by `power_iterations` (20) steps of power
          iteration and uses 1/lambda_max (convergent for any estimate above lambda_max/2).
        max_iterations (cg, 100), tolerance (cg, 1e-6): stop at ||r|| <= tolerance ||grad L_val||.

    All maths runs in float64 (a float32 Cholesky of a nearly singular 1290^2 matrix is noise); the result
    has kernel's dtype. Works eagerly and inside tf.function; eagerly a failed Cholesky raises
    solvers.HessianFactorizationError.
    """
    opts = _resolve_options(method, options)
    out_dtype = tf.as_dtype(getattr(kernel, "dtype", None) or tf.float32)
    if not out_dtype.is_floating:
        out_dtype = tf.float32

    def cast(x):
        return tf.cast(tf.convert_to_tensor(x, dtype_hint=_COMPUTE_DTYPE), _COMPUTE_DTYPE)

    x_lab, t_lab, x_unl, t_unl, w_unl, x_val, t_val, kernel, bias = map(cast, (
        labeled_features, labeled_targets, unlabeled_features, unlabeled_targets, unlabeled_weights,
        val_features, val_targets, kernel, bias))
    _check_shapes(x_lab, t_lab, x_unl, t_unl, w_unl, x_val, t_val, kernel, bias)
    if labeled_weights is None:
        w_lab = tf.ones_like(x_lab[:, 0])
    else:
        w_lab = cast(labeled_weights)
        _check_labeled_weights(w_lab, x_lab)
        w_lab = tf.broadcast_to(w_lab, tf.shape(x_lab)[:1])

    if opts["binary_reparam"]:
        if kernel.shape[-1] != 2:
            raise ValueError(f"binary_reparam=True needs a 2-class head, got K={kernel.shape[-1]}.")
        if opts["kernel_only"]:
            raise ValueError("binary_reparam and kernel_only cannot be combined.")
        params, make_rows = last_layer.binary_params(kernel, bias), last_layer.binary_rows
    elif opts["kernel_only"]:
        params = kernel
        make_rows = functools.partial(last_layer.softmax_rows, bias=bias)
    else:
        params, make_rows = last_layer.stack_params(kernel, bias), last_layer.softmax_rows

    num_labeled = tf.shape(x_lab)[0]
    train = make_rows(tf.concat([x_lab, x_unl], 0), tf.concat([t_lab, t_unl], 0), params)
    unl = last_layer.HeadRows(*(field[num_labeled:] for field in train))
    weights = tf.concat([w_lab, w_unl], 0)
    g_val = last_layer.mean_gradient(make_rows(x_val, t_val, params))        # [D+1, K']

    if method == "identity":
        solution = cast(opts["scale"]) * g_val
    else:
        l2_rows = _l2_rows(cast(l2), opts["bias_l2"], cast, tf.shape(params)[0], opts["kernel_only"])
        solution = _solve(method, opts, train, weights, l2_rows, g_val)
    return tf.cast(last_layer.influence_from_solution(unl, solution), out_dtype)


def _solve(method, opts, rows, weights, l2_rows, rhs):
    """S = (H + damping * mean(diag H) I)^-1 rhs with the chosen solver; rhs [D+1, K'] -> [D+1, K']."""
    damping = tf.cast(opts["damping"], _COMPUTE_DTYPE)
    if method == "exact":
        h = last_layer.hessian(rows, weights, l2_rows)
        damping_abs = damping * tf.reduce_mean(tf.linalg.diag_part(h))
        flat = solvers.cholesky_solve(h, tf.reshape(rhs, [-1, 1]), damping_abs, opts["check_factorization"])
        return tf.reshape(flat, tf.shape(rhs))
    damping_abs = damping * last_layer.hessian_mean_diagonal(rows, weights, l2_rows)

    def hvp(v):
        return last_layer.hessian_vector_product(rows, weights, l2_rows + damping_abs, v)

    if method == "cg":
        return solvers.conjugate_gradient(hvp, rhs, opts["max_iterations"], opts["tolerance"])
    scale = opts["scale"]
    if scale is None:
        scale = 1.0 / solvers.power_iteration(hvp, rhs, opts["power_iterations"])
    return solvers.neumann_solve(hvp, rhs, opts["num_terms"], tf.cast(scale, _COMPUTE_DTYPE))


def _l2_rows(l2, bias_l2, cast, num_rows, kernel_only=False):
    """Per-parameter-row decay [D+1, 1]: l2 for the kernel rows, bias_l2 (default l2) for the bias row
    ([D, 1] of l2 when the parameters are the kernel alone)."""
    if kernel_only:
        return tf.fill([num_rows, 1], l2)
    bias_l2 = l2 if bias_l2 is None else cast(bias_l2)
    kernel_rows = tf.fill([num_rows - 1, 1], l2)
    return tf.concat([kernel_rows, tf.reshape(bias_l2, [1, 1])], axis=0)


def _resolve_options(method, options):
    """Defaults merged with the caller's options; unknown method/option -> ValueError naming valid ones."""
    if method not in METHOD_OPTIONS:
        raise ValueError(f"Unknown method {method!r}; valid methods: {sorted(METHOD_OPTIONS)}.")
    valid = METHOD_OPTIONS[method]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for method={method!r}; valid options: {sorted(valid)}.")
    opts = {**valid, **options}
    for key in ("num_terms", "power_iterations", "max_iterations", "damping", "tolerance"):
        if key in opts and isinstance(opts[key], (int, float)) and opts[key] < 0:
            raise ValueError(f"{key} must be >= 0, got {opts[key]}.")
    return opts


def _dim(tensor, axis):
    return tensor.shape[axis] if tensor.shape.rank is not None else None


def _check_shapes(x_lab, t_lab, x_unl, t_unl, w_unl, x_val, t_val, kernel, bias):
    """Static shape checks with messages that name the offending arguments."""
    ranks = {"labeled_features": (x_lab, 2), "labeled_targets": (t_lab, 2), "unlabeled_features": (x_unl, 2),
             "unlabeled_targets": (t_unl, 2), "unlabeled_weights": (w_unl, 1), "val_features": (x_val, 2),
             "val_targets": (t_val, 2), "kernel": (kernel, 2), "bias": (bias, 1)}
    for name, (tensor, rank) in ranks.items():
        if tensor.shape.rank is not None and tensor.shape.rank != rank:
            raise ValueError(f"{name} must have rank {rank}, got shape {tensor.shape}.")
    d, k = _dim(kernel, 0), _dim(kernel, 1)
    pairs = [("bias", bias, 0, "K", k)]
    for prefix, x, t in (("labeled", x_lab, t_lab), ("unlabeled", x_unl, t_unl), ("val", x_val, t_val)):
        pairs += [(f"{prefix}_features", x, 1, "D (kernel rows)", d), (f"{prefix}_targets", t, 1, "K", k)]
    for name, tensor, axis, what, expected in pairs:
        got = _dim(tensor, axis)
        if None not in (got, expected) and got != expected:
            raise ValueError(f"{name} has {got} columns along axis {axis}, expected {what} = {expected} "
                             f"(kernel shape {kernel.shape}).")
    rows = [("labeled_features", x_lab, "labeled_targets", t_lab), ("unlabeled_features", x_unl,
            "unlabeled_targets", t_unl), ("unlabeled_features", x_unl, "unlabeled_weights", w_unl),
            ("val_features", x_val, "val_targets", t_val)]
    for name_a, a, name_b, b in rows:
        if None not in (_dim(a, 0), _dim(b, 0)) and _dim(a, 0) != _dim(b, 0):
            raise ValueError(f"{name_a} has {_dim(a, 0)} rows but {name_b} has {_dim(b, 0)}.")


def _check_labeled_weights(w_lab, x_lab):
    """labeled_weights: scalar or [n]."""
    if w_lab.shape.rank is None or w_lab.shape.rank == 0:
        return
    n_w, n_x = (_dim(w_lab, 0), _dim(x_lab, 0)) if w_lab.shape.rank == 1 else (None, None)
    if w_lab.shape.rank != 1 or (None not in (n_w, n_x) and n_w != n_x):
        raise ValueError(f"labeled_weights must be a scalar or have shape [{_dim(x_lab, 0)}], "
                         f"got {w_lab.shape}.")
