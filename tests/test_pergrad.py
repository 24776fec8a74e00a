"""Per-example gradients: every method against rows of a while-loop Jacobian (the TF Privacy oracle)."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from influence_ssl.pergrad import (
    CONV_IMPLS,
    UnsupportedLayerError,
    conv2d_filter_grads,
    make_per_example_gradients_fn,
    per_example_gradients,
)

F64 = dict(rtol=1e-9, atol=1e-11)
F32 = dict(rtol=1e-4, atol=1e-5)
L = keras.layers


def squared_loss(outputs):
    """[B, ...] -> [B]; not a plain sum, so a wrong row cannot match by symmetry."""
    flat = tf.reshape(outputs, [-1, int(np.prod(outputs.shape[1:]))])
    weights = tf.cast(tf.range(1, flat.shape[-1] + 1), flat.dtype)
    return tf.reduce_sum(weights * (flat - 0.3) ** 2, axis=-1)


def xent_loss(logits, labels):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def jacobian_rows(model, loss_fn, inputs, variables=None, training=False, targets=None):
    """Oracle: rows of d losses / d variables, taken in the same batch context (no pfor)."""
    variables = model.trainable_variables if variables is None else variables
    with tf.GradientTape(persistent=True) as tape:
        outputs = model(inputs, training=training)
        losses = loss_fn(outputs) if targets is None else loss_fn(outputs, targets)
    jac = tape.jacobian(losses, variables, experimental_use_pfor=False)
    return [np.zeros((losses.shape[0],) + tuple(v.shape)) if j is None else j.numpy() for j, v in zip(jac, variables)]


def assert_rows_close(got, want, tol, names=None):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        label = names[i] if names else i
        np.testing.assert_allclose(np.asarray(g), w, err_msg=f"variable {label}", **tol)


def check_methods(model, loss_fn, inputs, tol, methods=("fast", "layerwise", "loop", "vmap"), targets=None,
                  variables=None):
    want = jacobian_rows(model, loss_fn, inputs, variables=variables, targets=targets)
    names = [v.name for v in (variables or model.trainable_variables)]
    for method in methods:
        got = per_example_gradients(model, loss_fn, inputs, method=method, targets=targets, variables=variables)
        assert_rows_close(got, want, tol, names)


def randomize(model, seed=0):
    """Non-trivial weights, including BN moving statistics, so inference-mode BN is not an identity."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        value = rng.normal(0.0, 0.5, v.shape)
        if "moving_variance" in v.name:
            value = rng.uniform(0.5, 2.0, v.shape)
        v.assign(value.astype(v.dtype.as_numpy_dtype))


def normal(shape, dtype="float64", seed=1):
    return tf.constant(np.random.default_rng(seed).normal(size=shape), dtype)


# ---------------------------------------------------------------------------------------------- Dense
def test_dense_with_fused_activation_all_methods():
    layers = [L.Dense(5, activation="tanh", dtype="float64"), L.Dense(3, dtype="float64")]
    model = keras.Sequential([keras.Input((6,), dtype="float64"), *layers])
    randomize(model)
    check_methods(model, squared_loss, normal((4, 6)), F64)


def test_dense_on_3d_and_4d_inputs_sums_middle_dims():
    inp = keras.Input((3, 2, 5), dtype="float64")
    h = L.Dense(4, activation="relu", dtype="float64")(inp)  # [B, 3, 2, 4]
    h = L.Reshape((6, 4), dtype="float64")(h)
    out = L.Dense(2, use_bias=False, dtype="float64")(h)  # [B, 6, 2]
    model = keras.Model(inp, out)
    randomize(model)
    check_methods(model, squared_loss, normal((3, 3, 2, 5)), F64)


# --------------------------------------------------------------------------------------------- Conv2D
CONV_CASES = [  # kernel, strides, padding, use_bias, input H x W
    ((3, 3), 1, "same", True, (6, 6)),
    ((3, 3), 2, "same", False, (7, 6)),
    ((3, 3), 2, "valid", True, (7, 8)),
    ((3, 1), 1, "valid", True, (5, 4)),
    ((2, 2), 2, "same", True, (5, 6)),
    ((2, 2), 1, "same", False, (5, 5)),
    ((1, 1), 2, "valid", True, (5, 6)),
]


@pytest.mark.parametrize("impl", CONV_IMPLS)
@pytest.mark.parametrize("kernel,stride,padding,_,hw", CONV_CASES)
def test_conv2d_filter_grads_match_batch_of_one_backprop(impl, kernel, stride, padding, _, hw):
    x = normal((3, *hw, 2))
    out_hw = [(-(-n // stride) if padding == "same" else (n - k) // stride + 1) for n, k in zip(hw, kernel)]
    g = normal((3, *out_hw, 4), seed=2)
    got = conv2d_filter_grads(x, g, kernel, (stride, stride), padding, impl=impl)
    for b in range(3):
        want = tf.compat.v1.nn.conv2d_backprop_filter(
            x[b : b + 1], [*kernel, 2, 4], g[b : b + 1], [1, stride, stride, 1], padding.upper()
        )
        np.testing.assert_allclose(got[b], want, **F64)


def conv_model(kernel, stride, padding, use_bias, hw):
    inp = keras.Input((*hw, 2), dtype="float64")
    h = L.Conv2D(3, kernel, strides=stride, padding=padding, use_bias=use_bias, activation="tanh", dtype="float64")(inp)
    out = L.Conv2D(2, (2, 1), padding="same", dtype="float64")(h)
    model = keras.Model(inp, out)
    randomize(model)
    return model


@pytest.mark.parametrize("kernel,stride,padding,use_bias,hw", CONV_CASES)
def test_conv2d_fast_matches_jacobian(kernel, stride, padding, use_bias, hw):
    model = conv_model(kernel, stride, padding, use_bias, hw)
    x = normal((3, *hw, 2))
    want = jacobian_rows(model, squared_loss, x)
    for impl in CONV_IMPLS:
        assert_rows_close(per_example_gradients(model, squared_loss, x, conv_impl=impl), want, F64)


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_conv2d_baselines_match_jacobian(method):
    model = conv_model((3, 3), 2, "same", True, (7, 6))
    check_methods(model, squared_loss, normal((3, 7, 6, 2)), F64, methods=(method,))


# -------------------------------------------------------------------------------- BatchNormalization
def bn_cnn(dtype="float64", bn_axis=-1):
    inp = keras.Input((6, 6, 2), dtype=dtype)
    h = L.Conv2D(4, 3, padding="same", use_bias=False, dtype=dtype)(inp)
    h = L.BatchNormalization(axis=bn_axis, dtype=dtype)(h)
    h = L.ReLU(dtype=dtype)(h)
    h = L.Conv2D(4, 3, strides=2, padding="same", dtype=dtype)(h)
    h = L.BatchNormalization(center=False, dtype=dtype)(h)  # scale only
    h = L.GlobalAveragePooling2D(dtype=dtype)(h)
    h = L.BatchNormalization(scale=False, dtype=dtype)(h)  # 2-D input, shift only
    out = L.Dense(3, dtype=dtype)(h)
    model = keras.Model(inp, out)
    randomize(model)
    return model


def test_batch_norm_inference_all_methods():
    check_methods(bn_cnn(), squared_loss, normal((4, 6, 6, 2)), F64)


def test_batch_norm_on_non_last_axis():
    inp = keras.Input((3, 5), dtype="float64")
    h = L.BatchNormalization(axis=1, dtype="float64")(inp)  # features on axis 1 of [B, 3, 5]
    model = keras.Model(inp, L.Dense(2, dtype="float64")(h))
    randomize(model)
    check_methods(model, squared_loss, normal((4, 3, 5)), F64, methods=("fast", "loop"))


def test_batch_norm_training_mode_invariants():
    """Training-mode BN couples examples: rows sum to the batch gradient, and rows of parameters
    downstream of the last BN (its gamma/beta, the head) are exact per-example gradients."""
    model = bn_cnn()
    x = normal((5, 6, 6, 2))
    variables = model.trainable_variables
    got = per_example_gradients(model, squared_loss, x, training=True)

    with tf.GradientTape() as tape:
        total = tf.reduce_sum(squared_loss(model(x, training=True)))
    batch_grads = tape.gradient(total, variables)
    for g, want, v in zip(got, batch_grads, variables):
        np.testing.assert_allclose(tf.reduce_sum(g, axis=0), want, err_msg=v.name, **F64)

    want = jacobian_rows(model, squared_loss, x, training=True)
    head = {v.name for v in model.layers[-1].trainable_weights + model.layers[-2].trainable_weights}  # Dense, last BN
    assert len(head) == 3
    for g, w, v in zip(got, want, variables):
        if v.name in head:
            np.testing.assert_allclose(g, w, err_msg=v.name, **F64)
    # Upstream rows are contributions, not per-example gradients (documented, not a bug).
    first_conv = variables[0]
    assert not np.allclose(got[0], want[0], rtol=1e-3), first_conv.name


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_baselines_refuse_training_batch_norm(method):
    with pytest.raises(ValueError, match="BatchNormalization"):
        per_example_gradients(bn_cnn(), squared_loss, normal((2, 6, 6, 2)), training=True, method=method)


# ------------------------------------------------------------------------------ composition, sharing
class TwoDense(keras.layers.Layer):
    """A custom layer made of supported sublayers only (it owns no variable itself)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first = L.Dense(4, activation="sigmoid", dtype=self.dtype)
        self.second = L.Dense(4, dtype=self.dtype)

    def call(self, x):
        return self.second(self.first(x)) + x


def test_nested_and_shared_layers():
    inner = keras.Sequential([keras.Input((4,), dtype="float64"), L.Dense(4, activation="elu", dtype="float64")])
    shared = L.Dense(4, dtype="float64")
    inp = keras.Input((4,), dtype="float64")
    h = inner(inp)
    h = shared(h)
    h = inner(h)  # nested model used twice
    h = TwoDense(dtype="float64")(shared(h))  # shared Dense used twice
    model = keras.Model(inp, L.Dense(2, dtype="float64")(h))
    randomize(model)
    check_methods(model, squared_loss, normal((4, 4)), F64)


def test_multi_input_model_with_targets():
    a, b = keras.Input((3,), dtype="float64", name="a"), keras.Input((2,), dtype="float64", name="b")
    h = L.Concatenate(dtype="float64")([L.Dense(4, activation="relu", dtype="float64")(a), b])
    model = keras.Model({"a": a, "b": b}, L.Dense(3, dtype="float64")(h))
    randomize(model)
    inputs = {"a": normal((4, 3)), "b": normal((4, 2), seed=3)}
    labels = tf.constant([0, 2, 1, 2])
    check_methods(model, xent_loss, inputs, F64, targets=labels)


def small_resnet():
    """Functional pre-activation residual net (float32): identity and projection shortcuts via Add."""
    inp = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, padding="same", use_bias=False)(inp)
    for filters, stride in [(4, 1), (8, 2)]:
        pre = L.ReLU()(L.BatchNormalization()(h))
        r = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(pre)
        r = L.Conv2D(filters, 3, padding="same", use_bias=False)(L.ReLU()(L.BatchNormalization()(r)))
        if stride != 1 or filters != h.shape[-1]:
            h = L.Conv2D(filters, 1, strides=stride, use_bias=False)(pre)
        h = L.Add()([h, r])
    h = L.GlobalAveragePooling2D()(L.ReLU()(L.BatchNormalization()(h)))
    model = keras.Model(inp, L.Dense(5)(h))
    randomize(model)
    return model


def test_small_resnet_float32():
    check_methods(small_resnet(), xent_loss, normal((3, 8, 8, 3), "float32"), F32, targets=tf.constant([1, 4, 0]))


# ------------------------------------------------------------------------------------ compiled / API
def test_compiled_fn_with_targets_and_losses():
    model = small_resnet()
    fn = make_per_example_gradients_fn(model, xent_loss, return_losses=True)
    for seed in (1, 2):  # the second call reuses the graph: nothing stale inside it
        x, y = normal((3, 8, 8, 3), "float32", seed=seed), tf.constant([seed, 0, 3])
        grads, losses = fn(x, y)
        assert_rows_close(grads, jacobian_rows(model, xent_loss, x, targets=y), F32)
        np.testing.assert_allclose(losses, xent_loss(model(x), y), **F32)
    assert fn.experimental_get_tracing_count() == 1
    assert all("call" not in vars(layer) for layer in model.layers)


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_compiled_baselines_and_batch_of_one(method):
    model = bn_cnn()
    fn = make_per_example_gradients_fn(model, squared_loss, method=method, return_losses=True)
    for batch in (3, 1):
        x = normal((batch, 6, 6, 2), seed=batch)
        grads, losses = fn(x.numpy())  # numpy inputs are converted
        assert_rows_close(grads, jacobian_rows(model, squared_loss, x), F64)
        np.testing.assert_allclose(losses, squared_loss(model(x)), **F64)


def test_training_flag_as_tensor_inside_tf_function():
    model = bn_cnn()
    x = normal((3, 6, 6, 2))

    @tf.function
    def step(x, training):
        return per_example_gradients(model, squared_loss, x, training=training)

    for training in (True, False):
        want = per_example_gradients(model, squared_loss, x, training=training)
        assert_rows_close(step(x, tf.constant(training)), [w.numpy() for w in want], F64)


def test_inside_user_tf_function_and_variable_subset():
    model = bn_cnn()
    head = model.layers[-1].trainable_variables

    @tf.function
    def step(x):
        return per_example_gradients(model, squared_loss, x, variables=head, method="fast")

    x = normal((3, 6, 6, 2))
    assert_rows_close(step(x), jacobian_rows(model, squared_loss, x, variables=head), F64)


def test_unsupported_parameterized_layers_raise():
    cases = [
        L.LayerNormalization(),
        L.DepthwiseConv2D(3),  # a Conv2D subclass: exact-type registry must not match it
        L.Conv2D(2, 3, dilation_rate=2),
        L.BatchNormalization(renorm=True),
    ]
    for layer in cases:
        model = keras.Sequential([keras.Input((6, 6, 2)), layer, L.Flatten(), L.Dense(2)])
        with pytest.raises(UnsupportedLayerError, match=f"{layer.name}.*{type(layer).__name__}"):
            per_example_gradients(model, squared_loss, tf.ones((2, 6, 6, 2)))


class ScaleLayer(keras.layers.Layer):
    """Owns a variable itself: no rule can know its math."""

    def build(self, shape):
        self.scale = self.add_weight(name="scale", shape=shape[-1:], initializer="ones")

    def call(self, x):
        return x * self.scale


def test_custom_layer_owning_variables_raises_but_can_be_excluded():
    model = keras.Sequential([keras.Input((3,)), L.Dense(3), ScaleLayer(name="my_scale"), L.Dense(2)])
    x = tf.ones((2, 3))
    with pytest.raises(UnsupportedLayerError, match="my_scale.*ScaleLayer"):
        per_example_gradients(model, squared_loss, x)
    dense_vars = model.layers[0].trainable_variables + model.layers[2].trainable_variables
    got = per_example_gradients(model, squared_loss, x, variables=dense_vars)
    assert_rows_close(got, jacobian_rows(model, squared_loss, x, variables=dense_vars), F32)


def test_foreign_or_non_parameter_variable_raises():
    model = bn_cnn()
    with pytest.raises(ValueError, match="not_in_model"):
        per_example_gradients(model, squared_loss, tf.ones((2, 6, 6, 2), tf.float64),
                              variables=[tf.Variable(1.0, name="not_in_model")])
    moving_mean = model.layers[2].moving_mean
    with pytest.raises(ValueError, match="moving_mean"):
        per_example_gradients(model, squared_loss, tf.ones((2, 6, 6, 2), tf.float64), variables=[moving_mean])


def test_layers_restored_after_error():
    model = bn_cnn()
    before = [(dict(vars(layer)).get("call"), getattr(layer, "activation", None)) for layer in model.layers]

    def failing_loss(outputs):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        per_example_gradients(model, failing_loss, tf.ones((2, 6, 6, 2), tf.float64))
    after = [(dict(vars(layer)).get("call"), getattr(layer, "activation", None)) for layer in model.layers]
    assert before == after
    check_methods(model, squared_loss, normal((2, 6, 6, 2)), F64, methods=("fast",))


def test_median_seconds_interleaves_and_keeps_the_median(monkeypatch):
    """On a fake clock: one untimed warm-up each, rounds in alternating order, the median of each."""
    from influence_ssl.pergrad import timing

    clock, order = [0.0], []
    durations = {"a": [100.0, 5.0, 1.0, 3.0], "b": [100.0, 2.0, 2.0, 9.0]}

    def candidate(name):
        def call():
            order.append(name)
            clock[0] += durations[name][sum(n == name for n in order) - 1]
            return tf.zeros(())
        return call

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    seconds = timing.median_seconds({"a": candidate("a"), "b": candidate("b")}, (), rounds=3)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert seconds == {"a": 3.0, "b": 2.0}


def test_auto_conv_impl_measures_once_and_keeps_the_fastest(monkeypatch):
    """With two implementations slowed by 30 ms, "auto" must pick the third, and measure a shape once."""
    import time as time_module

    from influence_ssl.pergrad import conv as conv_module

    calls = {name: 0 for name in conv_module._IMPLS}

    def wrap(name, fn, delay):
        def impl(x, g, *args):
            calls[name] += 1
            out = fn(x, g, *args)
            if delay:
                pause = tf.py_function(lambda: time_module.sleep(delay) or 0.0, [], tf.float32)
                out = out + tf.cast(pause, out.dtype) * 0
            return out
        return impl

    monkeypatch.setattr(conv_module, "_tuned", {})
    monkeypatch.setattr(conv_module, "_IMPLS", {
        "shifted": wrap("shifted", conv_module.filter_grads_shifted, 0.03),
        "patches": wrap("patches", conv_module.filter_grads_patches, 0.0),
        "vmap": wrap("vmap", conv_module.filter_grads_vmap, 0.03)})
    x, g = tf.zeros([2, 6, 6, 3]), tf.zeros([2, 6, 6, 4])
    assert conv_module.fastest_impl(x, g, (3, 3), (1, 1), "same") == "patches"
    traced = dict(calls)
    assert conv_module.fastest_impl(x, g, (3, 3), (1, 1), "same") == "patches"
    assert calls == traced  # cached: no second measurement
    model = conv_model((3, 3), 1, "same", True, (5, 5))
    xs = normal((3, 5, 5, 2))
    assert_rows_close(per_example_gradients(model, squared_loss, xs, conv_impl="auto"),
                      jacobian_rows(model, squared_loss, xs), F64)


@pytest.mark.parametrize("slow, expected", [("vmap", "layerwise"), ("layerwise", "vmap")])
def test_fast_measures_once_and_keeps_the_faster_of_layerwise_and_vmap(monkeypatch, slow, expected):
    """With one of the two slowed by 50 ms, "fast" must pick the other, measure once, and stay exact."""
    import time as time_module

    from influence_ssl.pergrad import api

    calls = {"layerwise": 0, "vmap": 0}

    def wrap(name, fn):
        def method(*args):
            calls[name] += 1
            grads, losses = fn(*args)
            if name == slow:
                pause = tf.py_function(lambda: time_module.sleep(0.05) or 0.0, [], tf.float32)
                losses = losses + tf.cast(pause, losses.dtype) * 0
            return grads, losses
        return method

    monkeypatch.setattr(api, "fast_per_example_gradients", wrap("layerwise", api.fast_per_example_gradients))
    monkeypatch.setattr(api, "vmap_per_example_gradients", wrap("vmap", api.vmap_per_example_gradients))
    model = conv_model((3, 3), 1, "same", True, (5, 5))
    xs = normal((3, 5, 5, 2))
    assert api.fastest_method(model, squared_loss, xs, None, model.trainable_variables, False, "auto") == expected
    measured = dict(calls)
    assert_rows_close(per_example_gradients(model, squared_loss, xs), jacobian_rows(model, squared_loss, xs), F64)
    assert calls[expected] == measured[expected] + 1 and calls[slow] == measured[slow]  # cached choice, no re-timing


def test_fast_keeps_layerwise_where_vmap_is_not_exact_or_cannot_be_timed():
    from influence_ssl.pergrad import api

    model = keras.Sequential([keras.layers.InputLayer(input_shape=(4,)), keras.layers.Dense(3),
                              keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    model.build((None, 4))
    x = normal((5, 4), "float32")
    # BN in training mode: batch-of-one statistics differ, so vmap is no candidate.
    assert api.fastest_method(model, squared_loss, x, None, model.trainable_variables, True, "auto") == "layerwise"

    @tf.function
    def with_graph_tensor(x):
        scale = tf.reduce_mean(x)  # a tensor of this graph: the loss cannot be timed outside it
        loss = lambda out: tf.reduce_sum(out ** 2, axis=-1) * scale
        return per_example_gradients(model, loss, x, training=False)

    want = jacobian_rows(model, lambda out: tf.reduce_sum(out ** 2, axis=-1) * tf.reduce_mean(x), x)
    assert_rows_close(with_graph_tensor(x), want, dict(rtol=1e-4, atol=1e-5))


def test_fast_times_the_real_computation_of_both_candidates(monkeypatch):
    """The timed candidates must compute the real per-example gradients (tf.init_scope, which pauses gradient
    tapes, once made both return zeros): each returns Σ_b ||g_b||² of the stand-in batch, checked against the
    layerwise rows of the same inputs, also when "fast" is traced inside a tf.function."""
    from influence_ssl.pergrad import api

    seen = {}

    def spy(fns, args):
        seen["values"] = {name: float(fn(*args)) for name, fn in fns.items()}
        seen["args"] = [a.numpy() for a in args if a is not None]
        return {"layerwise": 1.0, "vmap": 1.0}

    monkeypatch.setattr(api, "median_seconds", spy)
    model = conv_model((3, 3), 1, "same", True, (5, 5))
    xs = normal((3, 5, 5, 2), "float32")
    tf.function(lambda x: per_example_gradients(model, squared_loss, x))(xs)
    rows = per_example_gradients(model, squared_loss, tf.constant(seen["args"][0]), method="layerwise")
    expected = sum(float(tf.reduce_sum(tf.square(r))) for r in rows)
    assert expected > 0
    for name, value in seen["values"].items():
        assert value == pytest.approx(expected, rel=1e-4), name
