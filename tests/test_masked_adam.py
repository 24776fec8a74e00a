"""MaskedAdam against a plain-numpy transcription of Alg. 2 (Ren et al., App. C)."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from influence_ssl.optimizers import MaskedAdam


def numpy_m_adam(lam, m, v, t, g, lr, beta_1=0.9, beta_2=0.999, eps=1e-7):
    """Alg. 2, lines 3-10, on dense float64 vectors. Returns new (lam, m, v, t)."""
    t = t + 1
    mask = (g != 0).astype(np.float64)
    m = m + (beta_1 - 1) * m * mask + (1 - beta_1) * g
    v = v + (beta_2 - 1) * v * mask + (1 - beta_2) * g * g
    m_hat = m / (1 - beta_1**t)
    v_hat = v / (1 - beta_2**t)
    lam = lam - lr * m_hat * mask / (np.sqrt(v_hat) + eps)
    return lam, m, v, t


def numpy_adam(lam, m, v, t, g, lr, beta_1=0.9, beta_2=0.999, eps=1e-7):
    """Vanilla Adam: every moment decays at every step."""
    t = t + 1
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    return lam - alpha * m / (np.sqrt(v) + eps), m, v, t


def f32(x):
    """tf_keras keeps the learning rate in a float32 variable: the reference must too."""
    return float(np.float32(x))


def random_sparse_steps(rng, size, steps, batch):
    """Random index sets with duplicates and some exactly-zero gradients."""
    for _ in range(steps):
        ids = rng.integers(0, size, batch)
        g = rng.normal(size=batch)
        g[rng.random(batch) < 0.2] = 0.0  # e.g. FixMatch examples below the threshold
        yield ids, g


def dense_from_sparse(ids, g, size):
    dense = np.zeros(size)
    np.add.at(dense, ids, g)  # duplicate indices are summed
    return dense


def test_sparse_updates_match_numpy_alg2_over_many_steps():
    rng = np.random.default_rng(0)
    size, lr = 50, 0.05
    var = tf.Variable(np.ones(size), dtype=tf.float64)
    opt = MaskedAdam(learning_rate=lr)
    lam, m, v, t = np.ones(size), np.zeros(size), np.zeros(size), 0
    for ids, g in random_sparse_steps(rng, size, steps=200, batch=8):
        opt.apply_gradients([(tf.IndexedSlices(tf.constant(g), tf.constant(ids)), var)])
        lam, m, v, t = numpy_m_adam(lam, m, v, t, dense_from_sparse(ids, g, size), f32(lr))
    np.testing.assert_allclose(var.numpy(), lam, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(opt._momentums[0].numpy(), m, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(opt._velocities[0].numpy(), v, rtol=1e-12, atol=1e-14)
    assert int(opt.iterations.numpy()) == t == 200


def test_dense_gradient_is_masked_and_equals_sparse_path():
    rng = np.random.default_rng(1)
    size = 30
    dense_var = tf.Variable(rng.normal(size=size))
    sparse_var = tf.Variable(dense_var.numpy())
    dense_opt, sparse_opt = MaskedAdam(0.01), MaskedAdam(0.01)
    for ids, g in random_sparse_steps(rng, size, steps=50, batch=5):
        dense_opt.apply_gradients([(tf.constant(dense_from_sparse(ids, g, size)), dense_var)])
        sparse_opt.apply_gradients([(tf.IndexedSlices(tf.constant(g), tf.constant(ids)), sparse_var)])
    np.testing.assert_allclose(dense_var.numpy(), sparse_var.numpy(), rtol=1e-12, atol=1e-14)


def test_rows_outside_batch_and_zero_gradients_are_bit_identical():
    size = 10
    var = tf.Variable(np.linspace(0.5, 1.5, size), dtype=tf.float64)
    opt = MaskedAdam(0.1)
    opt.apply_gradients([(tf.IndexedSlices(tf.constant([1.0, -2.0]), tf.constant([3, 7])), var)])
    before = [var.numpy().copy(), opt._momentums[0].numpy().copy(), opt._velocities[0].numpy().copy()]
    # Row 3 is in the batch with an exactly-zero gradient: M-Adam's mask freezes it.
    opt.apply_gradients([(tf.IndexedSlices(tf.constant([0.0, 1.0]), tf.constant([3, 5])), var)])
    after = [var.numpy(), opt._momentums[0].numpy(), opt._velocities[0].numpy()]
    untouched = np.arange(size) != 5
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a[untouched], b[untouched])
    assert after[0][5] != before[0][5]


def test_float32_variable_follows_reference():
    rng = np.random.default_rng(2)
    size = 20
    var = tf.Variable(np.ones(size, np.float32))
    opt = MaskedAdam(0.01)
    lam, m, v, t = np.ones(size), np.zeros(size), np.zeros(size), 0
    for ids, g in random_sparse_steps(rng, size, steps=30, batch=4):
        opt.apply_gradients([(tf.IndexedSlices(tf.constant(g, tf.float32), tf.constant(ids)), var)])
        lam, m, v, t = numpy_m_adam(lam, m, v, t, dense_from_sparse(ids, g, size), f32(0.01))
    np.testing.assert_allclose(var.numpy(), lam, rtol=1e-5)


def test_vanilla_adam_on_the_same_sequence_differs():
    """The ablation of Fig. 4 (centre): plain Adam decays the moments of absent rows."""
    rng = np.random.default_rng(3)
    size, lr = 40, 0.01
    var_m = tf.Variable(np.ones(size))
    var_a = tf.Variable(np.ones(size))
    opt_m = MaskedAdam(lr)
    opt_a = keras.optimizers.Adam(lr, epsilon=1e-7, jit_compile=False)
    lam, m, v, t = np.ones(size), np.zeros(size), np.zeros(size), 0
    for ids, g in random_sparse_steps(rng, size, steps=100, batch=4):
        sl = tf.IndexedSlices(tf.constant(g), tf.constant(ids))
        opt_m.apply_gradients([(sl, var_m)])
        opt_a.apply_gradients([(sl, var_a)])
        lam, m, v, t = numpy_adam(lam, m, v, t, dense_from_sparse(ids, g, size), f32(lr))
    # Our vanilla-Adam reference reproduces tf_keras Adam (which rounds beta to float32
    # in its bias correction, hence the tolerance) ...
    np.testing.assert_allclose(var_a.numpy(), lam, rtol=1e-5)
    # ... and M-Adam is not it.
    assert np.max(np.abs(var_m.numpy() - var_a.numpy())) > 1e-3


def test_checkpoint_round_trip_gives_identical_next_steps(tmp_path):
    rng = np.random.default_rng(4)
    size = 16
    steps = list(random_sparse_steps(rng, size, steps=20, batch=3))

    def make():
        var = tf.Variable(np.ones(size))
        opt = MaskedAdam(0.05)
        opt.build([var])
        return var, opt, tf.train.Checkpoint(var=var, opt=opt)

    def step(var, opt, ids, g):
        opt.apply_gradients([(tf.IndexedSlices(tf.constant(g), tf.constant(ids)), var)])

    var, opt, ckpt = make()
    for ids, g in steps[:10]:
        step(var, opt, ids, g)
    path = ckpt.save(str(tmp_path / "ckpt"))
    for ids, g in steps[10:]:
        step(var, opt, ids, g)

    var2, opt2, ckpt2 = make()
    ckpt2.restore(path).assert_consumed()
    for ids, g in steps[10:]:
        step(var2, opt2, ids, g)
    np.testing.assert_array_equal(var.numpy(), var2.numpy())
    np.testing.assert_array_equal(opt._velocities[0].numpy(), opt2._velocities[0].numpy())


@pytest.mark.parametrize("bad_lr", [0.5, 0.001])
def test_learning_rate_is_used(bad_lr):
    var = tf.Variable([1.0], dtype=tf.float64)
    MaskedAdam(bad_lr).apply_gradients([(tf.constant([3.0], tf.float64), var)])
    # First Adam step moves by lr * g/|g| (up to epsilon).
    np.testing.assert_allclose(var.numpy(), [1.0 - bad_lr], rtol=1e-6)
