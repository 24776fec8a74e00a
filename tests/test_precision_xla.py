"""--mixed_precision (float16 compute, float32 variables, loss scaling) and --jit_compile (XLA θ update)."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from influence_ssl import augment
from influence_ssl.data import SSLData
from influence_ssl.models import small_cnn
from influence_ssl.runs import build as run_build
from influence_ssl.runs import presets
from influence_ssl.ssl import FixMatch
from influence_ssl.trainer import ConfigError, TrainConfig, Trainer
from influence_ssl.trainer.image_source import AugmentedImageSource


def digits_like(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(80, 8, 8, 1), dtype=np.uint8)
    y = np.tile(np.arange(10), 8).astype(np.int64)
    return SSLData("tiny", 10, x[:20], y[:20], x[20:60], np.arange(40), y[20:60], x[60:80], y[60:80], x[60:80],
                   y[60:80])


def build(mixed=False):
    if not mixed:
        return small_cnn(10, (8, 8, 1), width=8, seed=0)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return small_cnn(10, (8, 8, 1), width=8, seed=0)
    finally:
        keras.mixed_precision.set_global_policy(None)  # the default (floatx's), not a pinned "float32"


def trainer(model, **overrides):
    data = digits_like()
    config = TrainConfig(**{**dict(steps=4, labeled_batch=10, unlabeled_batch=20, validation_batch=20,
                                   inner_steps=2, weight_warmup=0, optimizer="nesterov", lr=0.03,
                                   weight_decay=5e-4, log_every=4, eval_every=4, checkpoint_every=4), **overrides})
    weak = lambda images, seed: augment.weak_augment(images, seed, flip=False)
    strong = lambda images, seed: augment.strong_fixmatch(images, seed, flip=False)
    source = AugmentedImageSource(data, 10, 20, 20, seed=0, weak=weak, strong=strong)
    # Threshold 0: every row is pseudo-labelled, so no confidence sits at the threshold, where rounding (XLA's or
    # the plain step's) would decide the mask and the two runs would part by more than rounding.
    return Trainer(model, FixMatch(0.0), source, config, verbose=False)


def test_jit_compiled_theta_update_equals_the_plain_one():
    plain, jitted = trainer(build()), trainer(build(), jit_compile=True)
    plain.run()
    jitted.run()
    for a, b in zip(plain.model.trainable_variables, jitted.model.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(plain.weights.to_numpy(), jitted.weights.to_numpy(), rtol=1e-4, atol=1e-5)


def test_mixed_precision_step_runs_and_the_lambda_step_keeps_its_dtype_and_value():
    mixed_model = build(mixed=True)
    assert mixed_model.compute_dtype == "float16" and mixed_model.head.compute_dtype == "float32"
    mixed = trainer(mixed_model, mixed_precision=True)
    results = mixed.run()
    assert all(v.dtype == tf.float32 for v in mixed.model.trainable_variables)
    assert np.isfinite(results["test_accuracy"])
    assert isinstance(mixed.theta_optimizer, keras.mixed_precision.LossScaleOptimizer)
    # The same weights in a float32 model: the hypergradient agrees up to float16 feature rounding.
    full = trainer(build())
    for a, b in zip(full.model.variables, mixed.model.variables):
        a.assign(b)
    full.weights.values.assign(mixed.weights.values)
    ids_m, g_m = mixed.hypergradient(1)
    ids_f, g_f = full.hypergradient(1)
    np.testing.assert_array_equal(ids_m, ids_f)
    assert g_m.dtype == np.float32
    assert np.linalg.norm(g_m - g_f) <= 0.05 * np.linalg.norm(g_f)


def test_mixed_precision_flag_and_model_policy_must_agree():
    with pytest.raises(ConfigError, match="mixed_float16"):
        trainer(build(), mixed_precision=True)
    with pytest.raises(ConfigError, match="mixed_float16"):
        trainer(build(mixed=True))


def test_the_run_configuration_builds_a_float16_model_and_a_scaled_xla_step():
    """--mixed_precision and --jit_compile through influence_ssl.runs: the model is built under 'mixed_float16'
    (head float32), the global policy is restored afterwards, and the θ optimizer scales the loss."""
    config = presets.resolve({"mixed_precision": True, "jit_compile": True, "batch": 10, "uratio": 2,
                              "validation_batch": 20, "steps": 4, "inner_steps": 2, "weight_warmup": 0})
    trainer = run_build.make_trainer(config, digits_like(), verbose=False)
    assert trainer.model.compute_dtype == "float16" and trainer.model.head.compute_dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"
    assert isinstance(trainer.theta_optimizer, keras.mixed_precision.LossScaleOptimizer)
    assert trainer.config.jit_compile and trainer.config == config.train
    plain = run_build.make_model(config.replace(mixed_precision=False), digits_like())
    assert plain.compute_dtype == "float32"


def test_building_runs_leaves_the_float64_models_of_later_code_alone():
    """A global policy left set (even to 'float32') overrides floatx for every later model: the float64 oracles of
    tests/test_block_influence.py once got float32 models after an in-process study."""
    for mixed in (False, True):
        config = presets.resolve({"mixed_precision": mixed, "batch": 10, "uratio": 2, "validation_batch": 20})
        run_build.make_model(config, digits_like())
        keras.backend.set_floatx("float64")
        try:
            model = small_cnn(10, (8, 8, 1), width=4, seed=0)
        finally:
            keras.backend.set_floatx("float32")
        assert model.compute_dtype == "float64" and model.trainable_variables[0].dtype == tf.float64
