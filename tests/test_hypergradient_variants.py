"""Hypergradient variants : normalisations against numpy, the λ parametrisations against a numpy
optimizer, and the trainer's weak-view / target-temperature paths against the paper's path."""
import dataclasses
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from influence_ssl.influence import head_gradient_norms, normalize_hypergradient
from influence_ssl.optimizers import MaskedAdam
from influence_ssl.trainer import ConfigError
from influence_ssl.weights import ExampleWeights
from tests.test_trainer import moons_trainer, small_config


def _standardized(g, groups, active):
    """numpy: (g - mean) / std per group over active rows; inactive rows 0."""
    out = np.zeros_like(g)
    for c in np.unique(groups[active]):
        rows = active & (groups == c)
        std = g[rows].std()
        out[rows] = 0.0 if std == 0 else (g[rows] - g[rows].mean()) / std
    return out


def _problem(seed=0, u=40, k=4):
    rng = np.random.default_rng(seed)
    grads = rng.normal(size=u).astype(np.float32)
    classes = rng.integers(0, k, u)
    targets = np.eye(k, dtype=np.float32)[classes]
    masked = rng.random(u) < 0.3
    targets[masked] = 0.0
    grads[masked] = 0.0  # a masked row's hypergradient is exactly 0
    return grads, classes, targets, ~masked


def test_batch_normalization_standardises_the_active_rows():
    grads, _, targets, active = _problem()
    got = normalize_hypergradient(tf.constant(grads), "batch", tf.constant(targets)).numpy()
    np.testing.assert_allclose(got, _standardized(grads, np.zeros(len(grads), int), active), atol=1e-5)
    assert np.all(got[~active] == 0)


def test_class_normalization_standardises_within_each_pseudo_label_class():
    grads, classes, targets, active = _problem(1)
    got = normalize_hypergradient(tf.constant(grads), "class", tf.constant(targets)).numpy()
    np.testing.assert_allclose(got, _standardized(grads, classes, active), atol=1e-5)


def test_class_normalization_of_a_single_row_class_is_zero():
    grads = np.array([0.5, -1.0, 2.0, 0.3], np.float32)
    targets = np.eye(3, dtype=np.float32)[[0, 1, 1, 2]]
    got = normalize_hypergradient(tf.constant(grads), "class", tf.constant(targets)).numpy()
    np.testing.assert_allclose(got, [0.0, -1.0, 1.0, 0.0], atol=1e-6)


def test_example_normalization_divides_by_the_autodiff_gradient_norm():
    """head_gradient_norms against ||∇ℓ_u|| of a batch-of-one GradientTape loop over (W, b)."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(6, 3))
    targets = np.eye(4)[rng.integers(0, 4, 6)] * (rng.random(6) < 0.8)[:, None]  # some masked rows
    kernel, bias = tf.Variable(rng.normal(size=(3, 4))), tf.Variable(rng.normal(size=4))
    expected = []
    for x, t in zip(features, targets):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_sum(t * tf.nn.log_softmax(tf.matmul(x[None], kernel) + bias))
        gw, gb = tape.gradient(loss, [kernel, bias])
        expected.append(np.sqrt(np.sum(gw.numpy() ** 2) + np.sum(gb.numpy() ** 2)))
    norms = head_gradient_norms(features, targets, kernel, bias).numpy()
    np.testing.assert_allclose(norms, expected, rtol=1e-10)
    grads = rng.normal(size=6).astype(np.float32) * (norms > 0)
    got = normalize_hypergradient(tf.constant(grads), "example", tf.constant(targets, tf.float32), norms).numpy()
    np.testing.assert_allclose(got, np.where(norms > 0, grads / np.where(norms > 0, norms, 1), 0), rtol=1e-6)


def test_unknown_normalization_and_missing_norms_are_refused():
    g, t = tf.zeros([2]), tf.zeros([2, 2])
    with pytest.raises(ValueError, match="Unknown hypergradient normalization"):
        normalize_hypergradient(g, "layer", t)
    with pytest.raises(ValueError, match="gradient norms"):
        normalize_hypergradient(g, "example", t)


# ----- λ = f(φ)

def _numpy_sgd_on_phi(parametrization, init, ids_grads, lr, n):
    scale = 2.0 * init
    if parametrization == "softplus":
        f = lambda p: np.log1p(np.exp(p))
        df = lambda p: 1 / (1 + np.exp(-p))
        phi = np.full(n, np.log(np.expm1(init)))
    else:
        f = lambda p: scale / (1 + np.exp(-p))
        df = lambda p: scale * np.exp(-p) / (1 + np.exp(-p)) ** 2
        phi = np.zeros(n)
    for ids, g in ids_grads:
        np.subtract.at(phi, ids, lr * g * df(phi[ids]))
    return f(phi)


@pytest.mark.parametrize("parametrization", ["softplus", "sigmoid"])
def test_parametrized_lambda_follows_sgd_on_phi_with_the_chain_rule(parametrization):
    rng = np.random.default_rng(3)
    table = ExampleWeights(12, initial_value=0.7, optimizer=keras.optimizers.SGD(0.5),
                           parametrization=parametrization, dtype=tf.float64)
    np.testing.assert_allclose(table.to_numpy(), 0.7, rtol=1e-12)
    steps = [(rng.choice(12, 5, replace=False), rng.normal(size=5) * 3) for _ in range(30)]
    for ids, g in steps:
        table.apply_gradients(tf.constant(ids), tf.constant(g))
    expected = _numpy_sgd_on_phi(parametrization, 0.7, steps, 0.5, 12)
    np.testing.assert_allclose(table.to_numpy(), expected, rtol=1e-10)
    assert table.to_numpy().min() > 0
    if parametrization == "sigmoid":
        assert table.to_numpy().max() < 1.4


def test_parametrized_table_restores_phi_and_its_optimizer():
    table = ExampleWeights(10, initial_value=1.0, optimizer=MaskedAdam(0.1), parametrization="softplus")
    table.apply_gradients(tf.constant([1, 2, 3]), tf.constant([1.0, -1.0, 2.0]))
    path = tf.train.Checkpoint(weights=table).save(os.path.join(tempfile.mkdtemp(), "ckpt"))
    restored = ExampleWeights(10, initial_value=1.0, optimizer=MaskedAdam(0.1), parametrization="softplus")
    tf.train.Checkpoint(weights=restored).restore(path).assert_consumed()
    for t in (table, restored):
        t.apply_gradients(tf.constant([2, 4]), tf.constant([0.5, 0.5]))
    np.testing.assert_array_equal(restored.to_numpy(), table.to_numpy())


def test_parametrization_needs_a_positive_initial_value():
    with pytest.raises(ValueError, match="initial_value > 0"):
        ExampleWeights(3, initial_value=0.0, parametrization="softplus")
    with pytest.raises(ValueError, match="parametrization must be one of"):
        ExampleWeights(3, parametrization="exp")


# ----- the trainer's variant paths

def _hypergradient(config, outer_step=3):
    """(ids, dL_val/dλ) after training θ with λ = 1 (no Λ step: every variant is compared at the same θ)."""
    trainer = moons_trainer(dataclasses.replace(config, weight_warmup=config.steps))
    trainer.run()
    return trainer.hypergradient(outer_step)


def test_variant_path_with_the_algorithms_own_rows_equals_the_papers_path():
    """The weak-view path puts the trained rows into H as weighted rows and the influence rows at weight 0:
    with Pseudo-Label's single view (weak features = strong features) it must give the paper's numbers."""
    config = small_config(steps=60)
    ids, paper = _hypergradient(config)
    ids_weak, weak = _hypergradient(dataclasses.replace(config, influence_view="weak"))
    np.testing.assert_array_equal(ids, ids_weak)
    np.testing.assert_allclose(weak, paper, rtol=1e-4, atol=1e-12)
    assert np.abs(paper).max() > 0


def test_a_cold_target_temperature_recovers_hard_pseudo_labels():
    config = small_config(steps=60)
    _, paper = _hypergradient(config)
    _, cold = _hypergradient(dataclasses.replace(config, influence_target_temperature=1e-4))
    np.testing.assert_allclose(cold, paper, rtol=1e-3, atol=1e-9)
    _, one = _hypergradient(dataclasses.replace(config, influence_target_temperature=1.0))
    assert np.abs(one).max() < 1e-6 * np.abs(paper).max()  # Pseudo-Label at T = 1: targets = predictions


def test_normalizations_in_the_trainer_match_the_function_on_the_papers_hypergradient():
    config = small_config(steps=60)
    _, paper = _hypergradient(config)
    _, batch = _hypergradient(dataclasses.replace(config, hypergradient_normalization="batch"))
    np.testing.assert_allclose(batch, (paper - paper.mean()) / paper.std(), rtol=1e-3, atol=1e-4)
    _, reversed_batch = _hypergradient(dataclasses.replace(config, hypergradient_normalization="batch",
                                                           reverse_hypergradient=True))
    np.testing.assert_allclose(reversed_batch, -batch, rtol=1e-6)


@pytest.mark.parametrize("overrides, message", [
    (dict(weighting="single", hypergradient_normalization="batch"), "per-example"),
    (dict(influence_scope="last_block", influence="cg", influence_view="weak"), "head only"),
    (dict(weight_parametrization="sigmoid", weight_init=0.0), "weight_init > 0"),
    (dict(influence_target_temperature=-1.0), "influence_target_temperature"),
    (dict(hypergradient_normalization="layer"), "hypergradient_normalization"),
])
def test_bad_variant_configurations_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        small_config(**overrides).validate(10, 50, 30)
