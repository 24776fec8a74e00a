"""WRN-28-2 (FixMatch and UDA HEAD variants) and the small CNN: shapes, counts, details, per-example grads."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from influence_ssl.models import Classifier, small_cnn, two_layer_mlp, wide_resnet_28_2
from influence_ssl.pergrad import per_example_gradients

TINY = dict(filters=4, repeat=1, stem_filters=4)


def num_params(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def xent(logits, y):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)


@pytest.fixture(scope="module", params=["fixmatch", "uda"])
def wrn(request):
    return request.param, wide_resnet_28_2(variant=request.param, seed=3)


def test_wrn_parameter_counts_and_shapes(wrn):
    variant, model = wrn
    expected = {"fixmatch": 1_469_642, "uda": 1_467_610}[variant]
    assert num_params(model.trainable_weights) == expected
    assert num_params(model.non_trainable_weights) == 3_616  # BN moving mean/var
    x = tf.random.stateless_uniform((2, 32, 32, 3), seed=(1, 2), minval=-1.0, maxval=1.0)
    assert model.features(x).shape == (2, 128)
    assert model(x).shape == (2, 10)
    assert isinstance(model, Classifier) and model.layers[-1] is model.head
    assert model.head.kernel.shape == (128, 10) and model.head.bias.shape == (10,)
    np.testing.assert_allclose(model.head(model.features(x)), model(x), rtol=1e-6, atol=1e-6)


def test_wrn_variant_details(wrn):
    variant, model = wrn
    fixmatch = variant == "fixmatch"
    layers = model.backbone.layers
    convs = [l for l in layers if isinstance(l, keras.layers.Conv2D)]
    bns = [l for l in layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(convs) == 1 + 3 * 4 * 2 + 3 and len(bns) == 3 * 4 * 2 + 1
    assert all(c.use_bias == fixmatch for c in convs)
    assert all(b.momentum == (0.999 if fixmatch else 0.9) for b in bns)
    assert all(b.epsilon == (1e-3 if fixmatch else 1e-5) for b in bns)
    act_type = keras.layers.LeakyReLU if fixmatch else keras.layers.ReLU
    assert sum(isinstance(l, act_type) for l in layers) == len(bns)
    # activate_before_residual: FixMatch's stage-0 block-0 shortcut reads the BN-activated input.
    get = model.backbone.get_layer
    shortcut_in = get("s0_b0_shortcut").input
    if fixmatch:
        assert shortcut_in is get("s0_b0_pre_lrelu").output
    else:
        assert shortcut_in is get("stem_conv").output
    for stage in (1, 2):  # later stages: raw block input in both variants
        assert get(f"s{stage}_b0_shortcut").input is get(f"s{stage - 1}_b3_add").output
    # He normal on fan-out, untruncated: std sqrt(2 / (9 * 128)) on the largest kernel.
    kernel = get("s2_b3_conv2").kernel.numpy()
    assert abs(kernel.std() / np.sqrt(2 / (9 * 128)) - 1) < 0.02
    assert np.abs(kernel).max() > 3 * np.sqrt(2 / (9 * 128))  # not truncated at 2 std
    head = model.head.kernel.numpy()
    if fixmatch:  # Glorot normal (truncated at 2 std of the underlying normal)
        assert np.abs(head).max() <= 2 * np.sqrt(2 / 138) / 0.87962566103423978 + 1e-6
    else:  # uniform(+-1/sqrt(10))
        assert np.abs(head).max() <= 1 / np.sqrt(10) and np.abs(head).max() > 0.25
    assert not np.any(model.head.bias.numpy())


def test_seeded_builds_repeat_and_tiny_config():
    a = wide_resnet_28_2(variant="uda", seed=5, **TINY)
    b = wide_resnet_28_2(variant="uda", seed=5, **TINY)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    convs = [l for l in a.backbone.layers if isinstance(l, keras.layers.Conv2D)]
    assert not np.array_equal(convs[1].kernel.numpy(), convs[2].kernel.numpy()[:, :, :4])  # distinct seeds
    assert a.features(tf.zeros((1, 32, 32, 3))).shape == (1, 16)
    assert a.head.kernel.shape == (16, 10)
    with pytest.raises(ValueError, match="variant"):
        wide_resnet_28_2(variant="mixmatch")


@pytest.mark.parametrize("input_shape", [(8, 8, 1), (32, 32, 3)])
def test_small_cnn_interface(input_shape):
    model = small_cnn(num_classes=10, input_shape=input_shape, width=8, seed=0)
    x = tf.zeros((3, *input_shape))
    assert isinstance(model, Classifier) and model.layers[-1] is model.head
    assert model.features(x).shape == (3, 16) and model(x).shape == (3, 10)
    assert small_cnn().features(tf.zeros((1, 8, 8, 1))).shape == (1, 64)


@pytest.mark.parametrize("builder", [
    lambda: small_cnn(num_classes=5, input_shape=(8, 8, 1), width=4, seed=1),
    lambda: wide_resnet_28_2(num_classes=5, variant="fixmatch", input_shape=(8, 8, 3), seed=1, **TINY),
    lambda: wide_resnet_28_2(num_classes=5, variant="uda", input_shape=(8, 8, 3), seed=1, **TINY),
], ids=["small_cnn", "tiny_wrn_fixmatch", "tiny_wrn_uda"])
def test_fast_per_example_gradients_match_jacobian(builder):
    model = builder()
    # Non-trivial BN statistics and parameters, so inference BN is not the identity.
    for w in model.weights:
        if "moving_variance" in w.name or "gamma" in w.name:
            w.assign(tf.random.stateless_uniform(w.shape, seed=(len(w.name), 7), minval=0.5, maxval=1.5))
        elif "moving_mean" in w.name or "beta" in w.name or "bias" in w.name:
            w.assign(tf.random.stateless_normal(w.shape, seed=(len(w.name), 8), stddev=0.1))
    shape = model.backbone.input_shape[1:]
    x = tf.random.stateless_normal((3, *shape), seed=(4, 2))
    y = tf.constant([0, 3, 4])
    grads = per_example_gradients(model, xent, x, targets=y, method="fast", training=False)
    with tf.GradientTape(persistent=True) as tape:
        losses = xent(model(x, training=False), y)
    jac = tape.jacobian(losses, model.trainable_variables, experimental_use_pfor=False)
    assert len(grads) == len(jac) == len(model.trainable_variables)
    for v, g, j in zip(model.trainable_variables, grads, jac):
        np.testing.assert_allclose(g, j, rtol=1e-4, atol=1e-5, err_msg=v.name)


def test_every_seed_and_layer_of_the_mlp_has_its_own_stream():
    """A seeded Glorot-uniform draws the same stream at any shape, so two initializers sharing a seed
    give perfectly correlated kernels. Across 4 seeds x 3 layers every pair must look independent."""
    kernels = {}
    for seed in range(4):
        model = two_layer_mlp(seed=seed)
        layers = model.backbone.layers + [model.head]
        for index, layer in enumerate(layers):
            kernels[(seed, index)] = layer.kernel.numpy().ravel()
    n = min(len(k) for k in kernels.values())  # 200: the smallest kernel (2x100 and 100x2)
    keys = sorted(kernels)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            corr = np.corrcoef(kernels[a][:n], kernels[b][:n])[0, 1]
            assert abs(corr) < 0.3, (a, b, corr)  # independent: |corr| ~ 1/sqrt(200) = 0.07


def perturb_batch_norm(model):
    """Non-trivial BN statistics and parameters, so inference BN is not the identity."""
    for w in model.weights:
        if "moving_variance" in w.name or "gamma" in w.name:
            w.assign(tf.random.stateless_uniform(w.shape, seed=(len(w.name), 7), minval=0.5, maxval=1.5))
        elif "moving_mean" in w.name or "beta" in w.name or "bias" in w.name:
            w.assign(tf.random.stateless_normal(w.shape, seed=(len(w.name), 8), stddev=0.1))


SPLIT_BUILDERS = {
    "small_cnn": lambda: small_cnn(num_classes=5, input_shape=(8, 8, 1), width=4, seed=1),
    "mlp": lambda: two_layer_mlp(num_classes=3, input_dim=4, hidden_units=6, seed=1),
    "wrn_fixmatch": lambda: wide_resnet_28_2(num_classes=5, variant="fixmatch", input_shape=(8, 8, 3), seed=1,
                                             filters=4, repeat=2, num_stages=2, stem_filters=4),
    "wrn_uda": lambda: wide_resnet_28_2(num_classes=5, variant="uda", input_shape=(8, 8, 3), seed=1,
                                        filters=4, repeat=2, num_stages=2, stem_filters=4),
    # The last unit is the first of its stage: a 1x1 shortcut conv, fed the BN-activated input.
    "wrn_one_unit": lambda: wide_resnet_28_2(num_classes=5, variant="fixmatch", input_shape=(8, 8, 3), seed=1,
                                             filters=4, repeat=1, num_stages=1, stem_filters=2),
}


@pytest.mark.parametrize("name", sorted(SPLIT_BUILDERS))
def test_last_block_split_recomposes_the_model_exactly(name):
    model = SPLIT_BUILDERS[name]()
    perturb_batch_norm(model)
    weights_before = [w.name for w in model.weights]
    children_before = sorted(model._trackable_children())
    trunk, block = model.last_block_split()
    x = tf.random.stateless_normal((4, *model.backbone.input_shape[1:]), seed=(5, 1))
    np.testing.assert_array_equal(block(trunk(x, training=False), training=False), model(x, training=False))
    # The block holds the last block's and the head's variables (the same objects), the trunk none of them.
    refs = lambda variables: {v.ref() for v in variables}
    scope = refs(model.last_block_variables() + [model.head.kernel, model.head.bias])
    assert scope <= refs(block.trainable_variables)
    assert not scope & refs(trunk.trainable_variables)
    assert refs(trunk.trainable_variables) | refs(block.trainable_variables) == refs(model.trainable_variables)
    # Cached, and not tracked: the model's weights and checkpoint dependencies are unchanged.
    assert model.last_block_split()[0] is trunk and model.last_block_split()[1] is block
    assert [w.name for w in model.weights] == weights_before
    assert sorted(model._trackable_children()) == children_before


def test_last_block_split_first_asked_inside_a_tf_function():
    model = SPLIT_BUILDERS["small_cnn"]()
    x = tf.random.stateless_normal((3, 8, 8, 1), seed=(6, 1))

    @tf.function
    def recomposed(x):
        trunk, block = model.last_block_split()
        return block(trunk(x, training=False), training=False)

    # Graph-mode fusions may round differently from the eager ops: equal up to float32 rounding.
    np.testing.assert_allclose(recomposed(x), model(x, training=False), rtol=1e-5, atol=1e-6)


def test_last_block_split_refuses_what_cannot_be_cut():
    backbone = keras.Sequential([keras.layers.InputLayer(input_shape=(2,)), keras.layers.Dense(4, name="h")])
    unnamed = Classifier(backbone, 2)
    unnamed.build((None, 2))
    with pytest.raises(ValueError, match="does not name a last block"):
        unnamed.last_block_split()
    # The output also depends on the input by a path around the last block: no single cut tensor.
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="first")(inputs)
    last = keras.layers.Dense(4, name="last")(hidden)
    bypass = keras.layers.Add()([last, keras.layers.Dense(4, name="skip")(inputs)])
    model = Classifier(keras.Model(inputs, bypass), 2, last_block=["last"])
    model.build((None, 3))
    with pytest.raises(ValueError, match="last block's input alone"):
        model.last_block_split()
