"""What damping does to the exact last-layer hypergradient (method="exact").

For each problem, compare last_layer_weight_gradients(..., damping=delta) (H + delta * mean(diag H) I,
Cholesky, float64) with float64 references from numpy eigh: the pseudo-inverse restricted to eigenvalues
above cutoff * lambda_max. Reports relative L2 error, sign agreement and Spearman rank correlation over the
unmasked unlabeled rows, the drift caused by rounding the inputs to float32 (the training dtype) at the
same damping, and how much the references disagree among themselves (is the pinv answer even
well defined?). Problems:
  (a) random Gaussian features, D=16, K=5 (well conditioned except the logit-shift null space at l2=0);
  (b) penultimate ReLU features of a 2-100-100-2 MLP trained on 10 labeled two-moons points, 1000
      unlabeled (FixMatch-style hard pseudo-labels, confidence mask 0.95), 30 validation; l2=0;
  (c) WRN-28-2-head-sized: D=128, K=10, 64 labeled + 320 unlabeled + 1024 val, non-negative low-rank
      features like global-average-pooled ReLU maps; l2=0, and the trainer's mean-normalised convention
      with weight decay 5e-4 on the kernel only. For (c)/(c') also: identity/Neumann/CG vs exact, and
      tf.function timings (float32 inputs).

Run: python -m experiments.benchmarks.damping_study [--quick]
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from influence_ssl import influence  # noqa: E402
from influence_ssl.influence import last_layer  # noqa: E402

DAMPINGS = [0.0, 1e-12, 1e-10, 1e-8, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
CUTOFFS = [1e-14, 1e-12, 1e-10, 1e-8, 1e-6]
REFERENCE_CUTOFF = 1e-12


# ----------------------------------------------------------------------------------------------- problems
def _onehot(labels, k):
    return np.eye(k)[labels]


def _fit_head(x, t, w, k, l2, steps=300, lr=0.5, seed=0):
    """A few hundred full-batch GD steps on the weighted CE head (a trained-looking, non-optimal head)."""
    rng = np.random.default_rng(seed)
    kernel = tf.Variable(0.01 * rng.normal(size=(x.shape[1], k)))
    bias = tf.Variable(np.zeros(k))
    x, t, w = tf.constant(x), tf.constant(t), tf.constant(w)
    opt_vars = [kernel, bias]
    for _ in range(steps):
        with tf.GradientTape() as tape:
            logits = tf.matmul(x, kernel) + bias
            ce = tf.nn.softmax_cross_entropy_with_logits(t, logits)
            loss = tf.reduce_sum(w * ce) / tf.reduce_sum(w) + 0.5 * l2 * tf.reduce_sum(kernel ** 2)
        for var, grad in zip(opt_vars, tape.gradient(loss, opt_vars)):
            var.assign_sub(lr * grad)
    return kernel.numpy(), bias.numpy()


def problem_random(seed=0):
    rng = np.random.default_rng(seed)
    d, k, n, m, v = 16, 5, 200, 200, 100
    x = lambda size: rng.normal(size=(size, d))
    kernel, bias = 0.3 * rng.normal(size=(d, k)), 0.1 * rng.normal(size=k)
    return dict(labeled_features=x(n), labeled_targets=_onehot(rng.integers(0, k, n), k),
                unlabeled_features=x(m), unlabeled_targets=rng.dirichlet(np.ones(k), size=m),
                unlabeled_weights=np.ones(m), val_features=x(v), val_targets=_onehot(rng.integers(0, k, v), k),
                kernel=kernel, bias=bias)


def _moons(n, rng, noise=0.1):
    labels = rng.integers(0, 2, n)
    angle = rng.uniform(0, np.pi, n)
    pts = np.where(labels[:, None] == 0, np.stack([np.cos(angle), np.sin(angle)], 1),
                   np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], 1))
    return pts + noise * rng.normal(size=(n, 2)), labels


def problem_mlp_moons(seed=0):
    """Penultimate features of a 2-100-100-2 ReLU MLP trained on the 10 labeled points."""
    rng = np.random.default_rng(seed)
    x_lab, y_lab = _moons(10, rng)
    x_unl, _ = _moons(1000, rng)
    x_val, y_val = _moons(30, rng)
    tf.random.set_seed(seed)
    init = tf.keras.initializers.HeNormal(seed=seed)
    w1, w2 = tf.Variable(init([2, 100], tf.float64)), tf.Variable(init([100, 100], tf.float64))
    b1, b2 = tf.Variable(tf.zeros([100], tf.float64)), tf.Variable(tf.zeros([100], tf.float64))
    w3, b3 = tf.Variable(0.1 * init([100, 2], tf.float64)), tf.Variable(tf.zeros([2], tf.float64))
    params = [w1, b1, w2, b2, w3, b3]
    feats = lambda x: tf.nn.relu(tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2) + b2)
    opt = tf.keras.optimizers.Adam(1e-2)
    t_lab = _onehot(y_lab, 2)
    for _ in range(300):
        with tf.GradientTape() as tape:
            logits = tf.matmul(feats(x_lab), w3) + b3
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(t_lab, logits))
        opt.apply_gradients(zip(tape.gradient(loss, params), params))
    f_unl = feats(x_unl).numpy()
    p_unl = tf.nn.softmax(tf.matmul(f_unl, w3) + b3).numpy()
    mask = (p_unl.max(1) >= 0.95).astype(np.float64)
    return dict(labeled_features=feats(x_lab).numpy(), labeled_targets=t_lab, unlabeled_features=f_unl,
                unlabeled_targets=_onehot(p_unl.argmax(1), 2) * mask[:, None], unlabeled_weights=np.ones(1000),
                val_features=feats(x_val).numpy(), val_targets=_onehot(y_val, 2), kernel=w3.numpy(),
                bias=b3.numpy())


def problem_wrn_head(seed=0, l2=0.0):
    """Non-negative, low-effective-rank features shaped like WRN-28-2's pooled 128-d output."""
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
    kernel, bias = _fit_head(x_tr, t_tr, np.ones(len(x_tr)), k, l2=5e-4, seed=seed)
    return dict(labeled_features=x_lab, labeled_targets=_onehot(y_lab, k), unlabeled_features=x_unl,
                unlabeled_targets=t_unl, unlabeled_weights=np.ones(m), val_features=x_val,
                val_targets=_onehot(y_val, k), kernel=kernel, bias=bias)


# ------------------------------------------------------------------------------------------- references
def eigh_references(prob, l2, kwargs):
    """Eigen-decomposition of H (float64) and the pinv-with-cutoff hypergradients for each cutoff."""
    binary = kwargs.get("binary_reparam", False)
    labeled_w = kwargs.get("labeled_weights", None)
    bias_l2 = kwargs.get("bias_l2", None)
    c = lambda a: tf.constant(np.asarray(a, np.float64))
    kernel, bias = c(prob["kernel"]), c(prob["bias"])
    if binary:
        params, make = last_layer.binary_params(kernel, bias), last_layer.binary_rows
    else:
        params, make = last_layer.stack_params(kernel, bias), last_layer.softmax_rows
    n = len(prob["labeled_features"])
    w_lab = np.ones(n) if labeled_w is None else np.broadcast_to(labeled_w, (n,))
    rows = make(c(np.concatenate([prob["labeled_features"], prob["unlabeled_features"]])),
                c(np.concatenate([prob["labeled_targets"], prob["unlabeled_targets"]])), params)
    weights = c(np.concatenate([w_lab, prob["unlabeled_weights"]]))
    l2_rows = np.full((params.shape[0], 1), l2)
    l2_rows[-1] = l2 if bias_l2 is None else bias_l2
    h = last_layer.hessian(rows, weights, c(l2_rows)).numpy()
    g_val = last_layer.mean_gradient(make(c(prob["val_features"]), c(prob["val_targets"]), params)).numpy()
    unl = make(c(prob["unlabeled_features"]), c(prob["unlabeled_targets"]), params)
    per_ex = last_layer.per_example_gradients(unl).numpy().reshape(len(prob["unlabeled_weights"]), -1)
    evals, evecs = np.linalg.eigh(h)
    coeff = evecs.T @ g_val.reshape(-1)
    refs = {}
    for cutoff in CUTOFFS:
        keep = evals > cutoff * evals[-1]
        refs[cutoff] = -per_ex @ (evecs[:, keep] @ (coeff[keep] / evals[keep]))
    return evals, refs, h


def compare(out, ref):
    """(relative L2 error, sign agreement, Spearman) over rows where the reference is nonzero."""
    live = ref != 0
    out, ref = out[live], ref[live]
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    signs = np.mean(np.sign(out) == np.sign(ref))
    rank = lambda a: np.argsort(np.argsort(a))
    spearman = np.corrcoef(rank(out), rank(ref))[0, 1]
    return rel, signs, spearman


# --------------------------------------------------------------------------------------------- the study
def study(name, prob, l2=0.0, **kwargs):
    evals, refs, h = eigh_references(prob, l2, kwargs)
    ref = refs[REFERENCE_CUTOFF]
    lam_max, mean_diag = evals[-1], np.mean(np.diag(h))
    live = int(np.sum(ref != 0))
    print(f"\n### {name}: P={len(evals)} params, {live} unmasked unlabeled rows, l2={l2}, {kwargs or ''}")
    print(f"eigenvalues/lambda_max: min {evals[0] / lam_max:.1e}; below 1e-12: {np.sum(evals < 1e-12 * lam_max)}, "
          f"below 1e-8: {np.sum(evals < 1e-8 * lam_max)}, below 1e-4: {np.sum(evals < 1e-4 * lam_max)}; "
          f"mean(diag H)/lambda_max = {mean_diag / lam_max:.2e}")
    print(f"reference = eigh pinv (float64 inputs) with cutoff {REFERENCE_CUTOFF:g}*lambda_max; other cutoffs vs it "
          "(rel err / sign agree / Spearman):")
    print("  " + "; ".join(f"{cut:g}: {compare(r, ref)[0]:.1e}/{compare(r, ref)[1]:.3f}/{compare(r, ref)[2]:.4f}"
                           for cut, r in refs.items() if cut != REFERENCE_CUTOFF))
    prob32 = {key: np.asarray(val, np.float32) for key, val in prob.items()}
    print("| damping (x mean diag H) | Cholesky | rel. L2 err | sign agree | Spearman | ms | f32-input drift |")
    print("|---|---|---|---|---|---|---|")
    for damping in DAMPINGS:
        try:
            start = time.perf_counter()
            out = influence.last_layer_weight_gradients(**prob, l2=l2, damping=damping, **kwargs).numpy()
            ms = 1e3 * (time.perf_counter() - start)
        except influence.HessianFactorizationError:
            print(f"| {damping:g} | FAILED | | | | | |")
            continue
        rel, signs, sp = compare(out, ref)
        try:
            out32 = influence.last_layer_weight_gradients(**prob32, l2=l2, damping=damping, **kwargs).numpy()
            drift = f"{compare(out32.astype(np.float64), out)[0]:.1e}"
        except influence.HessianFactorizationError:
            drift = "Cholesky failed"
        print(f"| {damping:g} | ok | {rel:.2e} | {signs:.3f} | {sp:.4f} | {ms:.0f} | {drift} |")
    ident = influence.last_layer_weight_gradients(
        **prob, method="identity", **{k: v for k, v in kwargs.items() if k == "binary_reparam"},
        **({"labeled_weights": kwargs["labeled_weights"]} if "labeled_weights" in kwargs else {})).numpy()
    rel, signs, sp = compare(ident, ref)
    print(f"| identity (H^-1 = I) | - | {rel:.2e} | {signs:.3f} | {sp:.4f} | | |")


def approximations(name, prob, **kwargs):
    """Identity / Neumann / CG vs exact (default damping) on one problem, plus tf.function timings."""
    exact = influence.last_layer_weight_gradients(**prob, **kwargs).numpy()
    print(f"\n### approximations vs exact, {name}")
    print("| method | rel. L2 err | after best scalar rescale | sign agree | Spearman | ms (tf.function, f32) |")
    print("|---|---|---|---|---|---|")
    prob32 = {key: tf.constant(val, tf.float32) for key, val in prob.items()}
    for label, method, opts in [("exact", "exact", {}), ("identity", "identity", {}),
                                ("neumann J=20", "neumann", {"num_terms": 20}),
                                ("neumann J=200", "neumann", {"num_terms": 200}),
                                ("cg 10", "cg", {"max_iterations": 10}), ("cg 30", "cg", {"max_iterations": 30}),
                                ("cg 100 (default)", "cg", {})]:
        kw = {k: v for k, v in kwargs.items() if method != "identity" or k == "labeled_weights"}
        out = influence.last_layer_weight_gradients(**prob, method=method, **kw, **opts).numpy()
        rel, signs, sp = compare(out, exact)
        best = compare(out * np.dot(out, exact) / np.dot(out, out), exact)[0]
        fn = tf.function(lambda p: influence.last_layer_weight_gradients(**p, method=method, **kw, **opts))
        fn(prob32)
        start = time.perf_counter()
        for _ in range(10):
            fn(prob32).numpy()
        ms = 1e2 * (time.perf_counter() - start)
        print(f"| {label} | {rel:.2e} | {best:.2e} | {signs:.3f} | {sp:.4f} | {ms:.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the WRN-head problems")
    args = parser.parse_args()
    print(f"TF {tf.__version__}, numpy {np.__version__}; default damping {influence.DEFAULT_DAMPING:g}")
    study("(a) random Gaussian features", problem_random())
    moons = problem_mlp_moons()
    study("(b) 2-100-100-2 ReLU MLP on two moons, 2-logit head", moons)
    study("(b') same, binary_reparam=True", moons, binary_reparam=True)
    if not args.quick:
        wrn = problem_wrn_head()
        study("(c) WRN-head-sized, sum convention", wrn)
        mean_prob = {**wrn, "unlabeled_weights": wrn["unlabeled_weights"] / 320}
        mean_kw = dict(l2=5e-4, bias_l2=0.0, labeled_weights=1 / 64)
        study("(c') WRN-head-sized, mean-normalised, decay 5e-4 on kernel only", mean_prob, **mean_kw)
        approximations("(c) WRN-head-sized, l2=0", wrn)
        approximations("(c') WRN-head-sized, mean-normalised, decay 5e-4 on kernel only", mean_prob, **mean_kw)


if __name__ == "__main__":
    main()
