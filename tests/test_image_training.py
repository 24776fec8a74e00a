"""Image SSL wiring: weighted loss = Σ λ_u ∇ℓ_u / |U'|, weighting=none = the base algorithm,
WRN-28-2 UDA and FixMatch-CTA steps with weights on mock CIFAR-10, the Table 1 flag files."""
import glob
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import ROOT, Killed, config_of, kill_at

from influence_ssl.augment import weak as weak_lib
from influence_ssl.data import SSLData
from influence_ssl.models import small_cnn, two_layer_mlp
from influence_ssl.pergrad import per_example_gradients
from influence_ssl.runs import build, presets
from influence_ssl.ssl import FixMatch
from influence_ssl.ssl.losses import soft_cross_entropy, sparse_cross_entropy
from influence_ssl.trainer import TrainConfig, Trainer
from influence_ssl.trainer.image_source import AugmentedImageSource


def random_images(rng, n, size=8, channels=1):
    return rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)


def tiny_image_data(rng, n_unlabeled=12):
    x = random_images(rng, 10 + 10 + n_unlabeled + 10)
    y = np.tile(np.arange(10), 5)[: len(x)].astype(np.int64)
    return SSLData("tiny", 10, x[:10], y[:10], x[20:20 + n_unlabeled], np.arange(n_unlabeled, dtype=np.int64),
                   y[20:20 + n_unlabeled], x[10:20], y[10:20], x[-10:], y[-10:])


def identity_augment(images, seed):
    return images


def fixed_source(data):
    return AugmentedImageSource(data, 10, 12, 10, seed=0, weak=identity_augment, strong=identity_augment)


def test_weighted_unsupervised_gradient_is_mean_of_lambda_times_per_example_gradients():
    """∇θ (1/|U'|) Σ λ_u ℓ_U(u) equals Σ λ_u ∇ℓ_u / |U'| with per-example gradients from pergrad."""
    rng = np.random.default_rng(0)
    data = tiny_image_data(rng)
    model = two_layer_mlp(num_classes=10, input_dim=64, seed=0)
    flat = lambda images: tf.reshape(images, [tf.shape(images)[0], -1])
    source = AugmentedImageSource(data, 10, 12, 10, seed=0, weak=identity_augment, strong=identity_augment,
                                  scale=lambda x: flat(tf.cast(x, tf.float32) / 255.0))
    config = TrainConfig(steps=1, labeled_batch=10, unlabeled_batch=12, validation_batch=10, log_every=1,
                         eval_every=1, checkpoint_every=1)
    trainer = Trainer(model, FixMatch(threshold=0.0), source, config, verbose=False)
    batch = source.train_batch(tf.constant(0, tf.int64))
    lam = tf.constant(rng.uniform(0.0, 3.0, 12), tf.float32)
    with tf.GradientTape() as tape:
        out = FixMatch(threshold=0.0).losses(model, batch, training=False, step=0)
        _, _, unsupervised = trainer.training_loss(out, lam)
    grads = tape.gradient(unsupervised, model.trainable_variables)

    targets = tf.stop_gradient(out.unlabeled_targets)
    rows = per_example_gradients(model, lambda logits, t: soft_cross_entropy(t, logits), batch["unlabeled_strong"],
                                 targets=targets, method="fast")
    for g, r in zip(grads, rows):
        expected = tf.tensordot(lam, r, axes=1) / 12.0
        np.testing.assert_allclose(g.numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)


def test_weighting_none_takes_the_base_fixmatch_step():
    """One θ step of the trainer with --weighting=none equals one SGD step on FixMatch's own loss
    L_x + mean(mask·CE) + wd Σ_kernels ½||w||², written out independently here."""
    rng = np.random.default_rng(1)
    data = tiny_image_data(rng)
    config = TrainConfig(steps=1, labeled_batch=10, unlabeled_batch=12, validation_batch=10, weighting="none",
                         optimizer="sgd", lr=0.1, weight_decay=5e-4, log_every=1, eval_every=1,
                         checkpoint_every=1)
    model = small_cnn(10, input_shape=(8, 8, 1), width=4, seed=3)
    reference = small_cnn(10, input_shape=(8, 8, 1), width=4, seed=3)
    source = fixed_source(data)
    batch = source.train_batch(tf.constant(0, tf.int64))
    Trainer(model, FixMatch(0.0), source, config, verbose=False).run()

    with tf.GradientTape() as tape:
        logits = reference(tf.concat([batch["labeled_x"], batch["unlabeled_weak"], batch["unlabeled_strong"]], 0),
                           training=True)
        lx, lw, ls = tf.split(logits, [10, 12, 12])
        pseudo = tf.argmax(tf.stop_gradient(lw), axis=-1)
        loss = tf.reduce_mean(sparse_cross_entropy(batch["labeled_y"], lx)) + tf.reduce_mean(
            sparse_cross_entropy(pseudo, ls))
        loss += 5e-4 * tf.add_n([0.5 * tf.reduce_sum(v ** 2) for v in reference.trainable_variables
                                 if "kernel" in v.name])
    grads = tape.gradient(loss, reference.trainable_variables)
    for v, g, trained in zip(reference.trainable_variables, grads, model.trainable_variables):
        np.testing.assert_allclose(trained.numpy(), (v - 0.1 * g).numpy(), rtol=1e-4, atol=1e-6)


@pytest.fixture()
def mock_cifar(tmp_path):
    builder = tfds.builder("cifar10", data_dir=str(tmp_path))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
    with tfds.testing.mock_data(num_examples=40, data_dir=str(tmp_path)):
        yield str(tmp_path)


@pytest.mark.parametrize("algorithm", ["uda", "fixmatch"])
def test_wrn_28_2_with_weights_runs_on_mock_cifar10(mock_cifar, tmp_path, algorithm):
    """The GPU configuration's code path (WRN-28-2, CIFAR-10 from TFDS, augmentations, EMA, Λ steps)."""
    config = config_of([f"--algorithm={algorithm}", "--dataset=cifar10", f"--data_dir={mock_cifar}", "--num_labeled=10",
                        "--num_validation=10", "--steps=4", "--batch=2", "--uratio=2", "--inner_steps=2",
                        "--weight_warmup=0", "--validation_batch=4", "--eval_every=4", "--log_every=4",
                        "--checkpoint_every=4", "--seed=1"] + (["--augment=cta"] if algorithm == "fixmatch" else []))
    assert config.model.arch == "wrn28_2" and config.train.unlabeled_batch == 4
    data, _, _ = build.load_data(config)
    trainer = build.make_trainer(config, data, train_dir=str(tmp_path / "run"), verbose=False)
    assert trainer.model.count_params() > 1_400_000
    results = trainer.run()
    assert results["step"] == 4 and 0.0 <= results["test_accuracy"] <= 1.0
    assert trainer.weights.optimizer.iterations.numpy() == 2  # two Λ steps
    if algorithm == "fixmatch":  # CTAugment learned from its probes, and is checkpointed
        assert not np.all(trainer.source.probe.rates.numpy() == 1.0)
        checkpoint = tf.train.latest_checkpoint(str(tmp_path / "run" / "ckpt"))
        saved = [name for name, _ in tf.train.list_variables(checkpoint)]
        assert any(name.startswith("data_state/") for name in saved), saved


def table1_config(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    return config_of([f"--flagfile={path}"])


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "experiments/configs/table1/*.cfg"))),
                         ids=os.path.basename)
def test_table1_flag_files_resolve_to_the_paper_values(path, monkeypatch):
    c = table1_config(path, monkeypatch)
    t = c.train
    assert c.data.num_validation == 1024 and c.model.arch == "wrn28_2"
    assert c.data.with_extra == (c.data.dataset == "svhn" and c.algorithm.algorithm == "fixmatch")
    if t.weighting == "per_example":
        assert t.weight_lr == 0.01 and t.weight_warmup == 20_000 and t.validation_batch == 320
        if c.algorithm.algorithm == "fixmatch":  # the paper gives these for UDA only: say so in the file
            with open(path) as f:
                assert "ASSUMED" in f.read()
    if c.algorithm.algorithm == "fixmatch":
        assert (t.steps, t.labeled_batch, c.uratio, t.unlabeled_batch, t.lr, t.ema_decay) == (2**20, 64, 7, 448, 0.03,
                                                                                              0.999)
        assert t.inner_steps == 512 and c.algorithm.augment == "cta" and c.algorithm.confidence == 0.95
    else:
        assert (t.steps, t.labeled_batch, c.uratio, t.lr_warmup, t.min_lr_ratio) == (400_000, 64, 5, 20_000, 0.004)
        assert (t.inner_steps, t.ema_decay, c.algorithm.uda_preset) == (100, 0.0, "paper")
        expected_init = 5.0 if (c.data.dataset == "cifar10" and c.data.num_labeled == 250
                                and t.weighting == "per_example") else 1.0
        assert t.weight_init == expected_init


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "experiments/configs/table1_authors/*.cfg"))),
                         ids=os.path.basename)
def test_table1_authors_flag_files_run_the_authors_code(path, monkeypatch):
    """The FixMatch-CTA cells as the authors' README runs them: every switch, N = 512, η = 0.01, V' = 448 from 1000
    validation images, no warm-up, frozen CTA rates, SVHN without extra."""
    c = table1_config(path, monkeypatch)
    t = c.train
    assert (c.recipe, c.algorithm.algorithm, c.algorithm.augment, c.algorithm.cta_frozen) == (
        "authors_code", "fixmatch", "cta", True)
    assert (c.data.num_validation, t.validation_batch, t.validation_draw, c.data.with_extra) == (
        1000, 448, "replacement", False)
    assert (t.inner_steps, t.weight_lr, t.weight_warmup, t.weight_step_at_start, t.weight_batch) == (
        512, 0.01, 0, True, "theta")
    assert (t.madam_step_count, t.madam_epsilon, t.madam_rows, t.weight_max) == ("per_example", 1e-8, "sampled", 2.0)
    assert (t.influence_rows, t.influence_kernel_only, t.influence_hessian_l2, t.influence_damping,
            t.influence_forward_mode) == ("raw_ce", True, "unit", 0.0, "training")
    assert (t.steps, t.labeled_batch, t.unlabeled_batch, t.lr, t.ema_decay) == (2**20, 64, 448, 0.03, 0.999)
    assert t.weighting == ("none" if "_base_" in path else "per_example")


def test_table1_has_every_cell_the_paper_reports():
    names = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "experiments/configs/table1/*.cfg"))}
    for ds in ["cifar10", "svhn"]:
        for n in [250, 500, 1000, 2000, 4000]:
            assert {f"uda_{ds}_{n}.cfg", f"uda_base_{ds}_{n}.cfg"} <= names
        for n in [250, 1000, 4000]:
            assert {f"fixmatch_cta_{ds}_{n}.cfg", f"fixmatch_cta_base_{ds}_{n}.cfg"} <= names


def test_image_run_with_ema_resumes_exactly(tmp_path):
    """Kill and resume: model, EMA, optimizer, Λ and M-Adam slots all come back."""
    config = config_of(["--algorithm=fixmatch", "--dataset=digits", "--confidence=0", "--steps=8", "--batch=10",
                        "--uratio=2", "--inner_steps=3", "--weight_warmup=0", "--eval_every=4", "--log_every=4",
                        "--checkpoint_every=4"])  # τ = 0: every example has a hypergradient, so λ moves
    assert config.train.ema_decay > 0
    data, _, _ = build.load_data(config)

    def trainer(name, callbacks=()):
        return build.make_trainer(config, data, train_dir=str(tmp_path / name), verbose=False, callbacks=callbacks)

    whole = trainer("whole")
    whole.run()

    with pytest.raises(Killed):
        trainer("resumed", [kill_at(6)]).run()  # after the checkpoint of step 4 and a Λ step
    resumed = trainer("resumed")
    resumed.run()
    for a, b in zip(whole.model.weights + whole.ema.shadows, resumed.model.weights + resumed.ema.shadows):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(whole.weights.to_numpy(), resumed.weights.to_numpy())
    assert np.ptp(whole.weights.to_numpy()) > 0


def test_ctaugment_rates_are_in_the_run_checkpoint(tmp_path):
    """CTAugment's rates (the source's state) go to the trainer's checkpoint and come back in a new trainer."""
    config = config_of(["--algorithm=fixmatch", "--dataset=digits", "--augment=cta", "--batch=10", "--uratio=2"])
    data, _, _ = build.load_data(config)
    saved = build.make_trainer(config, data, verbose=False)
    rates = saved.source.probe.rates
    rates.assign(np.random.default_rng(0).uniform(0, 1, rates.shape))
    path = saved.checkpoint.write(str(tmp_path / "ckpt"))
    restored = build.make_trainer(config, data, verbose=False)
    assert np.all(restored.source.probe.rates.numpy() == 1.0)
    restored.checkpoint.read(path).assert_consumed()
    np.testing.assert_array_equal(restored.source.probe.rates.numpy(), rates.numpy())


@pytest.fixture
def eager_functions():
    """tf.functions run as Python: the views are compiled once per process, and this reads the flip probability
    at each call."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.mark.parametrize("algorithm", ["fixmatch", "uda"])
@pytest.mark.parametrize("dataset,flips", [("digits", False), ("svhn", False), ("cifar10", True)])
def test_only_mirror_invariant_datasets_are_flipped(monkeypatch, eager_functions, algorithm, dataset, flips):
    """Digits (sklearn, SVHN) are never mirrored, in the weak or the strong view: with the random flip
    made certain, their views do not change; CIFAR-10's do."""
    weak, strong, _ = build.make_augmentations(presets.resolve({"algorithm": algorithm, "dataset": dataset}))
    images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 1)), tf.float32)
    seed = tf.constant([3, 4], tf.int64)
    plain = [augment(images, seed).numpy() for augment in (weak, strong)]
    monkeypatch.setattr(weak_lib, "FLIP_PROBABILITY", 1.0)
    always_mirrored = [augment(images, seed).numpy() for augment in (weak, strong)]
    for before, after in zip(plain, always_mirrored):
        assert np.array_equal(before, after) != flips


def test_theta_optimizer_is_tf1_nesterov_momentum_under_the_uda_warmup():
    """FixMatch and UDA train θ with TF1's MomentumOptimizer(use_nesterov=True): accum = μ·accum + g,
    θ -= lr_t·(g + μ·accum). During UDA's linear warm-up this differs from tf_keras SGD."""
    from influence_ssl.trainer.optimizers import make_theta_optimizer

    config = TrainConfig(steps=100, optimizer="nesterov", lr=0.03, lr_schedule="uda_cosine", lr_warmup=20)
    optimizer = make_theta_optimizer(config)
    var = tf.Variable([1.0, -2.0], dtype=tf.float64)
    theta, accum = np.array([1.0, -2.0]), np.zeros(2)
    for step in range(5):
        grad = np.array([0.5, 1.5]) * (step + 1)
        optimizer.apply_gradients([(tf.constant(grad), var)])
        lr = 0.03 * step / 20  # linear warm-up from 0, evaluated at the step before the increment
        accum = 0.9 * accum + grad
        theta = theta - lr * (grad + 0.9 * accum)
    np.testing.assert_allclose(var.numpy(), theta, rtol=1e-6)


@pytest.mark.parametrize("build", [lambda: small_cnn(10, (8, 8, 1), seed=0),
                                   lambda: __import__("influence_ssl.models", fromlist=["x"]).wide_resnet_28_2(
                                       10, variant="fixmatch", input_shape=(32, 32, 3), seed=0)],
                         ids=["small_cnn", "wrn28_2_fixmatch"])
def test_kernel_decay_takes_every_kernel_and_nothing_else(build):
    """FixMatch decays conv and dense kernels only: here, exactly the variables of rank >= 2 (conv
    biases, BN gamma/beta and the head's bias are vectors)."""
    from influence_ssl.trainer.steps import decayed_variables

    model = build()
    got = {id(v) for v in decayed_variables(model, "kernels")}
    assert got == {id(v) for v in model.trainable_variables if v.shape.rank >= 2}
    assert {id(v) for v in decayed_variables(model, "all")} == {id(v) for v in model.trainable_variables}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "experiments/configs/ood/*.cfg"))),
                         ids=os.path.basename)
def test_ood_flag_files_hold_out_oliver_et_als_non_animal_classes(path, monkeypatch):
    c = table1_config(path, monkeypatch)
    assert (c.data.dataset, c.algorithm.algorithm, c.algorithm.augment) == ("cifar10", "fixmatch", "cta")
    assert c.data.ood_classes == (0, 1, 8, 9) and c.data.num_labeled == 2400 and c.data.ood
    assert c.data.ood_fraction == int(re.search(r"ood(\d+)\.cfg$", path).group(1)) / 100
    assert c.train.inner_steps == 512 and c.train.weight_lr == 0.01
