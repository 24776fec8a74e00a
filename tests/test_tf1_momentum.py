"""TF1Momentum against a numpy transcription of TF1 MomentumOptimizer and against TF's kernel.

Every test runs under a changing learning rate (a linear warm-up), where TF1's update and
tf_keras SGD's differ, so that each one fails if the update is swapped for SGD's.
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from influence_ssl.optimizers import TF1Momentum

MU = 0.9
MU32 = float(np.float32(MU))  # TF1 (and we) round μ through float32 before casting


def warmup(peak=0.03, steps=20):
    """Linear warm-up 0 -> peak over `steps` steps, then constant (a built-in schedule)."""
    return keras.optimizers.schedules.PolynomialDecay(0.0, steps, end_learning_rate=peak, power=1.0)


def numpy_tf1_momentum(var, accum, g, lr, mu, nesterov):
    """One step of TF1 MomentumOptimizer (ApplyMomentum) on numpy arrays."""
    accum = mu * accum + g
    var = var - lr * (g + mu * accum) if nesterov else var - lr * accum
    return var, accum


def lr_at(schedule, step):
    """The learning rate the optimizer uses at `step` (the schedule's own float32 value)."""
    return schedule(step).numpy()


def random_grads(rng, shape, steps, dtype):
    return [rng.normal(size=shape).astype(dtype) for _ in range(steps)]


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_dense_steps_match_numpy_transcription_under_warmup(nesterov, dtype, rtol):
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(7, 3)).astype(dtype)
    sched = warmup(steps=20)
    var = tf.Variable(x0)
    opt = TF1Momentum(sched, momentum=MU, nesterov=nesterov)
    x, a = x0.copy(), np.zeros_like(x0)
    mu = dtype(MU32)
    for t, g in enumerate(random_grads(rng, x0.shape, 50, dtype)):
        opt.apply_gradients([(tf.constant(g), var)])
        # Computed in the variable's dtype, in the same order as the optimizer.
        x, a = numpy_tf1_momentum(x, a, g, dtype(lr_at(sched, t)), mu, nesterov)
    assert var.dtype == dtype
    np.testing.assert_allclose(var.numpy(), x, rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(opt.accumulator(var).numpy(), a, rtol=rtol, atol=rtol * 1e-2)
    assert int(opt.iterations.numpy()) == 50


@pytest.mark.parametrize("nesterov", [True, False])
def test_dense_and_sparse_steps_match_tf_kernels(nesterov):
    """Second oracle: TF's own kernels, ResourceApplyMomentum and ResourceSparseApplyMomentum."""
    rng = np.random.default_rng(1)
    size, width = 12, 2
    x0 = rng.normal(size=(size, width)).astype(np.float32)
    sched = warmup(steps=15)
    dense_var, sparse_var = tf.Variable(x0), tf.Variable(x0)
    dense_opt = TF1Momentum(sched, nesterov=nesterov)
    sparse_opt = TF1Momentum(sched, nesterov=nesterov)
    k_dense, k_dense_acc = tf.Variable(x0), tf.Variable(np.zeros_like(x0))
    k_sparse, k_sparse_acc = tf.Variable(x0), tf.Variable(np.zeros_like(x0))
    for t in range(40):
        lr = tf.constant(lr_at(sched, t), tf.float32)
        mu = tf.constant(MU, tf.float32)
        g = tf.constant(rng.normal(size=(size, width)).astype(np.float32))
        ids = tf.constant(rng.choice(size, 4, replace=False).astype(np.int32))
        rows = tf.constant(rng.normal(size=(4, width)).astype(np.float32))
        dense_opt.apply_gradients([(g, dense_var)])
        sparse_opt.apply_gradients([(tf.IndexedSlices(rows, ids), sparse_var)])
        tf.raw_ops.ResourceApplyMomentum(
            var=k_dense.handle, accum=k_dense_acc.handle, lr=lr, grad=g, momentum=mu,
            use_nesterov=nesterov,
        )
        tf.raw_ops.ResourceSparseApplyMomentum(
            var=k_sparse.handle, accum=k_sparse_acc.handle, lr=lr, grad=rows, indices=ids,
            momentum=mu, use_nesterov=nesterov,
        )
    for ours, kernel in [
        (dense_var, k_dense),
        (dense_opt.accumulator(dense_var), k_dense_acc),
        (sparse_var, k_sparse),
        (sparse_opt.accumulator(sparse_var), k_sparse_acc),
    ]:
        np.testing.assert_allclose(ours.numpy(), kernel.numpy(), rtol=1e-6, atol=1e-7)


def run_pair(learning_rate, steps=60, seed=2):
    """Gap between TF1Momentum and tf_keras SGD(nesterov) fed the same gradients (float64)."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=10)
    ours, theirs = tf.Variable(x0), tf.Variable(x0)
    opt = TF1Momentum(learning_rate, momentum=MU, nesterov=True)
    sgd = keras.optimizers.SGD(learning_rate, momentum=MU, nesterov=True, jit_compile=False)
    for g in random_grads(rng, x0.shape, steps, np.float64):
        opt.apply_gradients([(tf.constant(g), ours)])
        sgd.apply_gradients([(tf.constant(g), theirs)])
    # Difference of the two displacements, relative to SGD's displacement.
    return np.linalg.norm(ours.numpy() - theirs.numpy()) / np.linalg.norm(theirs.numpy() - x0)


def test_equals_keras_sgd_at_constant_lr_and_differs_under_warmup():
    # Constant lr: v_sgd = -lr accum, so the two updates are algebraically equal.
    assert run_pair(0.03) < 1e-12
    # Warm-up: SGD's velocity keeps past gradients at their old, smaller lr.
    assert run_pair(warmup(steps=30)) > 0.05


def test_indexed_slices_move_only_their_rows_and_sum_duplicates():
    size = 8
    x0 = np.linspace(-1.0, 1.0, size * 2).reshape(size, 2)
    sched = warmup(steps=5)
    var = tf.Variable(x0)
    opt = TF1Momentum(sched)
    g0 = tf.constant([[1.0, 2.0], [3.0, -1.0]], tf.float64)
    first = tf.IndexedSlices(g0, tf.constant([1, 3]))
    opt.apply_gradients([(first, var)])
    opt.apply_gradients([(first, var)])
    before = var.numpy().copy(), opt.accumulator(var).numpy().copy()

    # Row 5 appears twice: the two gradients are summed (one step, not two).
    g = np.array([[0.5, -0.5], [0.25, 1.0], [1.0, 1.0]])
    opt.apply_gradients([(tf.IndexedSlices(tf.constant(g), tf.constant([5, 3, 5])), var)])
    after = var.numpy(), opt.accumulator(var).numpy()

    untouched = np.isin(np.arange(size), [3, 5], invert=True)
    for b, a in zip(before, after):
        # Includes row 1, whose accumulator is non-zero: it neither decays nor moves var.
        np.testing.assert_array_equal(a[untouched], b[untouched])
    assert np.all(before[1][1] != 0)
    dense = np.zeros_like(x0)
    np.add.at(dense, [5, 3, 5], g)
    x, acc = numpy_tf1_momentum(*before, dense, lr_at(sched, 2), MU32, nesterov=True)
    np.testing.assert_allclose(after[0][[3, 5]], x[[3, 5]], rtol=1e-12)
    np.testing.assert_allclose(after[1][[3, 5]], acc[[3, 5]], rtol=1e-12)


def test_checkpoint_round_trip_continues_identically(tmp_path):
    rng = np.random.default_rng(3)
    grads = random_grads(rng, (5,), 30, np.float64)

    def make():
        var = tf.Variable(np.ones(5))
        opt = TF1Momentum(warmup(steps=20))
        opt.build([var])
        return var, opt, tf.train.Checkpoint(var=var, opt=opt)

    var, opt, ckpt = make()
    for g in grads[:10]:
        opt.apply_gradients([(tf.constant(g), var)])
    path = ckpt.save(str(tmp_path / "ckpt"))
    for g in grads[10:]:
        opt.apply_gradients([(tf.constant(g), var)])

    var2, opt2, ckpt2 = make()
    ckpt2.restore(path).assert_consumed()
    assert int(opt2.iterations.numpy()) == 10  # the schedule resumes at step 10
    for g in grads[10:]:
        opt2.apply_gradients([(tf.constant(g), var2)])
    np.testing.assert_array_equal(var.numpy(), var2.numpy())
    np.testing.assert_array_equal(opt.accumulator(var).numpy(), opt2.accumulator(var2).numpy())

    x, a = np.ones(5), np.zeros(5)
    for t, g in enumerate(grads):
        x, a = numpy_tf1_momentum(x, a, g, lr_at(opt._learning_rate, t), MU32, True)
    np.testing.assert_allclose(var2.numpy(), x, rtol=1e-12)


def test_inside_tf_function_matches_eager_and_reference():
    rng = np.random.default_rng(4)
    x0 = rng.normal(size=(6,)).astype(np.float32)
    sched = warmup(steps=10)
    var_f, var_e = tf.Variable(x0), tf.Variable(x0)
    opt_f, opt_e = TF1Momentum(sched), TF1Momentum(sched)

    @tf.function
    def train_step(g, ids, rows):  # one dense step, then one sparse step
        opt_f.apply_gradients([(g, var_f)])
        opt_f.apply_gradients([(tf.IndexedSlices(rows, ids), var_f)])

    x, a = x0.copy(), np.zeros_like(x0)
    mu = np.float32(MU32)
    ids = np.array([0, 4, 4], np.int32)
    present = [0, 4]
    for t in range(0, 30, 2):
        g = rng.normal(size=x0.shape).astype(np.float32)
        rows = rng.normal(size=3).astype(np.float32)
        train_step(tf.constant(g), tf.constant(ids), tf.constant(rows))
        opt_e.apply_gradients([(tf.constant(g), var_e)])
        opt_e.apply_gradients([(tf.IndexedSlices(tf.constant(rows), tf.constant(ids)), var_e)])

        x, a = numpy_tf1_momentum(x, a, g, lr_at(sched, t), mu, True)
        sparse = np.zeros_like(x0)
        np.add.at(sparse, ids, rows)
        xs, as_ = numpy_tf1_momentum(x, a, sparse, lr_at(sched, t + 1), mu, True)
        x[present], a[present] = xs[present], as_[present]
    assert int(opt_f.iterations.numpy()) == 30
    np.testing.assert_allclose(var_f.numpy(), var_e.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(var_f.numpy(), x, rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_no_weight_decay():
    opt = TF1Momentum(warmup(peak=0.05, steps=7), momentum=0.8, nesterov=False, name="theta")
    config = opt.get_config()
    assert config["momentum"] == 0.8 and config["nesterov"] is False
    assert config["weight_decay"] is None
    clone = TF1Momentum.from_config(config)
    assert clone.name == "theta" and clone.momentum == 0.8 and clone.nesterov is False
    assert float(clone._learning_rate(7)) == pytest.approx(0.05)
    assert TF1Momentum(0.1).get_config()["learning_rate"] == pytest.approx(0.1)
