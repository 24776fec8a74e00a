"""--recipe=authors_code against an independent numpy reference of the authors' Λ step (authors_reference.py,
written from docs/design/authors_code_reading.md), and one targeted test per switch that fails with that switch
at the paper's value.

The setup is a small conv net with batch norm on 8x8 class-patterned images, FixMatch with a threshold that masks
some rows, a weak view (identity) and a strong one (a one-pixel roll). The unlabeled set is a multiple of the
unlabeled batch, so no Λ batch straddles two epochs and none holds an id twice (the authors' code stores the
last occurrence of a repeated id, this package sums their gradients: the tests avoid the case).
"""
import functools
import json

import authors_reference as ref
import numpy as np
import pytest
import tensorflow as tf
from conftest import config_of, run_main

from influence_ssl import augment
from influence_ssl.data import SSLData
from influence_ssl.models import small_cnn
from influence_ssl.runs import build, presets
from influence_ssl.ssl import FixMatch
from influence_ssl.ssl.losses import sparse_cross_entropy
from influence_ssl.trainer import TrainConfig, Trainer
from influence_ssl.trainer.callbacks import LoopCallback
from influence_ssl.trainer.image_source import AugmentedImageSource

CLASSES, BATCH, WIDTH, THRESHOLD = 4, 8, 4, 0.4
# Every switch of the authors' code that is a TrainConfig field (CTA's is the data source's).
AUTHORS = {flag: value for name, fields in presets.AUTHORS_SWITCHES.items() if name != "frozen_cta"
           for flag, value in fields.items()}
# Each switch at the paper's value (TrainConfig's default).
PAPER = TrainConfig.defaults(AUTHORS)


def class_images(n_unlabeled=16, n_labeled=8, n_val=12, n_test=8, seed=0):
    """uint8 8x8 images: a class prototype plus noise, labels balanced; unlabeled ids 0..n_unlabeled-1."""
    rng = np.random.default_rng(seed)
    n = n_labeled + n_unlabeled + n_val + n_test
    y = np.arange(n) % CLASSES
    rng.shuffle(y)
    prototypes = rng.uniform(0, 255, size=(CLASSES, 8, 8, 1))
    x = np.clip(0.6 * prototypes[y] + 0.4 * rng.uniform(0, 255, size=(n, 8, 8, 1)), 0, 255).astype(np.uint8)
    y = y.astype(np.int64)
    a, b, c = n_labeled, n_labeled + n_unlabeled, n_labeled + n_unlabeled + n_val
    return SSLData("patterns", CLASSES, x[:a], y[:a], x[a:b], np.arange(n_unlabeled, dtype=np.int64), y[a:b],
                   x[b:c], y[b:c], x[c:], y[c:])


def weak_view(images, seed):
    return images


def strong_view(images, seed):
    return tf.roll(images, 1, axis=2)


def make_source(data, validation_draw="replacement", seed=0):
    return AugmentedImageSource(data, BATCH, BATCH, BATCH, seed=seed, weak=weak_view, strong=strong_view,
                                validation_draw=validation_draw)


def make_model():
    return small_cnn(CLASSES, input_shape=(8, 8, 1), width=WIDTH, seed=1)


@functools.lru_cache(maxsize=1)
def scratch_model():
    """One more network of the same shape, for forwards at given weights (set_weights before each use)."""
    return make_model()


def authors_config(**overrides):
    """Every switch of the authors' code on (the recipe's values), N = 2, five θ steps: Λ steps at j = 0, 2, 4."""
    values = {**AUTHORS, "steps": 5, "labeled_batch": BATCH, "unlabeled_batch": BATCH, "validation_batch": BATCH,
              "inner_steps": 2, "weight_lr": 0.5, "optimizer": "nesterov", "lr": 0.1, "weight_decay": 5e-4,
              "log_every": 1000, "eval_every": 1000, "checkpoint_every": 1000}
    values.update(overrides)
    return TrainConfig(**values)


def make_trainer(config, data=None, threshold=THRESHOLD, callbacks=()):
    data = class_images() if data is None else data
    return Trainer(make_model(), FixMatch(threshold), make_source(data, config.validation_draw), config,
                   verbose=False, callbacks=callbacks)


class Snapshots(LoopCallback):
    """θ (trainable weights and batch-norm statistics) before the first θ step and after θ steps `at`."""

    def __init__(self, at):
        self.at, self.weights = set(at), {}

    def on_train_begin(self, trainer):
        self.weights[int(trainer.step.numpy())] = trainer.model.get_weights()

    def on_step_end(self, trainer, step, logs):
        if step in self.at:
            self.weights[step] = trainer.model.get_weights()


def network_frame(weights, batch, val, training=True):
    """What the network gives the reference at one θ: the features of forwards A ([labeled; weak; strong]),
    B ([weak; strong]) and V (V'), each with its own batch statistics, and the head's kernel and bias."""
    copy = scratch_model()
    copy.set_weights(weights)
    views = [batch["labeled_x"], batch["unlabeled_weak"], batch["unlabeled_strong"]]
    features = lambda xs: copy.features(tf.concat(xs, 0), training=training).numpy()
    return {"ids": batch["unlabeled_ids"].numpy(), "labeled_y": batch["labeled_y"].numpy(),
            "forward_a": ref.split_rows(features(views), [len(v) for v in views]),
            "forward_b": ref.split_rows(features(views[1:]), [BATCH, BATCH]),
            "forward_v": features([val["val_x"]]), "val_y": val["val_y"].numpy(),
            "kernel": copy.head.kernel.numpy(), "bias": copy.head.bias.numpy()}


def theta_batch(source, j, inner_steps):
    """The Λ batch of the authors' code before θ step j: that step's batch and validation draw j // N."""
    k = tf.constant(j // inner_steps, tf.int64)
    return source.train_batch(tf.constant(j, tf.int64)), source.validation_batch(k)


def reference_chain(frames, num_examples, alpha, threshold=THRESHOLD, **substitute):
    """λ after the reference's Λ steps on `frames` in order, its state chained; `substitute` replaces a frame's
    entry by another of the same frame (e.g. forward_b="forward_a_rows")."""
    state = ref.AuthorsMAdam(num_examples, alpha)
    steps = []
    for frame in frames:
        f = {**frame, **{key: frame[value] for key, value in substitute.items()}}
        steps.append(ref.lambda_step(state, f["ids"], f["forward_a"], f["forward_b"], f["forward_v"], f["val_y"],
                                     f["kernel"], f["bias"], threshold))
    return state, steps


def assert_close(actual, expected, rtol=1e-4):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def assert_differs(actual, expected, rtol=1e-4):
    """Far outside assert_close's tolerance (or not finite)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert not np.all(np.isfinite(actual)) or np.abs(actual - expected).max() > 100 * rtol * np.abs(expected).max()


# ----- parity with the reference over a run -----------------------------------------------------------------

def test_trainer_lambda_equals_the_numpy_reference_over_three_lambda_steps():
    """Trainer.run under every authors switch (Λ steps at j = 0, N, 2N, each before its θ step on that step's
    batch) ends with the λ that the numpy reference computes from the same θ snapshots and batches, chaining its
    own Λ, m, v, t. The run exercises masked rows, revisited rows whose λ_old enters H, both signs of h and the
    clip; reference variants that miss a point of the authors' step (J from forward A, H without the mask,
    inference-mode features) do not match."""
    n, alpha = 2, 0.5
    config = authors_config(inner_steps=n, steps=2 * n + 1, weight_lr=alpha)
    snapshots = Snapshots([n, 2 * n])
    trainer = make_trainer(config, callbacks=[snapshots])
    trainer.run()
    assert sorted(snapshots.weights) == [0, n, 2 * n]
    frames, inference = [], []
    for j in (0, n, 2 * n):
        batch, val = theta_batch(trainer.source, j, n)
        frame = network_frame(snapshots.weights[j], batch, val)
        frames.append({**frame, "forward_a_rows": frame["forward_a"][1:]})
        inference.append(network_frame(snapshots.weights[j], batch, val, training=False))
    num_examples = trainer.source.num_unlabeled_ids
    state, steps = reference_chain(frames, num_examples, alpha)
    lam = trainer.weights.to_numpy()
    np.testing.assert_allclose(lam, state.lam, atol=1e-5)

    masks = np.stack([s["mask"] for s in steps])
    assert 0 < masks.mean() < 1  # masked rows: J unmasked, H with λ·mask
    assert all(len(set(s["lam_old"])) > 1 for s in steps[1:])  # λ_old not uniform in the later H
    grads = np.concatenate([s["grads"] for s in steps])
    assert (grads > 0).any() and (grads < 0).any()
    assert state.t.max() >= 2 and np.isin(state.lam, [0.0, 2.0]).any()  # revisits; the clip binds
    variants = [reference_chain(frames, num_examples, alpha, forward_b="forward_a_rows")[0],
                reference_chain(frames, num_examples, alpha, threshold=0.0)[0],
                reference_chain(inference, num_examples, alpha)[0]]
    for variant in variants:
        assert np.abs(variant.lam - lam).max() > 1e-3


# ----- M-Adam and the clip: madam_step_count, madam_epsilon, madam_rows, weight_max ------------------------

# Three Λ steps on six rows: row 0's |g| = 1e-6 is near ε; row 1 goes up three times (past 2 without the clip);
# row 2's g is exactly 0 on its second visit (its third step depends on t = 3); row 4 is first visited at the third
# step; row 5 never.
MADAM_STEPS = [([0, 1, 2], [1e-6, -0.3, 0.2]), ([1, 2, 3], [-0.5, 0.0, 0.4]), ([1, 4, 2], [-0.2, 0.7, -0.1])]


@pytest.mark.parametrize("reverted", [None, "madam_step_count", "madam_epsilon", "madam_rows", "weight_max"])
def test_lambda_update_equals_the_reference_madam_and_each_switch_matters(reverted):
    """The trainer's λ update (Alg1Steps.weight_update) under the authors' switches equals the reference's M-Adam
    (per-example t, ε = 1e-8, every sampled row stepped, clip to [0, 2]) step by step: a first step is ±η even
    at the third Λ step, a g = 0 row moves on its momentum, λ stops at 2. With any one switch at the paper's
    value it does not."""
    alpha = 0.5
    overrides = {} if reverted is None else {reverted: PAPER[reverted]}
    trainer = make_trainer(authors_config(weight_lr=alpha, **overrides), class_images(n_unlabeled=8))
    state = ref.AuthorsMAdam(6, alpha)
    ours, theirs = [], []
    for ids, grads in MADAM_STEPS:
        trainer.steps.weight_update(tf.constant(ids, tf.int64), tf.constant(grads, tf.float32))
        state.step(ids, grads)
        ours.append(trainer.weights.to_numpy()[:6].copy())
        theirs.append(state.lam.copy())
    ours, theirs = np.array(ours), np.array(theirs)
    if reverted is not None:
        assert np.abs(ours - theirs).max() > 1e-3
        return
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    first = ours[2, 4] - ours[1, 4]
    assert abs(abs(first) - alpha) < 1e-3 * alpha and np.sign(first) == -1  # row 4's first step, at step 3
    assert ours[1, 2] != ours[0, 2]  # row 2 moved with g = 0
    assert ours[2, 1] == 2.0 and ours[2, 5] == 1.0


# ----- the hypergradient: influence_rows, influence_kernel_only, influence_hessian_l2, influence_forward_mode

def hypergradient_setup(threshold=THRESHOLD, **overrides):
    """A trainer at its initial θ with λ spread over [0, 2], the Λ batch of j = 0, and the reference's state."""
    overrides.setdefault("weight_decay_on", "all")  # so that a kernel-and-bias H is regular too
    trainer = make_trainer(authors_config(**overrides), threshold=threshold)
    lam = np.random.default_rng(3).uniform(0.0, 2.0, trainer.source.num_unlabeled_ids).astype(np.float32)
    trainer.weights.values.assign(lam)
    batch, val = theta_batch(trainer.source, 0, 2)
    state = ref.AuthorsMAdam(len(lam), 0.5)
    state.lam[:] = lam
    return trainer, {**batch, **val}, state


def ours(trainer, batch):
    return trainer.steps.hypergradient(batch)[1].numpy()


def reference_grads(trainer, batch, state, training=True, l2=1.0):
    """The reference's h on the trainer's current θ (its state is left as it was)."""
    frame = network_frame(trainer.model.get_weights(), batch, batch, training)
    before = (state.lam.copy(), state.m.copy(), state.v.copy(), state.t.copy())
    out = ref.lambda_step(state, frame["ids"], frame["forward_a"], frame["forward_b"], frame["forward_v"],
                          frame["val_y"], frame["kernel"], frame["bias"], THRESHOLD, l2=l2)
    state.lam, state.m, state.v, state.t = before
    return out


def test_raw_ce_rows_are_unmasked_and_unscaled():
    """influence_rows=raw_ce: h equals the reference's, and rows below the confidence threshold get a nonzero h;
    with the paper's rows (the training loss's term: mask and 1/|U'| in it) those rows get exactly 0."""
    trainer, batch, state = hypergradient_setup()
    expected = reference_grads(trainer, batch, state)
    masked = expected["mask"] == 0
    assert masked.any() and not masked.all()
    h = ours(trainer, batch)
    assert_close(h, expected["grads"])
    assert np.all(h[masked] != 0)
    paper, batch, _ = hypergradient_setup(influence_rows="training_loss")
    h = ours(paper, batch)
    assert np.all(h[masked] == 0) and np.all(h[~masked] != 0)
    assert_differs(h, expected["grads"])


def autodiff_hypergradient(frame, lam, with_bias, l2=1.0):
    """h = −gᵀ H⁻¹ J by automatic differentiation in float64 (the oracle of tf.hessians over the dense kernel in
    the authors' code): H the Hessian of mean CE(labeled) + mean(λ·mask·CE(strong, ŷ_A)) + l2·½‖θ‖², θ the kernel
    (or kernel and bias), g the gradient of the mean validation CE, J the Jacobian of forward B's raw CE."""
    f64 = lambda x: tf.constant(np.asarray(x, np.float64))
    kernel, bias = f64(frame["kernel"]), f64(frame["bias"])
    a, w, s = map(f64, frame["forward_a"])
    weak_b, strong_b = map(f64, frame["forward_b"])
    dim = kernel.shape[0]
    theta = tf.concat([kernel, bias[None]], 0) if with_bias else kernel
    logits = lambda x, t: x @ t[:dim] + (t[dim] if with_bias else bias)
    ce = lambda labels, z: tf.nn.sparse_softmax_cross_entropy_with_logits(labels, z)
    weak_logits = logits(w, theta)
    pseudo = tf.argmax(weak_logits, 1)
    mask = tf.cast(tf.reduce_max(tf.nn.softmax(weak_logits), 1) >= THRESHOLD, tf.float64)

    def train_loss(t):
        labeled = tf.reduce_mean(ce(frame["labeled_y"], logits(a, t)))
        unlabeled = tf.reduce_mean(f64(lam) * mask * ce(pseudo, logits(s, t)))
        return labeled + unlabeled + l2 * 0.5 * tf.reduce_sum(t ** 2)

    with tf.GradientTape() as outer:
        outer.watch(theta)
        with tf.GradientTape() as inner:
            inner.watch(theta)
            loss = train_loss(theta)
        grad = inner.gradient(loss, theta)
    size = int(np.prod(theta.shape))
    hessian = tf.reshape(outer.jacobian(grad, theta), [size, size])
    with tf.GradientTape() as tape:
        tape.watch(theta)
        val_loss = tf.reduce_mean(ce(frame["val_y"], logits(f64(frame["forward_v"]), theta)))
    g = tf.reshape(tape.gradient(val_loss, theta), [-1])
    with tf.GradientTape() as tape:
        tape.watch(theta)
        rows = ce(tf.argmax(logits(weak_b, theta), 1), logits(strong_b, theta))
    jacobian = tf.reshape(tape.jacobian(rows, theta), [len(strong_b), size])
    return -(g[None] @ tf.linalg.inv(hessian) @ tf.transpose(jacobian))[0].numpy()


def test_kernel_only_influence_matches_an_autodiff_oracle_over_the_kernel():
    """influence_kernel_only: h equals autodiff over the dense kernel alone (as is the numpy reference); with the
    paper's parameters (kernel and bias, both with the unit L2 here) h equals autodiff over kernel and bias, which
    differs."""
    trainer, batch, state = hypergradient_setup()
    frame = network_frame(trainer.model.get_weights(), batch, batch)
    lam = state.lam[frame["ids"]]
    kernel_only = autodiff_hypergradient(frame, lam, with_bias=False)
    with_bias = autodiff_hypergradient(frame, lam, with_bias=True)
    assert_close(reference_grads(trainer, batch, state)["grads"], kernel_only, rtol=1e-6)
    assert_close(ours(trainer, batch), kernel_only)
    assert_differs(with_bias, kernel_only)
    paper, batch, _ = hypergradient_setup(influence_kernel_only=False)
    h = ours(paper, batch)
    assert_close(h, with_bias)
    assert_differs(h, kernel_only)


@pytest.mark.parametrize("hessian_l2, l2", [("unit", 1.0), ("wd", 0.3)])
def test_hessian_l2_is_exactly_the_identity_coefficient(hessian_l2, l2):
    """influence_hessian_l2=unit: H gets exactly +1·I whatever the weight decay (h equals the reference with
    l2 = 1 and not with l2 = wd); with the paper's wd, exactly +wd·I."""
    trainer, batch, state = hypergradient_setup(influence_hessian_l2=hessian_l2, weight_decay=0.3)
    h = ours(trainer, batch)
    assert_close(h, reference_grads(trainer, batch, state, l2=l2)["grads"])
    assert_differs(h, reference_grads(trainer, batch, state, l2=1.3 - l2)["grads"])


def test_training_mode_forwards_use_batch_statistics_and_restore_the_running_ones():
    """influence_forward_mode=training: h equals the reference on training-mode features (forwards A, B and V each
    with its own batch statistics) and, compiled as the trainer runs it, leaves every batch-norm moving statistic
    as it was (a training-mode forward alone changes them); in inference mode h equals the reference on
    inference features, which differs."""
    trainer, batch, state = hypergradient_setup()
    training = reference_grads(trainer, batch, state)["grads"]
    before = [v.numpy() for v in trainer.model.non_trainable_variables]
    h = tf.function(trainer.steps.hypergradient)(batch)[1].numpy()
    assert_close(h, training)
    for variable, value in zip(trainer.model.non_trainable_variables, before):
        np.testing.assert_array_equal(variable.numpy(), value)
    trainer.model.features(batch["labeled_x"], training=True)
    assert any(np.any(v.numpy() != b) for v, b in zip(trainer.model.non_trainable_variables, before))

    paper, batch, state = hypergradient_setup(influence_forward_mode="inference")
    h = ours(paper, batch)
    assert_close(h, reference_grads(paper, batch, state, training=False)["grads"])
    assert_differs(h, training)


# ----- the loop: weight_batch, weight_step_at_start ---------------------------------------------------------

def theta_step(weights, batch, lam, lr):
    """θ after one SGD step of FixMatch's loss with threshold 0, written out: mean CE(labeled) +
    mean(λ·CE(strong, argmax weak)), one training-mode forward over [labeled; weak; strong]."""
    model = scratch_model()
    model.set_weights(weights)
    with tf.GradientTape() as tape:
        logits = model(tf.concat([batch["labeled_x"], batch["unlabeled_weak"], batch["unlabeled_strong"]], 0),
                       training=True)
        z_l, z_w, z_s = tf.split(logits, 3)
        loss = tf.reduce_mean(sparse_cross_entropy(batch["labeled_y"], z_l)) + tf.reduce_mean(
            lam * sparse_cross_entropy(tf.argmax(z_w, 1), z_s))
    grads = tape.gradient(loss, model.trainable_variables)
    return [(v - lr * g).numpy() for v, g in zip(model.trainable_variables, grads)]


@pytest.mark.parametrize("reverted", [None, "weight_batch", "weight_step_at_start"])
def test_the_theta_step_trains_with_lambda_before_the_lambda_step_taken_at_j_0(reverted):
    """weight_step_at_start: one θ step, and a Λ step at j = 0 (none with the paper's value). weight_batch=theta:
    that θ step trains with λ as it was before the Λ step (here all 1, while the Λ step moved every row); the
    paper's fresh Λ batch is stepped first, and the θ step trains with the new λ."""
    lr = 0.5
    overrides = {} if reverted is None else {reverted: PAPER[reverted]}
    config = authors_config(steps=1, inner_steps=5, optimizer="sgd", lr=lr, weight_decay=0.0, **overrides)
    snapshots = Snapshots([])
    # One unlabeled batch = the whole unlabeled set: every Λ batch holds every θ batch's ids.
    trainer = make_trainer(config, class_images(n_unlabeled=BATCH), threshold=0.0, callbacks=[snapshots])
    trainer.run()
    batch = trainer.source.train_batch(tf.constant(0, tf.int64))
    lam = trainer.weights.to_numpy()
    lambda_steps = int(trainer.weights.optimizer.iterations.numpy())
    if reverted == "weight_step_at_start":
        assert lambda_steps == 0 and np.all(lam == 1.0)
        return
    assert lambda_steps == 1 and np.all(np.abs(lam - 1.0) > 0.4)
    trained = [v.numpy() for v in trainer.model.trainable_variables]
    old = theta_step(snapshots.weights[0], batch, tf.ones(BATCH), lr)
    new = theta_step(snapshots.weights[0], batch, tf.gather(lam, batch["unlabeled_ids"]), lr)
    expected, other = (old, new) if reverted is None else (new, old)
    for value, want in zip(trained, expected):
        np.testing.assert_allclose(value, want, rtol=1e-4, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(trained, other)) > 1e-3


# ----- validation_draw --------------------------------------------------------------------------------------

def drawn_rows(source, k):
    """Rows of the validation set that V' of outer step k holds (the nearest image: the images are distinct)."""
    val = np.asarray(source.scale(source.data.val_x), np.float64).reshape(len(source.data.val_x), -1)
    drawn = source.validation_batch(tf.constant(k, tf.int64))["val_x"].numpy().reshape(-1, val.shape[1])
    return [int(np.argmin(np.abs(val - row).sum(axis=1))) for row in drawn]


def test_validation_draw_with_replacement_repeats_rows_and_is_a_function_of_seed_and_step():
    """validation_draw=replacement: V' (as large as the validation set here) repeats rows, is the same for the
    same (seed, k) and another for another k or seed; the paper's permutation never repeats one."""
    data = class_images()
    source = AugmentedImageSource(data, BATCH, BATCH, 12, seed=0, weak=weak_view, strong=strong_view,
                                  validation_draw="replacement")
    rows = drawn_rows(source, 0)
    assert len(set(rows)) < len(rows)
    assert drawn_rows(source, 0) == rows
    again = AugmentedImageSource(data, BATCH, BATCH, 12, seed=0, weak=weak_view, strong=strong_view,
                                 validation_draw="replacement")
    assert drawn_rows(again, 0) == rows and drawn_rows(again, 1) != rows
    other_seed = AugmentedImageSource(data, BATCH, BATCH, 12, seed=1, weak=weak_view, strong=strong_view,
                                      validation_draw="replacement")
    assert drawn_rows(other_seed, 0) != rows
    permutation = AugmentedImageSource(data, BATCH, BATCH, 12, seed=0, weak=weak_view, strong=strong_view)
    assert sorted(drawn_rows(permutation, 0)) == list(range(12))


# ----- λ seen from outside ----------------------------------------------------------------------------------

def test_with_a_large_step_every_lambda_visited_once_sits_at_0_or_2():
    """Three Λ steps (N = 1) whose batches are the first 24 positions of one epoch over 32 unlabeled examples, so
    each example is visited at most once, with η = 5: the 24 sampled λ moved to a bound of [0, 2] (both occur),
    the 8 others stayed at 1."""
    config = authors_config(weight_lr=5.0, inner_steps=1, steps=3)
    trainer = make_trainer(config, class_images(n_unlabeled=4 * BATCH))
    trainer.run()
    lam = trainer.weights.to_numpy()
    moved = lam != 1.0
    assert moved.sum() == 3 * BATCH
    assert np.all(np.isin(lam[moved], [0.0, 2.0])) and (lam == 0).any() and (lam == 2).any()


@pytest.fixture()
def recorded_cta(monkeypatch):
    """Every CTAugment that build makes, kept."""
    made = []

    class Recorded(augment.CTAugment):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(augment, "CTAugment", Recorded)
    return made


def test_authors_recipe_on_digits_from_the_command_line(tmp_path, recorded_cta):
    """python -m experiments.train --dataset=digits --recipe=authors_code --augment=cta (in-process): results.json
    records the recipe and every switch; three Λ steps that visit each example at most once moved every sampled
    λ (the rows with a nonzero hypergradient, three batches of them) by exactly η (to 1e-3·η) and no other;
    CTAugment's rates stayed at 1 (cta_frozen)."""
    run = tmp_path / "run"
    run_main("experiments.train", ["--dataset=digits", "--recipe=authors_code", "--augment=cta", "--steps=3",
                                   "--inner_steps=1", "--batch=8", "--uratio=2", "--eval_every=1000",
                                   f"--train_dir={run}"])
    with open(run / "results.json") as f:
        results = json.load(f)
    assert results["run_config"]["recipe"] == "authors_code"
    assert results["run_config"]["algorithm"]["cta_frozen"] is True
    for name, value in AUTHORS.items():
        assert results["config"][name] == value, name
    assert results["config"]["validation_batch"] == results["config"]["unlabeled_batch"] == 16

    eta = results["config"]["weight_lr"]
    lam, counts = np.load(run / "weights.npy"), np.load(run / "hypergradient_counts.npy")
    assert counts.max() == 1 and counts.sum() == 3 * 16
    moved = lam != 1.0
    np.testing.assert_array_equal(moved, counts == 1)
    np.testing.assert_allclose(np.abs(lam[moved] - 1.0), eta, atol=1e-3 * eta)

    assert len(recorded_cta) == 1 and np.all(recorded_cta[0].rates.numpy() == 1.0)


def test_cta_rates_learn_from_the_probes_without_cta_frozen(recorded_cta):
    """The paper's CTAugment (--nocta_frozen under the authors' recipe): the source has the policy as its probe,
    and one θ step's feedback (what the trainer calls after each θ step) moves its rates off 1."""
    config = config_of(["--dataset=digits", "--recipe=authors_code", "--augment=cta", "--nocta_frozen",
                        "--batch=8", "--uratio=2"])
    assert not config.algorithm.cta_frozen
    data, _, _ = build.load_data(config)
    source = build.make_source(config, data)
    assert source.probe is recorded_cta[0]
    source.observe(build.make_model(config, data), source.train_batch(tf.constant(0, tf.int64)))
    assert np.any(recorded_cta[0].rates.numpy() != 1.0)
