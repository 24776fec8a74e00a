"""What damping does to the exact last-layer hypergradient (method="exact"), as numbers.

The damped solve uses H + damping * mean(diag H) * I (Cholesky, float64). Its reference is the float64
pseudo-inverse of H from numpy's eigh, restricted to the eigenvalues above cutoff * lambda_max: a softmax head
without decay is singular through the logit shift, and low-rank features make it more so, so "the exact answer"
is the pinv one, and how much it moves with the cutoff says whether it is well defined at all. Every
comparison is over the unmasked unlabeled rows (where the reference is nonzero).

Problems (problems()):
  random          Gaussian features, D=16, K=5; singular only through the logit shift (l2=0);
  mlp_moons       the penultimate ReLU features of a 2-100-100-2 MLP trained on the 10 labeled two-moons
                  points (influence_ssl.data), 1000 unlabeled with FixMatch-style hard pseudo-labels under a
                  0.95 confidence mask, 30 validation; l2=0; rank-deficient;
  mlp_moons_binary  the same with binary_reparam=True (Ren et al. App. D: no shift null space);
  wrn_head        WRN-28-2-head-sized: D=128, K=10, 64 labeled + 320 unlabeled + 1024 validation,
                  non-negative low-rank features like global-average-pooled ReLU maps; l2=0;
  wrn_head_mean   the same in the trainer's mean-normalised convention, decay 5e-4 on the kernel only.
"""
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras

from influence_ssl import influence
from influence_ssl.data import make_synthetic
from influence_ssl.influence import last_layer

DAMPINGS = [0.0, 1e-12, 1e-10, 1e-8, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
CUTOFFS = [1e-14, 1e-12, 1e-10, 1e-8, 1e-6]
REFERENCE_CUTOFF = 1e-12
EIGENVALUE_THRESHOLDS = [1e-12, 1e-8, 1e-4]  # eigenvalues counted below these fractions of lambda_max
MEAN_DECAY = 5e-4  # wrn_head_mean: the trainer's weight decay, on the kernel only
# (label, method, options) of approximations(): identity, Neumann and CG against exact at the default damping.
APPROXIMATIONS = [("exact", "exact", {}), ("identity", "identity", {}),
                  ("neumann J=20", "neumann", {"num_terms": 20}), ("neumann J=200", "neumann", {"num_terms": 200}),
                  ("cg 10", "cg", {"max_iterations": 10}), ("cg 30", "cg", {"max_iterations": 30}),
                  ("cg 100 (default)", "cg", {})]
APPROXIMATION_TIMING_CALLS = 10


# ----------------------------------------------------------------------------------------------- problems
def _onehot(labels, k):
    return np.eye(k)[labels]


def _fit_head(x, t, w, k, l2, steps=300, lr=0.5, seed=0):
    """A few hundred full-batch GD steps on the weighted CE head: a trained-looking head, not an optimum.
    x [N, D], t [N, K], w [N] -> kernel [D, K], bias [K]."""
    rng = np.random.default_rng(seed)
    kernel = tf.Variable(0.01 * rng.normal(size=(x.shape[1], k)))
    bias = tf.Variable(np.zeros(k))
    x, t, w = tf.constant(x), tf.constant(t), tf.constant(w)
    params = [kernel, bias]
    for _ in range(steps):
        with tf.GradientTape() as tape:
            ce = tf.nn.softmax_cross_entropy_with_logits(t, tf.matmul(x, kernel) + bias)
            loss = tf.reduce_sum(w * ce) / tf.reduce_sum(w) + 0.5 * l2 * tf.reduce_sum(kernel ** 2)
        for var, grad in zip(params, tape.gradient(loss, params)):
            var.assign_sub(lr * grad)
    return kernel.numpy(), bias.numpy()


def problem_random(seed=0):
    """Gaussian features (200 labeled, 200 unlabeled with Dirichlet soft targets, 100 validation), D=16, K=5,
    and a random head: the keyword arguments of influence.last_layer_weight_gradients (float64 arrays)."""
    rng = np.random.default_rng(seed)
    d, k, n, m, v = 16, 5, 200, 200, 100

    def x(size):
        return rng.normal(size=(size, d))

    kernel, bias = 0.3 * rng.normal(size=(d, k)), 0.1 * rng.normal(size=k)
    return dict(labeled_features=x(n), labeled_targets=_onehot(rng.integers(0, k, n), k),
                unlabeled_features=x(m), unlabeled_targets=rng.dirichlet(np.ones(k), size=m),
                unlabeled_weights=np.ones(m), val_features=x(v), val_targets=_onehot(rng.integers(0, k, v), k),
                kernel=kernel, bias=bias)


def problem_mlp_moons(seed=0, steps=300, confidence=0.95):
    """The penultimate features of a 2-100-100-2 ReLU MLP (He init, Adam 1e-2, `steps` full-batch steps on the
    10 labeled points of make_synthetic("moons", seed)), with its unlabeled rows hard-pseudo-labelled where the
    MLP's confidence reaches `confidence` (zero targets elsewhere); float64 throughout."""
    data = make_synthetic("moons", seed, num_labeled=10, num_validation=30, num_unlabeled=1000, num_test=1)
    rng = np.random.default_rng(seed)

    def he(fan_in, fan_out, scale=1.0):
        return tf.Variable(scale * rng.normal(scale=np.sqrt(2.0 / fan_in), size=(fan_in, fan_out)))

    w1, w2, w3 = he(2, 100), he(100, 100), he(100, 2, scale=0.1)
    b1, b2, b3 = (tf.Variable(np.zeros(size)) for size in (100, 100, 2))
    params = [w1, b1, w2, b2, w3, b3]

    def features(x):
        x = tf.constant(np.asarray(x, np.float64))
        return tf.nn.relu(tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2) + b2)

    t_lab = _onehot(data.labeled_y, 2)
    adam = keras.optimizers.Adam(1e-2)

    @tf.function(autograph=False)
    def train_step():
        with tf.GradientTape() as tape:
            logits = tf.matmul(features(data.labeled_x), w3) + b3
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(t_lab, logits))
        adam.apply_gradients(zip(tape.gradient(loss, params), params))

    for _ in range(steps):
        train_step()
    f_unl = features(data.unlabeled_x).numpy()
    p_unl = tf.nn.softmax(tf.matmul(f_unl, w3) + b3).numpy()
    mask = (p_unl.max(1) >= confidence).astype(np.float64)
    return dict(labeled_features=features(data.labeled_x).numpy(), labeled_targets=t_lab,
                unlabeled_features=f_unl, unlabeled_targets=_onehot(p_unl.argmax(1), 2) * mask[:, None],
                unlabeled_weights=np.ones(len(f_unl)), val_features=features(data.val_x).numpy(),
                val_targets=_onehot(data.val_y, 2), kernel=w3.numpy(), bias=b3.numpy())


def problem_wrn_head(seed=0):
    """Non-negative, low-effective-rank features shaped like WRN-28-2's pooled 128-d output (rank-24 latent
    mix plus class means, ReLU), soft confidence-masked pseudo-targets, and a head fitted with decay 5e-4."""
    rng = np.random.default_rng(seed)
    d, k, n, m, v, latent = 128, 10, 64, 320, 1024, 24
    mix, class_means = rng.normal(size=(latent, d)) / np.sqrt(latent), rng.normal(size=(k, d))

    def sample(size):
        labels = rng.integers(0, k, size)
        z = rng.normal(size=(size, latent)) @ mix + class_means[labels] + 0.05 * rng.normal(size=(size, d))
        return np.maximum(z, 0.0), labels

    x_lab, y_lab = sample(n)
    x_unl, y_unl = sample(m)
    x_val, y_val = sample(v)
    # Soft pseudo-targets (UDA-style sharpened predictions of a noisy teacher), confidence-masked.
    teacher = _onehot(y_unl, k) * 3.0 + rng.normal(size=(m, k))
    p = np.exp(teacher / 0.4)
    p /= p.sum(1, keepdims=True)
    t_unl = p * (p.max(1, keepdims=True) >= 0.8)
    x_tr, t_tr = np.concatenate([x_lab, x_unl]), np.concatenate([_onehot(y_lab, k), t_unl])
    kernel, bias = _fit_head(x_tr, t_tr, np.ones(len(x_tr)), k, l2=MEAN_DECAY, seed=seed)
    return dict(labeled_features=x_lab, labeled_targets=_onehot(y_lab, k), unlabeled_features=x_unl,
                unlabeled_targets=t_unl, unlabeled_weights=np.ones(m), val_features=x_val,
                val_targets=_onehot(y_val, k), kernel=kernel, bias=bias)


def mean_normalised(prob, decay=MEAN_DECAY):
    """The trainer's convention on `prob`: mean losses over labeled and unlabeled rows, decay on the kernel only.
    -> (prob with unlabeled_weights / m, {"l2", "bias_l2", "labeled_weights"})."""
    n, m = len(prob["labeled_features"]), len(prob["unlabeled_features"])
    return ({**prob, "unlabeled_weights": prob["unlabeled_weights"] / m},
            dict(l2=decay, bias_l2=0.0, labeled_weights=1.0 / n))


def problems(quick=False, seed=0):
    """{name: {"title", "prob", "options"}} of the study in order; options (l2 included) go to damping_table and
    approximations. quick: without the WRN-head problems."""
    out = {"random": {"title": "(a) random Gaussian features", "prob": problem_random(seed), "options": {}}}
    moons = problem_mlp_moons(seed)
    out["mlp_moons"] = {"title": "(b) 2-100-100-2 ReLU MLP on two moons, 2-logit head", "prob": moons,
                        "options": {}}
    out["mlp_moons_binary"] = {"title": "(b') same, binary_reparam=True", "prob": moons,
                               "options": {"binary_reparam": True}}
    if not quick:
        wrn = problem_wrn_head(seed)
        out["wrn_head"] = {"title": "(c) WRN-head-sized, sum convention", "prob": wrn, "options": {}}
        mean_prob, mean_options = mean_normalised(wrn)
        out["wrn_head_mean"] = {"title": "(c') WRN-head-sized, mean-normalised, decay 5e-4 on kernel only",
                                "prob": mean_prob, "options": mean_options}
    return out


# ------------------------------------------------------------------------------------------- references
def _head_rows(prob, binary):
    """(params, row builder) of the 2-logit/K-logit head or of its binary reparametrisation, float64."""
    kernel, bias = (tf.constant(np.asarray(prob[key], np.float64)) for key in ("kernel", "bias"))
    if binary:
        return last_layer.binary_params(kernel, bias), last_layer.binary_rows
    return last_layer.stack_params(kernel, bias), last_layer.softmax_rows


def eigh_references(prob, l2=0.0, binary_reparam=False, labeled_weights=None, bias_l2=None):
    """The float64 Hessian H [P, P] of the damped problem's objective, its eigenvalues [P] (ascending) and
    {cutoff: hypergradient [m]} of the pseudo-inverse over the eigenvalues above cutoff * lambda_max."""
    def c(a):
        return tf.constant(np.asarray(a, np.float64))

    params, make = _head_rows(prob, binary_reparam)
    n = len(prob["labeled_features"])
    w_lab = np.ones(n) if labeled_weights is None else np.broadcast_to(labeled_weights, (n,))
    rows = make(c(np.concatenate([prob["labeled_features"], prob["unlabeled_features"]])),
                c(np.concatenate([prob["labeled_targets"], prob["unlabeled_targets"]])), params)
    l2_rows = np.full((params.shape[0], 1), l2, np.float64)
    l2_rows[-1] = l2 if bias_l2 is None else bias_l2
    h = last_layer.hessian(rows, c(np.concatenate([w_lab, prob["unlabeled_weights"]])), c(l2_rows)).numpy()
    g_val = last_layer.mean_gradient(make(c(prob["val_features"]), c(prob["val_targets"]), params)).numpy()
    unl = make(c(prob["unlabeled_features"]), c(prob["unlabeled_targets"]), params)
    per_example = last_layer.per_example_gradients(unl).numpy().reshape(len(prob["unlabeled_features"]), -1)
    evals, evecs = np.linalg.eigh(h)
    coeff = evecs.T @ g_val.reshape(-1)
    refs = {}
    for cutoff in CUTOFFS:
        keep = evals > cutoff * evals[-1]
        refs[cutoff] = -per_example @ (evecs[:, keep] @ (coeff[keep] / evals[keep]))
    return h, evals, refs


def compare(out, ref):
    """{"rel_err" (relative L2), "sign_agree" (fraction), "spearman"} of out [m] against ref [m], over the rows
    where ref is nonzero (the unmasked ones). Ranks break ties by position."""
    live = ref != 0
    out, ref = np.asarray(out, np.float64)[live], np.asarray(ref, np.float64)[live]

    def rank(a):
        return np.argsort(np.argsort(a, kind="stable"), kind="stable")

    return {"rel_err": float(np.linalg.norm(out - ref) / np.linalg.norm(ref)),
            "sign_agree": float(np.mean(np.sign(out) == np.sign(ref))),
            "spearman": float(np.corrcoef(rank(out), rank(ref))[0, 1])}


# --------------------------------------------------------------------------------------------- the study
def _identity_options(options):
    """The options that H^-1 = I keeps: its own (influence.METHOD_OPTIONS) and the labeled weights; it has no
    Hessian, so decay and damping do not apply."""
    return {k: v for k, v in options.items() if k in influence.METHOD_OPTIONS["identity"] or k == "labeled_weights"}


def _damped(prob, l2, damping, options):
    """The exact hypergradient [m] at `damping` (float64 numpy) and its eager wall time in ms; None, None when
    the Cholesky factorisation fails."""
    start = time.perf_counter()
    try:
        out = influence.last_layer_weight_gradients(**prob, l2=l2, damping=damping, **options).numpy()
    except influence.HessianFactorizationError:
        return None, None
    return out.astype(np.float64), 1e3 * (time.perf_counter() - start)


def _damping_row(prob, prob32, l2, damping, refs, options):
    """One row of damping_table: the damped solve against the reference and (does damping act as a cutoff?)
    against the pinv at every cutoff, and against itself from float32 inputs (the training dtype)."""
    out, ms = _damped(prob, l2, damping, options)
    if out is None:
        return {"damping": damping, "cholesky": "failed", "rel_err": None, "sign_agree": None, "spearman": None,
                "rel_err_by_cutoff": None, "ms": None, "float32_drift": None}
    out32, _ = _damped(prob32, l2, damping, options)
    drift = None if out32 is None else compare(out32, out)["rel_err"]
    by_cutoff = {f"{c:g}": compare(out, r)["rel_err"] for c, r in refs.items()}
    return {"damping": damping, "cholesky": "ok", **compare(out, refs[REFERENCE_CUTOFF]),
            "rel_err_by_cutoff": by_cutoff, "ms": ms, "float32_drift": drift}


def damping_table(name, prob, l2=0.0, **kwargs):
    """The damped exact hypergradient at every DAMPINGS against the eigh pseudo-inverse at REFERENCE_CUTOFF, on
    one problem. kwargs: binary_reparam, labeled_weights, bias_l2 (as last_layer_weight_gradients takes them).

    Returns {"problem", "l2", "options", "params" (P), "live_rows" (unmasked unlabeled rows),
    "min_eigenvalue_over_lambda_max", "eigenvalue_counts" {threshold: eigenvalues below threshold * lambda_max},
    "mean_diag_over_lambda_max", "reference_cutoff", "cutoff_agreement" {cutoff: compare(pinv at cutoff, ref)},
    "dampings" [{"damping", "cholesky": "ok"|"failed", "rel_err", "sign_agree", "spearman", "rel_err_by_cutoff"
    {cutoff: rel err against the pinv at that cutoff}, "ms", "float32_drift" (None: Cholesky failed on the
    float32 inputs)}], "identity": compare(H^-1 = I, ref)}; a failed row holds None but its damping.
    """
    h, evals, refs = eigh_references(prob, l2, **kwargs)
    ref, lam_max = refs[REFERENCE_CUTOFF], evals[-1]
    prob32 = {key: np.asarray(val, np.float32) for key, val in prob.items()}
    identity = influence.last_layer_weight_gradients(**prob, method="identity", **_identity_options(kwargs)).numpy()
    return {
        "problem": name, "l2": l2, "options": kwargs, "params": len(evals), "live_rows": int(np.sum(ref != 0)),
        "min_eigenvalue_over_lambda_max": float(evals[0] / lam_max),
        "eigenvalue_counts": {f"{t:g}": int(np.sum(evals < t * lam_max)) for t in EIGENVALUE_THRESHOLDS},
        "mean_diag_over_lambda_max": float(np.mean(np.diag(h)) / lam_max),
        "reference_cutoff": REFERENCE_CUTOFF,
        "cutoff_agreement": {f"{c:g}": compare(r, ref) for c, r in refs.items() if c != REFERENCE_CUTOFF},
        "dampings": [_damping_row(prob, prob32, l2, d, refs, kwargs) for d in DAMPINGS],
        "identity": compare(identity, ref),
    }


def _compiled_ms(method, prob, options):
    """Mean ms of one compiled call (float32 inputs, as in training) over APPROXIMATION_TIMING_CALLS calls after
    one that traces."""
    fn = tf.function(lambda p: influence.last_layer_weight_gradients(**p, method=method, **options))
    prob32 = {key: tf.constant(val, tf.float32) for key, val in prob.items()}
    fn(prob32)
    start = time.perf_counter()
    for _ in range(APPROXIMATION_TIMING_CALLS):
        fn(prob32).numpy()
    return 1e3 * (time.perf_counter() - start) / APPROXIMATION_TIMING_CALLS


def approximations(prob, **kwargs):
    """Identity, Neumann and CG (APPROXIMATIONS) against exact at the default damping, on one problem.
    kwargs: l2 and the options of last_layer_weight_gradients. -> [{"method", "rel_err",
    "rel_err_after_best_scale" (after the least-squares scalar rescale onto exact), "sign_agree", "spearman",
    "ms"}]."""
    exact = influence.last_layer_weight_gradients(**prob, **kwargs).numpy()
    rows = []
    for label, method, extra in APPROXIMATIONS:
        options = {**(_identity_options(kwargs) if method == "identity" else kwargs), **extra}
        out = influence.last_layer_weight_gradients(**prob, method=method, **options).numpy()
        best = compare(out * np.dot(out, exact) / np.dot(out, out), exact)["rel_err"]
        rows.append({"method": label, **compare(out, exact), "rel_err_after_best_scale": best,
                     "ms": _compiled_ms(method, prob, options)})
    return rows
