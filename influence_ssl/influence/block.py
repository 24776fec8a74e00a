"""Influence hypergradients over a block of parameters (e.g. the last ResNet block plus the classifier).

Ren et al.'s method inverts the Hessian of the classifier layer only (`last_layer_weight_gradients`).
The baselines it is compared with in Sec. 4.3 (Lorraine et al.'s Neumann series, Koh & Liang's CG)
were applied to "the last ResNet block and the classification layer". Here H is never formed: it is
applied by Hessian-vector products of the training loss (double backward through the part of the
network that depends on the block) and inverted by the matrix-free solvers of `solvers`. "exact"
forms the dense Hessian by autodiff, for blocks small enough (tests, small models).

    dL_val/dλ_u ∝ -∇ℓ_u(θ)ᵀ H⁻¹ ∇L_val(θ),   θ = the block's parameters, flattened.

Math layer: imports nothing else from influence_ssl.
"""
import tensorflow as tf

from influence_ssl.influence import solvers

BLOCK_METHOD_OPTIONS = {
    "exact": {"damping": 1e-8, "check_factorization": True},
    "identity": {"scale": 1.0},
    "neumann": {"damping": 1e-8, "num_terms": 20, "scale": None, "power_iterations": 20, "trace_probes": 4},
    "cg": {"damping": 1e-8, "max_iterations": 100, "tolerance": 1e-6, "trace_probes": 4},
}


def flatten(tensors):
    """A list of tensors -> one vector [P] (row-major, in list order)."""
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)


def unflatten(vector, like):
    """A vector [P] -> a list of tensors shaped as `like`."""
    sizes = [v.shape.num_elements() for v in like]  # variables: static shapes
    return [tf.reshape(part, v.shape) for part, v in zip(tf.split(vector, sizes), like)]


def gradient(loss_fn, params):
    """∇ loss_fn() w.r.t. params, flattened [P] (zeros for a parameter the loss does not use)."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(params)
        loss = loss_fn()
    return flatten(tape.gradient(loss, params, unconnected_gradients=tf.UnconnectedGradients.ZERO))


def hessian_vector_product_fn(loss_fn, params):
    """v [P] -> H v, with H the Hessian of loss_fn() w.r.t. params (double backward; loss_fn re-runs)."""

    def hvp(v):
        with tf.GradientTape(watch_accessed_variables=False) as outer:
            outer.watch(params)
            with tf.GradientTape(watch_accessed_variables=False) as inner:
                inner.watch(params)
                loss = loss_fn()
            grads = inner.gradient(loss, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            directional = tf.add_n([tf.reduce_sum(g * part) for g, part in zip(grads, unflatten(v, params))])
        return flatten(outer.gradient(directional, params, unconnected_gradients=tf.UnconnectedGradients.ZERO))

    return hvp


def dense_hessian(loss_fn, params):
    """The [P, P] Hessian of loss_fn() w.r.t. params by autodiff (small blocks only)."""
    with tf.GradientTape(watch_accessed_variables=False, persistent=True) as outer:
        outer.watch(params)
        with tf.GradientTape(watch_accessed_variables=False) as inner:
            inner.watch(params)
            loss = loss_fn()
        grads = flatten(inner.gradient(loss, params, unconnected_gradients=tf.UnconnectedGradients.ZERO))
    rows = outer.jacobian(grads, params, unconnected_gradients=tf.UnconnectedGradients.ZERO,
                          experimental_use_pfor=False)
    del outer
    return tf.concat([tf.reshape(r, [tf.shape(grads)[0], -1]) for r in rows], axis=1)


def hutchinson_mean_diagonal(hvp, like, num_probes):
    """mean(diag H) ≈ (1/P) mean_k z_kᵀ H z_k over Rademacher probes z_k (deterministic seeds)."""
    size = tf.cast(tf.size(like), like.dtype)
    total = tf.zeros([], like.dtype)
    for k in range(num_probes):
        z = tf.sign(tf.random.stateless_uniform(tf.shape(like), seed=[31, k], minval=-1.0, maxval=1.0,
                                                dtype=like.dtype))
        total += tf.reduce_sum(z * hvp(z))
    return total / (num_probes * size)


def block_weight_gradients(train_loss_fn, val_loss_fn, params, per_example_grads, *, method="cg", **options):
    """-∇ℓ_uᵀ H⁻¹ ∇L_val for every row u of `per_example_grads` -> [U].

    Args:
      train_loss_fn: () -> scalar, the inner objective at the current params (its Hessian is H). With a
        mean-normalised weighted loss the caller scales the result by its weight factor (see the trainer).
      val_loss_fn: () -> scalar, the validation loss.
      params: list of variables, the block (e.g. last block + head).
      per_example_grads: list aligned with params, each [U, *shape]: ∇ℓ_u without the example's weight.
      method: "exact" (dense autodiff H, Cholesky), "identity" (H⁻¹ = scale·I, Luketina et al.),
        "neumann" (Lorraine et al.) or "cg" (Koh & Liang); options as BLOCK_METHOD_OPTIONS:
        damping: H + damping·mean(diag H)·I (exact: the true mean; neumann/cg: a Hutchinson estimate
          from `trace_probes` HVPs, skipped when damping is 0);
        check_factorization (exact): raise if H is not positive definite (a deep block's Hessian often
          is not: CG and Neumann then still return a number, Cholesky cannot); False returns NaNs;
        scale (identity), num_terms, scale (None: 1/λ_max by power iteration), power_iterations
          (neumann); max_iterations, tolerance (cg).
    Returns:
      [U] in the params' dtype. Negative values: up-weighting u lowers the validation loss.
    """
    if method not in BLOCK_METHOD_OPTIONS:
        raise ValueError(f"Unknown method {method!r}; valid methods: {sorted(BLOCK_METHOD_OPTIONS)}.")
    unknown = sorted(set(options) - set(BLOCK_METHOD_OPTIONS[method]))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for method={method!r}; "
                         f"valid options: {sorted(BLOCK_METHOD_OPTIONS[method])}.")
    opts = {**BLOCK_METHOD_OPTIONS[method], **options}
    params = list(params)
    g_val = gradient(val_loss_fn, params)                                           # [P]
    if method == "identity":
        solution = opts["scale"] * g_val
    elif method == "exact":
        # float64 solve: a float32 Cholesky of a nearly singular Hessian is noise.
        h = tf.cast(dense_hessian(train_loss_fn, params), tf.float64)
        damping_abs = opts["damping"] * tf.reduce_mean(tf.linalg.diag_part(h))
        solution = solvers.cholesky_solve(h, tf.cast(g_val, tf.float64)[:, None], damping_abs,
                                          opts["check_factorization"])[:, 0]
        solution = tf.cast(solution, g_val.dtype)
    else:
        undamped = hessian_vector_product_fn(train_loss_fn, params)
        damping_abs = tf.zeros([], g_val.dtype)
        if opts["damping"]:
            damping_abs = opts["damping"] * hutchinson_mean_diagonal(undamped, g_val, opts["trace_probes"])

        def hvp(v):
            return undamped(v) + damping_abs * v

        if method == "cg":
            solution = solvers.conjugate_gradient(hvp, g_val, opts["max_iterations"], opts["tolerance"])
        else:
            scale = opts["scale"]
            if scale is None:
                scale = 1.0 / solvers.power_iteration(hvp, g_val, opts["power_iterations"])
            solution = solvers.neumann_solve(hvp, g_val, opts["num_terms"], tf.cast(scale, g_val.dtype))
    rows = tf.concat([tf.reshape(g, [tf.shape(g)[0], -1]) for g in per_example_grads], axis=1)  # [U, P]
    return -tf.linalg.matvec(rows, solution)
