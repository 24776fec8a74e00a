"""Influence hypergradients over a block of parameters (e.g. the last ResNet block plus the classifier).

Ren et al.'s method inverts the Hessian of the classifier layer only (`last_layer_weight_gradients`).
The baselines it is compared with in Sec. 4.3 (Lorraine et al.'s Neumann series, Koh & Liang's CG)
were applied to "the last ResNet block and the classification layer". Here H is never formed: it is
applied by Hessian-vector products of the training loss (double backward; the loss and its gradient
are recorded once per solve, each product is one more backward pass) and inverted by the matrix-free
solvers of `solvers`. "exact" forms the dense Hessian by autodiff, for blocks small enough (tests,
small models).

    dL_val/dλ_u ∝ -∇ℓ_u(θ)ᵀ H⁻¹ ∇L_val(θ),   θ = the block's parameters, flattened.

`block_hypergradient` is the fast path, from the model cut at the block's input (trunk, block): the trunk
runs once per call, every HVP differentiates the block alone, and the rows come from one forward-mode
product with H⁻¹∇L_val instead of per-example gradients. `block_weight_gradients` is the general form
(any loss closures and given per-example gradients); both give the same numbers.

Math layer: imports only influence_ssl.pergrad from the rest of influence_ssl.
"""
import dataclasses

import tensorflow as tf

from influence_ssl.influence import solvers
from influence_ssl.pergrad import per_example_gradients

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
    """v [P] -> H v, with H the Hessian of loss_fn() w.r.t. params, by double backward.

    loss_fn and its gradient g run once, here, on a persistent tape; each call is then one backward pass
    through them with cotangent v: vᵀ ∂g/∂θ = (H v)ᵀ, H being symmetric. So an iterative solver pays the
    forward and the first backward once, not once per product.
    """
    with tf.GradientTape(watch_accessed_variables=False, persistent=True) as outer:
        outer.watch(params)
        with tf.GradientTape(watch_accessed_variables=False) as inner:
            inner.watch(params)
            loss = loss_fn()
        grads = inner.gradient(loss, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def hvp(v):
        return flatten(outer.gradient(grads, params, output_gradients=unflatten(v, params),
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO))

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
    opts = _method_options(method, options)
    params = list(params)
    solution = inverse_hessian_product(train_loss_fn, gradient(val_loss_fn, params), params, method, opts)
    rows = tf.concat([tf.reshape(g, [tf.shape(g)[0], -1]) for g in per_example_grads], axis=1)  # [U, P]
    return -tf.linalg.matvec(rows, solution)


def _method_options(method, options):
    """BLOCK_METHOD_OPTIONS[method] updated by `options`; ValueError naming the valid ones."""
    if method not in BLOCK_METHOD_OPTIONS:
        raise ValueError(f"Unknown method {method!r}; valid methods: {sorted(BLOCK_METHOD_OPTIONS)}.")
    unknown = sorted(set(options) - set(BLOCK_METHOD_OPTIONS[method]))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for method={method!r}; "
                         f"valid options: {sorted(BLOCK_METHOD_OPTIONS[method])}.")
    return {**BLOCK_METHOD_OPTIONS[method], **options}


def inverse_hessian_product(train_loss_fn, g_val, params, method, opts):
    """H⁻¹ g_val [P] (or its approximation), H the Hessian of train_loss_fn() w.r.t. params.

    opts: the complete options of `method` (BLOCK_METHOD_OPTIONS[method] updated); see
    `block_weight_gradients` for their meaning. H is symmetric, so this one solve serves every row ∇ℓ_u.
    """
    if method == "identity":
        return opts["scale"] * g_val
    if method == "exact":
        # float64 solve: a float32 Cholesky of a nearly singular Hessian is noise.
        h = tf.cast(dense_hessian(train_loss_fn, params), tf.float64)
        damping_abs = opts["damping"] * tf.reduce_mean(tf.linalg.diag_part(h))
        solution = solvers.cholesky_solve(h, tf.cast(g_val, tf.float64)[:, None], damping_abs,
                                          opts["check_factorization"])[:, 0]
        return tf.cast(solution, g_val.dtype)
    undamped = hessian_vector_product_fn(train_loss_fn, params)
    damping_abs = tf.zeros([], g_val.dtype)
    if opts["damping"]:
        damping_abs = opts["damping"] * hutchinson_mean_diagonal(undamped, g_val, opts["trace_probes"])

    def hvp(v):
        return undamped(v) + damping_abs * v

    if method == "cg":
        return solvers.conjugate_gradient(hvp, g_val, opts["max_iterations"], opts["tolerance"])
    scale = opts["scale"]
    if scale is None:
        scale = 1.0 / solvers.power_iteration(hvp, g_val, opts["power_iterations"])
    return solvers.neumann_solve(hvp, g_val, opts["num_terms"], tf.cast(scale, g_val.dtype))


# ----- from the model's split: one trunk forward, every HVP over the block alone ---------------------


@dataclasses.dataclass(frozen=True)
class BlockBatch:
    """The Λ batch as `block_hypergradient` reads it: model inputs (before the trunk) and loss terms.

    labeled_x [B, ...], labeled_targets [B, K]: the supervised term mean_B CE(t_i, f(x_i)) (the algorithm's
      targets, e.g. one-hots scaled by TSA).
    unlabeled_x [U, ...], unlabeled_targets [U, K] (constant, mask folded in), unlabeled_weights [U]: the
      unsupervised term Σ_u w_u CE(t_u, f(x_u)), w_u the training loss's factor on ℓ_u (e.g. r(t)·λ_u/U).
    val_x [V, ...], val_y [V] int: L_val = mean_V CE(y, f(x)).
    """

    labeled_x: tf.Tensor
    labeled_targets: tf.Tensor
    unlabeled_x: tf.Tensor
    unlabeled_targets: tf.Tensor
    unlabeled_weights: tf.Tensor
    val_x: tf.Tensor
    val_y: tf.Tensor


def soft_cross_entropy(targets, logits):
    """-Σ_k t_k log softmax(z)_k: [N, K], [N, K] -> [N]. Not tf.nn.softmax_cross_entropy_with_logits: that
    op's gradient is p - t even for an all-zero (masked) target row, whose loss and gradient are 0."""
    return -tf.reduce_sum(targets * tf.nn.log_softmax(logits), axis=-1)


def block_inputs(trunk, inputs):
    """The last block's input activations of each [N_i, ...] in `inputs` (same trailing shape): one
    inference-mode trunk forward over their concatenation (inference BN treats rows independently), held
    constant."""
    sizes = [tf.shape(x)[0] for x in inputs]
    activations = tf.stop_gradient(trunk(tf.concat(inputs, axis=0), training=False))
    return tf.split(activations, sizes, axis=0)


def directional_derivatives(losses_fn, params, direction):
    """[∇ℓ_n · direction]_n for the vector losses_fn() -> [N]: one forward-mode pass, no [N, P] rows.

    direction: [P], flattened as `flatten(params)`.
    """
    with tf.autodiff.ForwardAccumulator(params, unflatten(direction, params)) as accumulator:
        losses = losses_fn()
    return accumulator.jvp(losses, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def block_hypergradient(trunk, block, params, batch, row_targets, *, l2=0.0, decayed=(), method="cg",
                        with_norms=False, **options):
    """-∇ℓ_uᵀ H⁻¹ ∇L_val [U] over `params`, H and both gradients from one trunk forward.

    The same numbers as `block_weight_gradients` on the whole model, at a fraction of the cost: the trunk
    runs once; every Hessian-vector product differentiates the block alone on its cached input; and as H is
    symmetric, the rows ∇ℓ_uᵀ(H⁻¹∇L_val) of all u come from one forward-mode pass, not from [U, P]
    per-example gradients.

    Args:
      trunk: a callable (model) inputs [N, ...] -> the block's input activations [N, ...].
      block: a callable tf_keras model, activations -> logits [N, K], reading `params` (see
        influence_ssl.models.Classifier.last_block_split).
      params: list of variables of `block` (e.g. the last block's and the head's).
      batch: a BlockBatch; its labeled and unlabeled terms make the training loss whose Hessian is H:
        mean_B CE + Σ_u w_u CE_u + l2 · Σ_{p in decayed} ½||p||².
      row_targets: [U, K] targets of the rows' ℓ_u = CE(row_targets_u, f(x_u)) (unweighted; may differ from
        batch.unlabeled_targets, e.g. with a temperature).
      l2, decayed: the L2 term's factor (a Python float) and the variables of `params` it decays.
      method, options: as `block_weight_gradients` (BLOCK_METHOD_OPTIONS).
      with_norms: also return ||∇ℓ_u|| over params. Norms need the per-example gradients, so this case
        builds them (influence_ssl.pergrad, over the block only) and takes the rows from them.
    Returns:
      (hypergradient [U], norms [U] or None), in the logits' dtype.
    """
    opts = _method_options(method, options)
    params = list(params)
    labeled, unlabeled, val = block_inputs(trunk, [batch.labeled_x, batch.unlabeled_x, batch.val_x])
    train_loss = _training_loss_fn(block, labeled, unlabeled, batch, l2, decayed)

    def val_loss():
        logits = block(val, training=False)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch.val_y, logits))

    solution = inverse_hessian_product(train_loss, gradient(val_loss, params), params, method, opts)  # [P]
    products, norms = _row_products(block, params, unlabeled, row_targets, solution, with_norms)
    return -products, norms


def _row_products(block, params, activations, targets, direction, with_norms):
    """(∇ℓ_u · direction [U], ||∇ℓ_u|| [U] or None), ℓ_u = CE(targets_u, block(activations_u)).

    Without norms, one forward-mode pass; with them, the per-example gradients [U, P] over the block."""
    if not with_norms:
        losses = lambda: soft_cross_entropy(targets, block(activations, training=False))
        return directional_derivatives(losses, params, direction), None
    rows = per_example_gradients(block, lambda logits, t: soft_cross_entropy(t, logits), activations,
                                 training=False, variables=params, targets=targets)
    rows = tf.concat([tf.reshape(r, [tf.shape(r)[0], -1]) for r in rows], axis=1)  # [U, P]
    return tf.linalg.matvec(rows, direction), tf.norm(rows, axis=1)


def _training_loss_fn(block, labeled, unlabeled, batch, l2, decayed):
    """() -> the training loss on the cached activations (one block call over labeled and unlabeled rows)."""
    num_labeled = tf.shape(labeled)[0]
    activations = tf.concat([labeled, unlabeled], axis=0)
    targets = tf.concat([batch.labeled_targets, batch.unlabeled_targets], axis=0)
    weights = tf.concat([tf.fill([num_labeled], 1.0 / tf.cast(num_labeled, batch.unlabeled_weights.dtype)),
                         batch.unlabeled_weights], axis=0)
    decayed = list(decayed)

    def train_loss():
        loss = tf.reduce_sum(weights * soft_cross_entropy(targets, block(activations, training=False)))
        if l2 and decayed:
            loss += l2 * tf.add_n([0.5 * tf.reduce_sum(tf.square(p)) for p in decayed])
        return loss

    return train_loss
