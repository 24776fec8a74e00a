"""Alg. 1 trainer: direction of the Λ step, resume == uninterrupted, bad input, NaN handling."""
import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from conftest import Killed, kill_at

from influence_ssl.data import SSLData, make_synthetic
from influence_ssl.models import Classifier, two_layer_mlp
from influence_ssl.ssl import PseudoLabel, SSLAlgorithm, SSLLosses
from influence_ssl.ssl.losses import soft_cross_entropy, sparse_cross_entropy
from influence_ssl.trainer import CheckpointError, ConfigError, InMemorySource, TrainConfig, Trainer, TrainingDiverged


class FixedTargets(SSLAlgorithm):
    """ℓ_U(u) = CE(target[id_u], f(u)) with targets chosen by the test."""

    def __init__(self, targets):
        self.targets = tf.constant(targets, tf.float32)

    def losses(self, model, batch, *, training, step, update_state=None):
        n = tf.shape(batch["labeled_x"])[0]
        features = model.features(tf.concat([batch["labeled_x"], batch["unlabeled_x"]], 0), training=training)
        logits = model.head(features)
        targets = tf.gather(self.targets, batch["unlabeled_ids"])
        return SSLLosses(
            labeled=sparse_cross_entropy(batch["labeled_y"], logits[:n]),
            unlabeled=soft_cross_entropy(targets, logits[n:]),
            labeled_features=features[:n], labeled_targets=tf.one_hot(batch["labeled_y"], 2),
            unlabeled_features=features[n:], unlabeled_targets=targets)


def linear_model(seed=0):
    """Features = inputs: the whole model is the last layer, so the inner problem is convex."""
    backbone = keras.Sequential([keras.layers.InputLayer(input_shape=(2,)),
                                 keras.layers.Lambda(lambda x: x)])
    model = Classifier(backbone, 2, head_initializer=keras.initializers.GlorotUniform(seed))
    model.build((None, 2))
    return model


def small_config(**overrides):
    config = TrainConfig(steps=120, labeled_batch=10, unlabeled_batch=50, validation_batch=30, inner_steps=10,
                         weight_warmup=40, lr=0.01, unlabeled_rampup=20, log_every=40, eval_every=40,
                         checkpoint_every=40, weight_decay=1e-3)
    return dataclasses.replace(config, **overrides)


def moons_trainer(config, train_dir=None, callbacks=(), data=None):
    data = data or make_synthetic("moons", 0, num_unlabeled=200, num_test=300)
    source = InMemorySource(data, config.labeled_batch, config.unlabeled_batch, config.validation_batch, seed=0)
    return Trainer(two_layer_mlp(seed=0), PseudoLabel(), source, config, train_dir=train_dir,
                   callbacks=callbacks, verbose=False)


def validation_loss(model, data):
    return float(tf.reduce_mean(sparse_cross_entropy(data.val_y, model(data.val_x))))


def test_outer_step_moves_lambda_to_lower_the_validation_loss():
    """On a convex problem (linear model, full batches, strong L2), one Λ step followed by
    re-training θ to optimality lowers the validation loss, against the same run without it."""
    rng = np.random.default_rng(0)

    def draw(n):
        y = rng.integers(0, 2, n)
        return (rng.normal(size=(n, 2)) + 0.7 * (2 * y[:, None] - 1)).astype(np.float32), y

    lx, ly = draw(20)
    vx, vy = draw(40)
    ux, uy = draw(10)
    targets = np.eye(2)[uy]
    targets[5:] = 1.0 - targets[5:]  # half of the unlabeled targets are wrong
    data = SSLData("convex", 2, lx, ly, ux, np.arange(10), uy, vx, vy, vx, vy)

    def run(weighting):
        # SGD on a strongly convex objective converges linearly: θ is at the optimum both when
        # the Λ step is taken (step 1500) and at the end (step 2999).
        config = TrainConfig(steps=2999, labeled_batch=20, unlabeled_batch=10, validation_batch=40,
                             inner_steps=1500, weight_warmup=0, optimizer="sgd", lr=0.5, weight_decay=0.05,
                             weighting=weighting, weight_lr=0.1, log_every=2999, eval_every=2999,
                             checkpoint_every=2999)
        trainer = Trainer(linear_model(), FixedTargets(targets), InMemorySource(data, 20, 10, 40, seed=0),
                          config, verbose=False)
        trainer.run()
        return trainer

    ours, fixed = run("per_example"), run("none")
    lam = ours.weights.to_numpy()
    assert np.all(lam != 1.0)  # exactly one Λ step, every λ moved
    assert validation_loss(ours.model, data) < validation_loss(fixed.model, data) - 1e-5
    assert lam[5:].mean() < lam[:5].mean()  # wrong targets lose weight on average


def test_resume_equals_uninterrupted_run(tmp_path):
    config = small_config()
    whole = moons_trainer(config, train_dir=str(tmp_path / "whole"))
    whole.run()

    broken = moons_trainer(small_config(), train_dir=str(tmp_path / "resumed"), callbacks=[kill_at(90)])
    with pytest.raises(Killed):
        broken.run()
    resumed = moons_trainer(small_config(), train_dir=str(tmp_path / "resumed"))
    assert int(resumed.step.numpy()) == 0
    resumed.run()  # restores step 80, replays 80..90 and finishes
    for a, b in zip(whole.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(whole.weights.to_numpy(), resumed.weights.to_numpy())
    assert not np.all(whole.weights.to_numpy() == 1.0)  # Λ did move
    with open(tmp_path / "resumed" / "results.json") as f:
        resumed_results = json.load(f)
    with open(tmp_path / "whole" / "results.json") as f:
        whole_results = json.load(f)
    assert resumed_results["step"] == 120
    # The evaluation history (for the median of the last 20) survives the resume too.
    assert [h["step"] for h in resumed_results["history"]] == [40, 80, 120]
    assert resumed_results["history"] == whole_results["history"]


def test_evaluations_follow_eval_every_even_between_log_steps():
    """eval_every = 30 with log_every = 40: evaluations at 30, 60, 90, 120 (they once ran only at steps that were
    also log steps, here 120 alone; digits' 100/250 evaluated at 500 and 1000 only)."""
    results = moons_trainer(small_config(steps=120, log_every=40, eval_every=30, weighting="none")).run()
    assert [h["step"] for h in results["history"]] == [30, 60, 90, 120]
    results = moons_trainer(small_config(steps=120, log_every=30, eval_every=40, weighting="none")).run()
    assert [h["step"] for h in results["history"]] == [40, 80, 120]


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    moons_trainer(small_config(steps=40), train_dir=str(tmp_path)).run()
    with pytest.raises(ConfigError, match="weight_lr"):
        moons_trainer(small_config(steps=40, weight_lr=0.5), train_dir=str(tmp_path)).run()
    # The cosine schedule and UDA's TSA depend on `steps`: a resumed run may not change it.
    with pytest.raises(ConfigError, match="steps: checkpoint 40 vs now 80"):
        moons_trainer(small_config(steps=80), train_dir=str(tmp_path)).run()
    # Logging intervals may change.
    assert moons_trainer(small_config(steps=40, log_every=20), train_dir=str(tmp_path)).run()["step"] == 40


@pytest.mark.parametrize("config_json", [None, "{not json", "[1, 2]"])
def test_checkpoint_without_a_readable_config_is_not_called_another_configuration(tmp_path, config_json):
    moons_trainer(small_config(steps=40), train_dir=str(tmp_path)).run()
    os.remove(tmp_path / "config.json")
    if config_json is not None:
        (tmp_path / "config.json").write_text(config_json)
    with pytest.raises(CheckpointError, match="not a run of this project, or it is corrupt"):
        moons_trainer(small_config(steps=40), train_dir=str(tmp_path)).run()


def test_corrupt_checkpoint_gets_a_clear_error(tmp_path):
    moons_trainer(small_config(steps=40), train_dir=str(tmp_path)).run()
    for name in os.listdir(tmp_path / "ckpt"):
        if ".data-" in name:
            (tmp_path / "ckpt" / name).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="Cannot restore"):
        moons_trainer(small_config(steps=40), train_dir=str(tmp_path)).run()


@pytest.mark.parametrize("overrides, message", [
    ({"weighting": "everything"}, "--weighting"),
    ({"influence": "magic"}, "--influence"),
    ({"weight_optimizer": "rmsprop"}, "--weight_optimizer"),
    ({"unlabeled_batch": 5000}, "larger than"),
    ({"validation_batch": 31}, "larger than"),  # a labeled batch larger than its set repeats it (test_sampling)
    ({"labeled_batch": -1}, ">= 1"),
    ({"weight_lr": -0.1}, ">= 0"),
    ({"weight_lr": float("nan")}, "finite"),
    ({"lr": float("inf")}, "finite"),
    ({"weight_init": float("-inf")}, "finite"),
    ({"lr": 0.0}, "> 0"),
    ({"ema_decay": 1.0}, r"\[0, 1\)"),
    ({"min_lr_ratio": 1.5}, r"\[0, 1\]"),
])
def test_bad_configuration_is_refused_before_training(overrides, message):
    config = small_config(**overrides)
    with pytest.raises(ConfigError, match=message):
        config.validate(num_labeled=10, num_unlabeled=200, num_validation=30)


def test_validation_overlapping_labeled_is_refused():
    data = make_synthetic("moons", 0, num_unlabeled=50, num_test=10)
    data.val_x[3] = data.labeled_x[1]
    with pytest.raises(ValueError, match="disjoint"):
        InMemorySource(data, 10, 10, 10, seed=0).check_disjoint()


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    def poison(trainer, k):
        if int(trainer.step.numpy()) == 60:
            trainer.model.head.kernel.assign(tf.fill(trainer.model.head.kernel.shape, np.nan))

    trainer = moons_trainer(small_config(), train_dir=str(tmp_path), callbacks=[poison])
    with pytest.raises(TrainingDiverged, match="NaN/Inf at step 60"):
        trainer.run()
    latest = tf.train.latest_checkpoint(str(tmp_path / "ckpt"))
    assert latest.endswith("-40")
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), name


def test_weighting_none_keeps_lambda_and_single_learns_one_value():
    fixed = moons_trainer(small_config(weighting="none", weight_init=0.5))
    fixed.run()
    np.testing.assert_array_equal(fixed.weights.to_numpy(), [0.5])
    single = moons_trainer(small_config(weighting="single"))
    single.run()
    assert single.weights.to_numpy().shape == (1,) and single.weights.to_numpy()[0] != 1.0


def _newton_optimum(lx, ly, ux, targets, lam, wd, iterations=50):
    """The exact optimum (float64 Newton) of the trainer's inner objective on a linear 2-class head:
    mean_i CE(y_i) + (1/|U|) Σ_u λ_u CE(t_u) + wd·½||W||² (kernel only). Returns W [2, 2], b [2]."""
    x = np.concatenate([lx, ux]).astype(np.float64)
    xt = np.concatenate([x, np.ones((len(x), 1))], 1)                     # [N, 3]
    t = np.concatenate([np.eye(2)[ly], targets]).astype(np.float64)      # [N, 2]
    w = np.concatenate([np.full(len(lx), 1 / len(lx)), lam / len(ux)])  # [N]
    decay = np.array([wd, wd, 0.0])                                        # no decay on the bias row
    theta = np.zeros((3, 2))
    for _ in range(iterations):
        z = xt @ theta
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = xt.T @ (w[:, None] * (p - t)) + decay[:, None] * theta
        hess = np.zeros((6, 6))
        for i in range(len(x)):
            c = np.diag(p[i]) - np.outer(p[i], p[i])
            hess += w[i] * np.kron(np.outer(xt[i], xt[i]), c)
        hess += np.diag(np.repeat(decay, 2)) + 1e-9 * np.eye(6)  # the logit shift of the bias is free
        theta -= np.linalg.solve(hess, grad.ravel()).reshape(3, 2)
    return theta[:2], theta[2]


@pytest.mark.parametrize("binary_reparam", [True, False])
def test_trainer_hypergradient_matches_finite_differences_of_the_retrained_validation_loss(binary_reparam):
    """dL_val/dλ_u from the trainer (mean-normalised loss, kernel decay, App. D reparametrization or not)
    against central differences of the validation loss after re-solving the convex inner problem at
    λ_u ± ε. A wrong decay mapping of the reparametrized head (wd instead of 2·wd) fails here."""
    rng = np.random.default_rng(3)

    def draw(n):
        y = rng.integers(0, 2, n)
        return (rng.normal(size=(n, 2)) + 0.5 * (2 * y[:, None] - 1)).astype(np.float32), y

    (lx, ly), (vx, vy), (ux, uy) = draw(12), draw(30), draw(8)
    targets = np.eye(2)[uy].astype(np.float32)
    targets[:3] = 1.0 - targets[:3]
    lam = rng.uniform(0.5, 2.0, 8)
    wd = 0.2
    data = SSLData("convex", 2, lx, ly, ux, np.arange(8), uy, vx, vy, vx, vy)
    config = TrainConfig(steps=1, labeled_batch=12, unlabeled_batch=8, validation_batch=30, inner_steps=1,
                         weight_warmup=0, optimizer="sgd", lr=0.1, weight_decay=wd, log_every=1, eval_every=1,
                         checkpoint_every=1, binary_reparam=binary_reparam)
    trainer = Trainer(linear_model(), FixedTargets(targets), InMemorySource(data, 12, 8, 30, seed=0), config,
                      verbose=False)
    trainer.weights.values.assign(lam.astype(np.float32))
    kernel, bias = _newton_optimum(lx, ly, ux, targets, lam, wd)
    trainer.model.head.kernel.assign(kernel.astype(np.float32))
    trainer.model.head.bias.assign(bias.astype(np.float32))
    ids, grads = trainer.hypergradient(1)

    def val_loss(lam_u):
        w, b = _newton_optimum(lx, ly, ux, targets, lam_u, wd)
        z = vx.astype(np.float64) @ w + b
        z -= z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(vy)), vy]))

    eps = 1e-4
    for u, g in zip(ids, grads):
        up, down = lam.copy(), lam.copy()
        up[u] += eps
        down[u] -= eps
        np.testing.assert_allclose(g, (val_loss(up) - val_loss(down)) / (2 * eps), rtol=2e-3, atol=1e-7)


def test_the_permuted_control_trains_each_step_with_the_batchs_weights_shuffled():
    """--permute_weights: the θ step's λ are the batch's own values in another order, drawn from (seed, step):
    the learned weights' distribution without their assignment."""
    from influence_ssl.trainer.steps import Alg1Steps
    from influence_ssl.weights import ExampleWeights

    weights = ExampleWeights(10)
    weights.values.assign(tf.range(10, dtype=tf.float32) / 10)
    ids = tf.constant([7, 2, 5, 0, 9, 4])
    plain = Alg1Steps(None, None, weights, None).batch_weights(ids).numpy()
    np.testing.assert_allclose(plain, [0.7, 0.2, 0.5, 0.0, 0.9, 0.4], rtol=1e-6)
    permuted = Alg1Steps(None, None, weights, None, permute_weights=True, permutation_seed=3)
    first = permuted.batch_weights(ids).numpy()
    assert sorted(first) == sorted(plain) and not np.array_equal(first, plain)
    np.testing.assert_array_equal(permuted.batch_weights(ids).numpy(), first)  # a function of (seed, step)
    permuted.step.assign(1)
    assert not np.array_equal(permuted.batch_weights(ids).numpy(), first)
