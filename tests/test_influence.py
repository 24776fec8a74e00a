"""Tests of influence_ssl.influence against independent oracles.

Oracles: (1) the inner objective written with tf.nn.log_softmax in float64, H by nested GradientTapes,
per-example gradients by tape.jacobian, solved with numpy (solve or pinv); (2) central finite differences
of the validation loss after RE-SOLVING the convex inner problem (Newton, ||grad|| < 1e-10), which is the
definition of the hypergradient.
"""
import numpy as np
import pytest
import tensorflow as tf

from influence_ssl import influence
from influence_ssl.influence import last_layer

F64 = tf.float64


# ----------------------------------------------------------------------------------------------- problems
def make_problem(seed=0, d=4, k=3, n=12, m=10, v=15, masked=(3,)):
    """Random problem; unlabeled targets are soft pseudo-targets, rows in `masked` all zero."""
    rng = np.random.default_rng(seed)
    onehot = lambda size: np.eye(k)[rng.integers(0, k, size)]
    t_unl = rng.dirichlet(np.ones(k), size=m)
    t_unl[list(masked)] = 0.0
    return dict(
        labeled_features=rng.normal(size=(n, d)), labeled_targets=onehot(n),
        unlabeled_features=rng.normal(size=(m, d)), unlabeled_targets=t_unl,
        unlabeled_weights=rng.uniform(0.5, 2.0, size=m),
        val_features=rng.normal(size=(v, d)), val_targets=onehot(v),
        kernel=0.5 * rng.normal(size=(d, k)), bias=0.3 * rng.normal(size=k))


def with_params(problem, theta):
    """Copy of problem with Theta [D+1, K] split into kernel and bias."""
    return {**problem, "kernel": theta[:-1], "bias": theta[-1]}


# ------------------------------------------------------------------------------------- autodiff oracle
class Oracle:
    """The inner objective of the docstring by plain autodiff over a flat parameter vector (float64).

    binary=True uses the one-logit parametrization phi = [theta'; b'] with logits (f, -f).
    """

    def __init__(self, problem, l2, bias_l2=None, labeled_weights=None, binary=False):
        c = lambda a: tf.constant(np.asarray(a, dtype=np.float64))
        self.p = {key: c(val) for key, val in problem.items()}
        n = problem["labeled_features"].shape[0]
        self.a = c(np.ones(n) if labeled_weights is None else np.broadcast_to(labeled_weights, (n,)))
        self.l2, self.bias_l2 = l2, l2 if bias_l2 is None else bias_l2
        self.binary = binary
        self.d, self.k = problem["kernel"].shape
        self.cols = 1 if binary else self.k

    def theta0(self):
        theta = np.concatenate([self.p["kernel"].numpy(), self.p["bias"].numpy()[None]], 0)
        if self.binary:
            theta = 0.5 * (theta[:, :1] - theta[:, 1:])
        return theta.reshape(-1)

    def ce(self, flat, x, t):
        """Per-row CE [N] at flat parameters."""
        theta = tf.reshape(flat, [self.d + 1, self.cols])
        z = tf.matmul(x, theta[:-1]) + theta[-1]
        if self.binary:
            z = tf.concat([z, -z], axis=1)
        return -tf.reduce_sum(t * tf.nn.log_softmax(z, axis=-1), axis=1)

    def objective(self, flat, lam):
        theta = tf.reshape(flat, [self.d + 1, self.cols])
        p = self.p
        return (tf.reduce_sum(self.a * self.ce(flat, p["labeled_features"], p["labeled_targets"]))
                + tf.reduce_sum(lam * self.ce(flat, p["unlabeled_features"], p["unlabeled_targets"]))
                + 0.5 * self.l2 * tf.reduce_sum(theta[:-1] ** 2) + 0.5 * self.bias_l2 * tf.reduce_sum(theta[-1] ** 2))

    def val_loss(self, flat):
        return tf.reduce_mean(self.ce(flat, self.p["val_features"], self.p["val_targets"]))

    def grad_hess(self, flat, lam):
        flat = tf.constant(flat)
        with tf.GradientTape(persistent=True) as outer:
            outer.watch(flat)
            with tf.GradientTape() as inner:
                inner.watch(flat)
                obj = self.objective(flat, lam)
            g = inner.gradient(obj, flat)
        return g.numpy(), outer.jacobian(g, flat, experimental_use_pfor=False).numpy()

    def val_grad(self, flat):
        flat = tf.constant(flat)
        with tf.GradientTape() as tape:
            tape.watch(flat)
            loss = self.val_loss(flat)
        return tape.gradient(loss, flat).numpy()

    def unlabeled_grads(self, flat):
        flat = tf.constant(flat)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(flat)
            ce = self.ce(flat, self.p["unlabeled_features"], self.p["unlabeled_targets"])
        return tape.jacobian(ce, flat, experimental_use_pfor=False).numpy()   # [m, P]

    def hypergradient(self, pinv=False):
        flat = self.theta0()
        _, h = self.grad_hess(flat, self.p["unlabeled_weights"])
        g_val, g_unl = self.val_grad(flat), self.unlabeled_grads(flat)
        s = np.linalg.pinv(h, rcond=1e-10, hermitian=True) @ g_val if pinv else np.linalg.solve(h, g_val)
        return -g_unl @ s

    def newton(self, lam, flat=None, tol=1e-10):
        """Minimise the (strictly convex) objective; Newton with backtracking -> flat optimum."""
        flat = self.theta0() if flat is None else flat
        lam = tf.constant(lam)
        for _ in range(100):
            g, h = self.grad_hess(flat, lam)
            if np.linalg.norm(g) < tol:
                return flat
            step, f0, t = np.linalg.solve(h, g), float(self.objective(flat, lam)), 1.0
            while float(self.objective(flat - t * step, lam)) > f0 and t > 1e-8:
                t *= 0.5
            flat = flat - t * step
        raise AssertionError(f"Newton did not converge: ||g|| = {np.linalg.norm(g)}")

    def fd_hypergradient(self, lam, flat_opt, u, eps=1e-4, step_scale=1.0):
        """Central difference of L_val(theta*(lam)) with lam_u +/- eps*step_scale, re-solved each side."""
        vals = []
        for sign in (1.0, -1.0):
            lam_s = np.array(lam, dtype=np.float64)
            lam_s[u] += sign * eps * step_scale
            vals.append(float(self.val_loss(self.newton(lam_s, flat_opt))))
        return (vals[0] - vals[1]) / (2 * eps)


def at_optimum(problem, l2, binary=False, **kw):
    """Problem with (kernel, bias) moved to the inner optimum (so the influence formula applies)."""
    oracle = Oracle(problem, l2, binary=binary, **kw)
    flat = oracle.newton(problem["unlabeled_weights"])
    theta = flat.reshape(oracle.d + 1, oracle.cols)
    if binary:
        theta = np.concatenate([theta, -theta], axis=1)
    return with_params(problem, theta), flat


def rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b)))


# ------------------------------------------------------------------------------- closed forms vs autodiff
@pytest.mark.parametrize("binary", [False, True])
def test_hessian_and_hvp_match_autodiff(binary):
    prob = make_problem(seed=1, k=2 if binary else 3)
    lam_unl = prob["unlabeled_weights"]
    oracle = Oracle(prob, l2=0.3, bias_l2=0.1, binary=binary)
    flat = oracle.theta0()
    _, h_ref = oracle.grad_hess(flat, lam_unl)
    kernel, bias = tf.constant(prob["kernel"]), tf.constant(prob["bias"])
    if binary:
        params, make = last_layer.binary_params(kernel, bias), last_layer.binary_rows
    else:
        params, make = last_layer.stack_params(kernel, bias), last_layer.softmax_rows
    x = tf.constant(np.concatenate([prob["labeled_features"], prob["unlabeled_features"]]))
    t = tf.constant(np.concatenate([prob["labeled_targets"], prob["unlabeled_targets"]]))
    w = tf.constant(np.concatenate([np.ones(len(prob["labeled_features"])), lam_unl]))
    rows = make(x, t, params)
    l2 = tf.constant([[0.3]] * prob["kernel"].shape[0] + [[0.1]], dtype=F64)
    h = last_layer.hessian(rows, w, l2).numpy()
    np.testing.assert_allclose(h, h_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h, h.T, atol=1e-12)
    v = np.random.default_rng(2).normal(size=params.shape)
    hv = last_layer.hessian_vector_product(rows, w, l2, tf.constant(v)).numpy()
    np.testing.assert_allclose(hv.reshape(-1), h_ref @ v.reshape(-1), rtol=1e-10, atol=1e-12)
    mean_diag = last_layer.hessian_mean_diagonal(rows, w, l2).numpy()
    np.testing.assert_allclose(mean_diag, np.mean(np.diag(h_ref)), rtol=1e-12)
    # Per-example gradients (outer products) vs autodiff rows.
    unl_rows = make(tf.constant(prob["unlabeled_features"]), tf.constant(prob["unlabeled_targets"]), params)
    pe = last_layer.per_example_gradients(unl_rows).numpy().reshape(len(lam_unl), -1)
    np.testing.assert_allclose(pe, oracle.unlabeled_grads(flat), rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------------------------------- exact method
def test_exact_matches_autodiff_solve():
    prob = make_problem(seed=3)
    lab_w = np.random.default_rng(4).uniform(0.2, 1.5, size=12)
    ours = influence.last_layer_weight_gradients(**prob, l2=0.2, labeled_weights=lab_w, damping=0.0,
                                                 bias_l2=0.05)
    ref = Oracle(prob, l2=0.2, bias_l2=0.05, labeled_weights=lab_w).hypergradient()
    assert ours.shape == (10,) and ours.dtype == tf.float64
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-9, atol=1e-13)


def test_exact_converges_to_pinv_as_damping_vanishes():
    """l2 = 0: H is singular (logit shift), but the gradients avoid its null space -> pinv limit."""
    prob = make_problem(seed=5)
    ref = Oracle(prob, l2=0.0).hypergradient(pinv=True)
    errors = [rel_err(influence.last_layer_weight_gradients(**prob, damping=dmp).numpy(), ref)
              for dmp in (1e-3, 1e-6, 1e-9)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6, errors


def test_exact_matches_finite_difference_of_resolved_optimum():
    prob, flat = at_optimum(make_problem(seed=6), l2=0.05)
    oracle = Oracle(prob, l2=0.05)
    ours = influence.last_layer_weight_gradients(**prob, l2=0.05, damping=0.0).numpy()
    lam = prob["unlabeled_weights"]
    for u in (0, 1, 3, 7):          # u = 3 is masked: FD and ours are both 0
        fd = oracle.fd_hypergradient(lam, flat, u)
        np.testing.assert_allclose(ours[u], fd, rtol=1e-4, atol=1e-9)
    assert ours[3] == 0.0


def test_mean_normalised_mapping_gives_documented_scale():
    """Loss (1/n) sum CE_lab + (1/m) sum lam_u l_u + l2/2 ||Theta||^2: dL_val/dlam_u = result / m."""
    base = make_problem(seed=7)
    n, m = len(base["labeled_features"]), len(base["unlabeled_features"])
    lam = base["unlabeled_weights"]
    scaled = {**base, "unlabeled_weights": lam / m}
    prob, flat = at_optimum(scaled, l2=0.01, labeled_weights=1.0 / n)
    oracle = Oracle(prob, l2=0.01, labeled_weights=1.0 / n)
    ours = influence.last_layer_weight_gradients(**prob, l2=0.01, labeled_weights=1.0 / n, damping=0.0).numpy()
    vec = influence.last_layer_weight_gradients(**prob, l2=0.01, labeled_weights=np.full(n, 1.0 / n),
                                                damping=0.0).numpy()
    np.testing.assert_array_equal(ours, vec)
    for u in (0, 5):
        # Perturb lam_u by eps, i.e. the weight lam_u/m by eps/m; FD is then dL_val/dlam_u.
        fd = oracle.fd_hypergradient(prob["unlabeled_weights"], flat, u, step_scale=1.0 / m)
        np.testing.assert_allclose(ours[u] / m, fd, rtol=1e-4)


# ----------------------------------------------------------------------------------- binary reparam
def test_binary_reparam_equals_pinv_of_two_logit_hessian():
    prob = make_problem(seed=8, k=2)
    ours = influence.last_layer_weight_gradients(**prob, binary_reparam=True, damping=0.0).numpy()
    ref = Oracle(prob, l2=0.0).hypergradient(pinv=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-12)


def test_binary_reparam_with_l2_matches_two_logit_with_half_l2():
    prob = make_problem(seed=9, k=2)
    ours = influence.last_layer_weight_gradients(**prob, l2=0.4, binary_reparam=True, damping=0.0).numpy()
    two_logit = influence.last_layer_weight_gradients(**prob, l2=0.2, damping=0.0).numpy()
    np.testing.assert_allclose(ours, two_logit, rtol=1e-9, atol=1e-13)


def test_binary_reparam_matches_finite_difference():
    prob, flat = at_optimum(make_problem(seed=10, k=2), l2=0.05, binary=True)
    oracle = Oracle(prob, l2=0.05, binary=True)
    ours = influence.last_layer_weight_gradients(**prob, l2=0.05, binary_reparam=True, damping=0.0).numpy()
    for u in (0, 2, 4):
        fd = oracle.fd_hypergradient(prob["unlabeled_weights"], flat, u)
        np.testing.assert_allclose(ours[u], fd, rtol=1e-4)


# ------------------------------------------------------------------------------------- approximations
def test_identity_is_negative_gradient_dot_product():
    prob = make_problem(seed=11)
    oracle = Oracle(prob, l2=0.0)
    flat = oracle.theta0()
    ref = -oracle.unlabeled_grads(flat) @ oracle.val_grad(flat)
    ours = influence.last_layer_weight_gradients(**prob, method="identity").numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)
    scaled = influence.last_layer_weight_gradients(**prob, method="identity", scale=0.25).numpy()
    np.testing.assert_allclose(scaled, 0.25 * ref, rtol=1e-10, atol=1e-14)


def test_cg_and_neumann_converge_to_exact():
    prob = make_problem(seed=12)
    exact = influence.last_layer_weight_gradients(**prob, l2=0.1).numpy()
    hg = lambda **kw: influence.last_layer_weight_gradients(**prob, l2=0.1, **kw).numpy()
    cg_err = [rel_err(hg(method="cg", max_iterations=it, tolerance=0.0), exact) for it in (1, 3, 6, 15)]
    assert cg_err[0] > cg_err[1] > cg_err[2] and cg_err[-1] < 1e-8, cg_err
    nm_err = [rel_err(hg(method="neumann", num_terms=j), exact) for j in (0, 10, 100, 1500)]
    assert nm_err[0] > nm_err[1] > nm_err[2] > nm_err[3] and nm_err[-1] < 1e-3, nm_err
    # num_terms = 0 with an explicit scale is the scaled identity approximation.
    np.testing.assert_allclose(hg(method="neumann", num_terms=0, scale=0.5),
                               hg(method="identity", scale=0.5), rtol=1e-12)


# -------------------------------------------------------------------------------- masks, dtypes, graph
@pytest.mark.parametrize("method", ["exact", "identity", "neumann", "cg"])
def test_masked_rows_are_exactly_zero(method):
    prob = make_problem(seed=13, masked=(0, 4, 9))
    out = influence.last_layer_weight_gradients(**prob, l2=0.1, method=method).numpy()
    assert np.all(out[[0, 4, 9]] == 0.0)
    assert np.all(out[[1, 2, 3]] != 0.0)


def test_float32_inputs_return_float32_close_to_float64():
    prob = make_problem(seed=14)
    ref = influence.last_layer_weight_gradients(**prob, l2=0.1).numpy()
    prob32 = {key: tf.constant(val, dtype=tf.float32) for key, val in prob.items()}
    out = influence.last_layer_weight_gradients(**prob32, l2=0.1)
    assert out.dtype == tf.float32
    assert rel_err(out.numpy(), ref) < 1e-5


@pytest.mark.parametrize("method,opts", [("exact", {}), ("cg", {"max_iterations": 50}),
                                         ("neumann", {"num_terms": 30})])
def test_tf_function_matches_eager(method, opts):
    prob = make_problem(seed=15)
    args = [tf.constant(prob[key], dtype=tf.float32) for key in (
        "labeled_features", "labeled_targets", "unlabeled_features", "unlabeled_targets",
        "unlabeled_weights", "val_features", "val_targets", "kernel", "bias")]
    eager = influence.last_layer_weight_gradients(*args, l2=0.1, method=method, **opts)
    compiled = tf.function(lambda *a: influence.last_layer_weight_gradients(*a, l2=0.1, method=method, **opts))
    np.testing.assert_allclose(compiled(*args).numpy(), eager.numpy(), rtol=1e-6)


# ------------------------------------------------------------------------------------------------ errors
def test_unknown_method_and_option_are_rejected():
    prob = make_problem()
    with pytest.raises(ValueError, match=r"valid methods: \['cg', 'exact', 'identity', 'neumann'\]"):
        influence.last_layer_weight_gradients(**prob, method="lissa")
    with pytest.raises(ValueError, match="valid options:.*damping"):
        influence.last_layer_weight_gradients(**prob, method="exact", num_terms=3)
    with pytest.raises(ValueError, match="valid options"):
        influence.last_layer_weight_gradients(**prob, method="identity", damping=1e-3)


@pytest.mark.parametrize("key,value,pattern", [
    ("unlabeled_targets", np.zeros((10, 4)), "unlabeled_targets has 4 columns.*K = 3"),
    ("val_features", np.zeros((15, 5)), "val_features has 5 columns.*D"),
    ("bias", np.zeros(2), "bias has 2 columns.*K = 3"),
    ("unlabeled_weights", np.ones(9), "unlabeled_features has 10 rows but unlabeled_weights has 9"),
    ("labeled_targets", np.eye(3)[[0] * 11], "labeled_features has 12 rows but labeled_targets has 11"),
    ("unlabeled_weights", np.ones((10, 1)), "unlabeled_weights must have rank 1"),
])
def test_bad_shapes_are_rejected(key, value, pattern):
    prob = {**make_problem(), key: value}
    with pytest.raises(ValueError, match=pattern):
        influence.last_layer_weight_gradients(**prob)


def test_bad_labeled_weights_and_binary_k_are_rejected():
    prob = make_problem()
    with pytest.raises(ValueError, match="labeled_weights must be a scalar or have shape"):
        influence.last_layer_weight_gradients(**prob, labeled_weights=np.ones(5))
    with pytest.raises(ValueError, match="binary_reparam=True needs a 2-class head, got K=3"):
        influence.last_layer_weight_gradients(**prob, binary_reparam=True)


def test_cholesky_failure_raises_clear_error():
    prob = make_problem()
    # Zero features: the kernel block of H is exactly 0, so undamped Cholesky must fail.
    zero = {**prob, "labeled_features": 0 * prob["labeled_features"],
            "unlabeled_features": 0 * prob["unlabeled_features"]}
    with pytest.raises(influence.HessianFactorizationError, match="Increase `damping`.*or `l2`"):
        influence.last_layer_weight_gradients(**zero, damping=0.0)
    # Negative example weights make H indefinite even with l2.
    neg = {**prob, "unlabeled_weights": -5.0 * np.ones(10)}
    with pytest.raises(influence.HessianFactorizationError):
        influence.last_layer_weight_gradients(**neg, l2=1e-3)
    # The default damping rescues the singular l2 = 0 case.
    assert np.all(np.isfinite(influence.last_layer_weight_gradients(**prob).numpy()))


def test_cholesky_failure_in_tf_function_carries_hint():
    prob = make_problem()
    zero = {key: tf.constant(val) for key, val in prob.items()}
    zero["labeled_features"] *= 0.0
    zero["unlabeled_features"] *= 0.0
    compiled = tf.function(lambda p: influence.last_layer_weight_gradients(**p, damping=0.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Increase `damping`"):
        compiled(zero)


def test_dynamic_batch_sizes_under_tf_function():
    prob = make_problem(seed=16)
    keys = ("labeled_features", "labeled_targets", "unlabeled_features", "unlabeled_targets",
            "unlabeled_weights", "val_features", "val_targets", "kernel", "bias")
    spec = [tf.TensorSpec([None] + list(np.shape(prob[key]))[1:], tf.float64) for key in keys[:-2]]
    spec += [tf.TensorSpec(np.shape(prob["kernel"]), tf.float64), tf.TensorSpec([3], tf.float64)]
    for method in ("exact", "cg"):
        fn = tf.function(lambda *a: influence.last_layer_weight_gradients(*a, l2=0.1, method=method),
                         input_signature=spec)
        got = fn(*[tf.constant(prob[key]) for key in keys]).numpy()
        ref = influence.last_layer_weight_gradients(**prob, l2=0.1, method=method).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-10)
