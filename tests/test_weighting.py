"""The weighting rules (influence_ssl.ssl.weighting) against numbers written from their formulas in numpy, on
batches of a few rows: the weight of a batch, the state after two updates, the first step, an all-confident
batch, a class never predicted; then how a rule plugs into FixMatch / Pseudo-Label, that only θ steps move its
state, and that it is checkpointed with the run."""
import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import Killed, config_of, kill_at
from test_ssl_losses import batch, identity_model
from test_trainer import small_config

from influence_ssl.data import make_synthetic
from influence_ssl.models import two_layer_mlp
from influence_ssl.runs import build
from influence_ssl.ssl import FixMatch, PseudoLabel
from influence_ssl.ssl.weighting import FlexMatchThresholds, FreeMatchThresholds, SoftMatchWeighting, UASDFilter
from influence_ssl.trainer import InMemorySource, Trainer

# Probabilities of four unlabeled examples over three classes.
P1 = np.array([[0.96, 0.02, 0.02], [0.50, 0.30, 0.20], [0.10, 0.85, 0.05], [0.20, 0.20, 0.60]], np.float32)
P2 = np.array([[0.30, 0.40, 0.30], [0.98, 0.01, 0.01], [0.05, 0.90, 0.05], [0.34, 0.33, 0.33]], np.float32)


def call(rule, probs, ids=None, update=True):
    ids = None if ids is None else tf.constant(ids, tf.int64)
    return rule(tf.constant(probs), ids, update_state=update).numpy()


# ------------------------------------------------------------------------------------------------ SoftMatch
def softmatch_reference(batches, num_classes, m, n_sigma):
    """(weights of the last batch, μ, σ²) after each batch entered: EMA of mean and unbiased variance of max p."""
    mu, var = 1.0 / num_classes, 1.0
    for p in batches:
        conf = p.max(axis=1)
        mu = m * mu + (1 - m) * conf.mean()
        var = m * var + (1 - m) * conf.var(ddof=1)
    gap = np.minimum(conf - mu, 0.0)
    return np.exp(-gap ** 2 / (2 * var / n_sigma ** 2)), mu, var


def test_softmatch_defaults_are_the_references():
    rule = SoftMatchWeighting(3)
    assert (rule.momentum, rule.n_sigma, rule.lambda_max) == (0.999, 2.0, 1.0)
    np.testing.assert_allclose([rule.mean.numpy(), rule.variance.numpy()], [1 / 3, 1.0], rtol=1e-7)


def test_softmatch_weight_at_a_state_set_by_hand():
    rule = SoftMatchWeighting(2)
    rule.mean.assign(0.7)
    rule.variance.assign(0.04)
    w = call(rule, np.array([[0.5, 0.5], [0.7, 0.3], [0.9, 0.1]], np.float32), update=False)
    # 0.5: exp(-(0.2)² · 2² / (2 · 0.04)) = exp(-2); at and above μ: λmax = 1.
    np.testing.assert_allclose(w, [np.exp(-2.0), 1.0, 1.0], rtol=1e-5)
    paper = SoftMatchWeighting(2, n_sigma=1.0)  # the Gaussian exp(-d²/(2σ²)) as printed
    paper.mean.assign(0.7)
    paper.variance.assign(0.04)
    np.testing.assert_allclose(call(paper, np.array([[0.5, 0.5]], np.float32), update=False), [np.exp(-0.5)],
                               rtol=1e-5)


def test_softmatch_first_step_keeps_everything():
    """μ_0 = 1/C and max p >= 1/C always: before any update every weight is λmax."""
    rule = SoftMatchWeighting(3, lambda_max=2.0)
    np.testing.assert_array_equal(call(rule, P1, update=False), [2.0] * 4)
    np.testing.assert_allclose(rule.mean.numpy(), 1 / 3, rtol=1e-7)  # not moved


@pytest.mark.parametrize("n_sigma", [1.0, 2.0])
def test_softmatch_state_and_weights_after_two_updates(n_sigma):
    rule = SoftMatchWeighting(3, momentum=0.5, n_sigma=n_sigma)
    np.testing.assert_allclose(call(rule, P1), softmatch_reference([P1], 3, 0.5, n_sigma)[0], rtol=1e-5)
    w = call(rule, P2)
    expected, mu, var = softmatch_reference([P1, P2], 3, 0.5, n_sigma)
    np.testing.assert_allclose([rule.mean.numpy(), rule.variance.numpy()], [mu, var], rtol=1e-5)
    np.testing.assert_allclose(w, expected, rtol=1e-5)
    assert np.all(w[[1, 2]] == 1.0) and np.all(w[[0, 3]] < 1.0)  # both sides of μ in the batch


def test_softmatch_all_confident_batch_weighs_one():
    rule = SoftMatchWeighting(3, momentum=0.5)
    confident = np.array([[0.97, 0.02, 0.01], [0.01, 0.98, 0.01]], np.float32)
    np.testing.assert_array_equal(call(rule, confident), [1.0, 1.0])  # μ_1 < 0.97


# ------------------------------------------------------------------------------------------------ FreeMatch
def freematch_reference(batches, num_classes, m):
    tau, p_tilde = 1.0 / num_classes, np.full(num_classes, 1.0 / num_classes)
    for p in batches:
        tau = m * tau + (1 - m) * p.max(axis=1).mean()
        p_tilde = m * p_tilde + (1 - m) * p.mean(axis=0)
    local = p_tilde / p_tilde.max()
    mask = (p.max(axis=1) >= local[p.argmax(axis=1)] * tau).astype(np.float32)
    return mask, tau, p_tilde


def test_freematch_starts_at_one_over_c_and_keeps_everything():
    rule = FreeMatchThresholds(3)
    assert rule.momentum == 0.999
    np.testing.assert_allclose(rule.global_threshold.numpy(), 1 / 3, rtol=1e-7)
    np.testing.assert_allclose(rule.class_probs.numpy(), [1 / 3] * 3, rtol=1e-7)
    np.testing.assert_array_equal(call(rule, P1, update=False), [1.0] * 4)  # max p >= 1/C = τ_0


def test_freematch_state_and_mask_after_two_updates():
    rule = FreeMatchThresholds(3, momentum=0.2)
    np.testing.assert_array_equal(call(rule, P1), freematch_reference([P1], 3, 0.2)[0])
    mask = call(rule, P2)
    expected, tau, p_tilde = freematch_reference([P1, P2], 3, 0.2)
    np.testing.assert_allclose(rule.global_threshold.numpy(), tau, rtol=1e-6)
    np.testing.assert_allclose(rule.class_probs.numpy(), p_tilde, rtol=1e-6)
    np.testing.assert_array_equal(mask, expected)
    assert 0 < mask.sum() < 4


def test_freematch_local_threshold_lowers_the_bar_of_a_rare_class():
    """τ_t = 0.8; p̃ = (0.6, 0.3, 0.1): class 1's bar is 0.8 · 0.5 = 0.4, class 0's 0.8, class 2 (never
    predicted) 0.8/6."""
    rule = FreeMatchThresholds(3)
    rule.global_threshold.assign(0.8)
    rule.class_probs.assign([0.6, 0.3, 0.1])
    probs = np.array([[0.7, 0.2, 0.1], [0.25, 0.45, 0.3], [0.35, 0.3, 0.35 + 1e-3]], np.float32)
    np.testing.assert_array_equal(call(rule, probs / probs.sum(1, keepdims=True), update=False), [0.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------------------ FlexMatch
def flexmatch_beta(record, num_classes, warmup=True):
    sigma = np.array([(record == c).sum() for c in range(num_classes)], np.float64)
    denominator = max(sigma.max(), (record == -1).sum()) if warmup else sigma.max()
    return sigma / max(denominator, 1)


def flexmatch_mask(probs, beta, tau=0.95):
    b = beta[probs.argmax(axis=1)]
    return (probs.max(axis=1) >= b / (2 - b) * tau).astype(np.float32)


def test_flexmatch_first_step_keeps_everything_then_records_the_confident():
    rule = FlexMatchThresholds(3, num_unlabeled=6)
    assert (rule.threshold, rule.warmup) == (0.95, True)
    np.testing.assert_array_equal(rule.pseudo_labels.numpy(), [-1] * 6)
    # Every β is 0: M(0) · τ = 0.
    np.testing.assert_array_equal(call(rule, P1, [0, 1, 2, 3]), [1.0] * 4)
    # Only id 0 (0.96 >= 0.95) enters the record.
    np.testing.assert_array_equal(rule.pseudo_labels.numpy(), [0, -1, -1, -1, -1, -1])


def test_flexmatch_state_and_mask_after_two_updates():
    rule = FlexMatchThresholds(3, num_unlabeled=6)
    first = np.array([[0.96, 0.02, 0.02], [0.97, 0.02, 0.01], [0.01, 0.95, 0.04], [0.2, 0.2, 0.6]], np.float32)
    call(rule, first, [0, 1, 2, 3])
    record = np.array([0, 0, 1, -1, -1, -1])
    np.testing.assert_array_equal(rule.pseudo_labels.numpy(), record)
    beta = flexmatch_beta(record, 3)
    np.testing.assert_allclose(beta, [2 / 3, 1 / 3, 0.0])  # σ = (2, 1, 0), 3 unused: ÷ max(2, 3)
    np.testing.assert_allclose(rule.learning_effect().numpy(), beta, rtol=1e-6)
    # Bars: class 0: M(2/3) · 0.95 = 0.475, class 1: M(1/3) · 0.95 = 0.19, class 2 (never selected): 0.
    second = np.array([[0.46, 0.30, 0.24], [0.48, 0.30, 0.22], [0.10, 0.20, 0.35], [0.01, 0.98, 0.01]], np.float32)
    second[2] /= second[2].sum()
    w = call(rule, second, [3, 4, 5, 0])
    np.testing.assert_array_equal(w, flexmatch_mask(second, beta))
    np.testing.assert_array_equal(w, [0.0, 1.0, 1.0, 1.0])
    # id 0 now confident in class 1: overwritten; ids 3, 4, 5 not confident: unchanged.
    np.testing.assert_array_equal(rule.pseudo_labels.numpy(), [1, 0, 1, -1, -1, -1])


def test_flexmatch_without_warmup_divides_by_the_largest_class():
    rule = FlexMatchThresholds(3, num_unlabeled=6, warmup=False)
    rule.pseudo_labels.assign([0, 0, 1, -1, -1, -1])
    np.testing.assert_allclose(rule.learning_effect().numpy(), [1.0, 0.5, 0.0])


def test_flexmatch_every_id_confident_in_one_class():
    """σ = (4, 0, 0), nothing unused: β = (1, 0, 0); class 0 needs τ itself, the classes never predicted 0."""
    rule = FlexMatchThresholds(3, num_unlabeled=4)
    confident = np.tile(np.array([[0.96, 0.02, 0.02]], np.float32), (4, 1))
    call(rule, confident, [0, 1, 2, 3])
    np.testing.assert_allclose(rule.learning_effect().numpy(), [1.0, 0.0, 0.0])
    probs = np.array([[0.94, 0.03, 0.03], [0.95, 0.03, 0.02], [0.3, 0.4, 0.3]], np.float32)
    np.testing.assert_array_equal(call(rule, probs, [0, 1, 2], update=False), [0.0, 1.0, 1.0])


def test_flexmatch_needs_ids():
    with pytest.raises(ValueError, match="unlabeled_ids"):
        FlexMatchThresholds(3, 6)(tf.constant(P1))


# ------------------------------------------------------------------------------------------------ UASD
def test_uasd_first_visit_is_filtered_then_the_running_mean_decides():
    rule = UASDFilter(2, num_unlabeled=4)
    assert rule.threshold == 0.9
    a = np.array([[0.9375, 0.0625], [0.80, 0.20], [0.95, 0.05]], np.float32)
    np.testing.assert_array_equal(call(rule, a, [0, 1, 2]), [0.0, 0.0, 0.0])  # no history yet: q̄ = 0
    b = np.array([[0.875, 0.125], [0.99, 0.01], [0.05, 0.95], [0.99, 0.01]], np.float32)
    # Weighted by the visits before this one: id 0 0.9375, id 1 0.80, id 2 0.95, id 3 never seen.
    np.testing.assert_array_equal(call(rule, b, [0, 1, 2, 3]), [1.0, 0.0, 1.0, 0.0])
    sums = np.array([a[0] + b[0], a[1] + b[1], a[2] + b[2], b[3]])
    visits = np.array([2, 2, 2, 1])
    np.testing.assert_allclose(rule.probability_sums.numpy(), sums, rtol=1e-6)
    np.testing.assert_array_equal(rule.visits.numpy(), visits)
    # Means after two visits: id 0 (0.90625, ·) kept; id 1 (0.895, ·) not; id 2 (0.5, 0.5): the max of the mean,
    # not the mean of the max (0.95), decides; id 3 0.99.
    mean = (sums / visits[:, None]).max(axis=1)
    np.testing.assert_array_equal(call(rule, b, [0, 1, 2, 3], update=False), (mean >= 0.9).astype(np.float32))
    np.testing.assert_array_equal(call(rule, b, [0, 1, 2, 3], update=False), [1.0, 0.0, 0.0, 1.0])


# ------------------------------------------------------------------------------------------------ in tf.function
@pytest.mark.parametrize("make", [lambda: SoftMatchWeighting(3, momentum=0.5), lambda: FreeMatchThresholds(3, 0.5),
                                  lambda: FlexMatchThresholds(3, 6), lambda: UASDFilter(3, 6)])
def test_rules_compile_with_xla_and_match_eager(make):
    eager, compiled = make(), make()
    step = tf.function(lambda p, ids: compiled(p, ids, update_state=True), jit_compile=True)
    for probs, ids in ((P1, [0, 1, 2, 3]), (P2, [3, 4, 5, 0]), (P1, [1, 2, 3, 4])):
        ids = tf.constant(ids, tf.int64)
        np.testing.assert_allclose(step(tf.constant(probs), ids).numpy(), call(eager, probs, ids.numpy()),
                                   rtol=1e-6)
    for a, b in zip(eager.variables, compiled.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def moons_trainer(config, rule, train_dir=None, callbacks=()):
    """Pseudo-Label with `rule` on 200 unlabeled moons (tests/test_trainer.py's run)."""
    data = make_synthetic("moons", 0, num_unlabeled=200, num_test=300)
    source = InMemorySource(data, config.labeled_batch, config.unlabeled_batch, config.validation_batch, seed=0)
    return Trainer(two_layer_mlp(seed=0), PseudoLabel(rule=rule), source, config, train_dir=train_dir,
                   callbacks=callbacks, verbose=False)


# ------------------------------------------------------------------------------------------------ in the algorithms
def test_fixmatch_targets_are_one_hot_times_the_rule_weight():
    """FlexMatch at its first step keeps every example, whatever FixMatch's τ: the weak row 1 (0.525) that the
    fixed mask drops carries weight 1; ℓ_U = w · CE."""
    b = batch([[0.0, 1.0]], [1], [[3.0, 0.0], [0.1, 0.0]], [[1.0, 2.0], [5.0, -5.0]])
    b["unlabeled_ids"] = tf.constant([0, 1], tf.int64)
    rule = FlexMatchThresholds(2, num_unlabeled=2)
    out = FixMatch(0.95, rule=rule).losses(identity_model(), b, training=False, step=0)
    np.testing.assert_array_equal(out.unlabeled_targets.numpy(), [[1.0, 0.0], [1.0, 0.0]])
    z = np.array([[1.0, 2.0], [5.0, -5.0]])
    ce = np.log(np.exp(z).sum(1)) - z[:, 0]
    np.testing.assert_allclose(out.unlabeled.numpy(), ce, rtol=1e-6, atol=1e-7)
    assert float(out.metrics["mask_rate"]) == 1.0
    # A soft weight scales the loss: SoftMatch with μ above both confidences.
    soft = SoftMatchWeighting(2)
    soft.mean.assign(0.99)
    soft.variance.assign(0.01)
    out = FixMatch(0.95, rule=soft).losses(identity_model(), b, training=False, step=0)
    conf = np.array([np.exp(3) / (np.exp(3) + 1), np.exp(0.1) / (np.exp(0.1) + 1)])
    w = np.exp(-(conf - 0.99) ** 2 * 4 / (2 * 0.01))
    np.testing.assert_allclose(out.unlabeled.numpy(), w * ce, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.unlabeled_targets.numpy().sum(1), w, rtol=1e-5)


def test_state_moves_with_update_state_only():
    """losses(training=True) updates (the θ step); training=False, or training=True with update_state=False (the
    Λ step in either forward mode) leaves the state as it is."""
    b = batch([[0.0, 1.0]], [1], [[3.0, 0.0], [0.1, 0.0]], [[1.0, 2.0], [5.0, -5.0]])
    b["unlabeled_ids"] = tf.constant([0, 1], tf.int64)
    for algorithm in (FixMatch, PseudoLabel):
        rule = UASDFilter(2, num_unlabeled=2)
        alg = algorithm(0.95, rule=rule)
        assert alg.state is rule
        alg.losses(identity_model(), b, training=False, step=0)
        alg.losses(identity_model(), b, training=True, step=0, update_state=False)
        np.testing.assert_array_equal(rule.visits.numpy(), [0.0, 0.0])
        alg.losses(identity_model(), b, training=True, step=0)
        np.testing.assert_array_equal(rule.visits.numpy(), [1.0, 1.0])
        alg.losses(identity_model(), b, training=False, step=0, update_state=True)
        np.testing.assert_array_equal(rule.visits.numpy(), [2.0, 2.0])


def test_trainer_lambda_steps_leave_the_rule_alone():
    """In a run, the rule's record counts θ steps only: every θ batch of U ids adds U visits, the Λ steps (here
    every 10 steps after 40, in training-mode forwards too) none."""
    for mode in ("inference", "training"):
        config = small_config(steps=60, influence_forward_mode=mode, checkpoint_every=60)
        trainer = moons_trainer(config, UASDFilter(2, num_unlabeled=200))
        trainer.run()
        assert trainer.num_outer_steps(60) == 2
        assert trainer.algorithm.rule.visits.numpy().sum() == 60 * config.unlabeled_batch


def test_resumed_run_equals_uninterrupted_with_a_rule(tmp_path):
    config = small_config(steps=60, checkpoint_every=20, eval_every=20, log_every=20)

    def make(**kwargs):
        return moons_trainer(config, UASDFilter(2, 200, threshold=0.7), **kwargs)

    whole = make(train_dir=str(tmp_path / "whole"))
    whole.run()

    with pytest.raises(Killed):
        make(train_dir=str(tmp_path / "resumed"), callbacks=[kill_at(50)]).run()
    resumed = make(train_dir=str(tmp_path / "resumed"))
    resumed.run()  # restores step 40 with the record as it was then
    rule = resumed.algorithm.rule
    assert rule.visits.numpy().sum() == 60 * config.unlabeled_batch  # 40 restored, 20 replayed
    for a, b in zip(whole.algorithm.rule.variables, rule.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert 0 < rule.mean_confidence(tf.range(200)).numpy().min() < 0.7  # some examples filtered
    np.testing.assert_array_equal(resumed.weights.to_numpy(), whole.weights.to_numpy())
    for a, b in zip(whole.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with open(tmp_path / "whole" / "results.json") as f, open(tmp_path / "resumed" / "results.json") as g:
        assert json.load(f)["history"] == json.load(g)["history"]


# ------------------------------------------------------------------------------------------------ the run's flags
def test_the_flag_builds_the_rule_at_its_defaults():
    flex = build.make_algorithm(config_of(["--weighting_rule=flexmatch", "--confidence=0.9"]), 10, 50)
    assert isinstance(flex, FixMatch) and isinstance(flex.rule, FlexMatchThresholds)
    assert (flex.rule.threshold, flex.rule.warmup, flex.rule.pseudo_labels.shape) == (0.9, True, (50,))
    uasd = build.make_algorithm(config_of(["--algorithm=pseudo_label", "--weighting_rule=uasd",
                                           "--uasd_threshold=0.8"]), 10, 50)
    assert isinstance(uasd, PseudoLabel) and uasd.rule.threshold == 0.8
    assert uasd.rule.probability_sums.shape == (50, 10)
    soft = build.make_algorithm(config_of(["--weighting_rule=softmatch"]), 10, 50).rule
    assert soft.momentum == 0.999 and np.isclose(soft.mean.numpy(), 0.1)
    for name in ("softmatch", "freematch"):
        rule = build.make_algorithm(config_of([f"--weighting_rule={name}", "--weighting_ema=0.99"]), 10, 50).rule
        assert rule.momentum == 0.99
    assert build.make_algorithm(config_of([])).rule is None
    with pytest.raises(ValueError, match="num_classes"):
        build.make_algorithm(config_of(["--weighting_rule=freematch"]))


# ------------------------------------------------------------------------------------------- what a run exports
def test_a_run_exports_the_weight_its_mask_or_rule_gives_each_example():
    """execute.weight_arrays: the final model's confidence, and the weight of the run's own mask or rule under
    that model and the rule's final state, against numpy: FixMatch's fixed mask [max p >= τ] and UASD's filter
    [max of each id's mean recorded prediction >= τ] (the export moves no state)."""
    from influence_ssl.metrics import softmax
    from influence_ssl.runs import execute

    config = small_config(steps=30, checkpoint_every=30)
    data = make_synthetic("moons", 0, num_unlabeled=200, num_test=300)
    for rule, tau in ((None, 0.9), (UASDFilter(2, 200, threshold=0.8), 0.8)):
        trainer = moons_trainer(config, rule)
        trainer.algorithm.threshold = 0.9
        trainer.run()
        visits = None if rule is None else rule.visits.numpy().copy()
        out = execute.weight_arrays(trainer, data)
        probs = softmax(trainer.logits(np.asarray(data.unlabeled_x)))
        np.testing.assert_allclose(out["confidence"], probs.max(1), rtol=1e-6)
        if rule is None:
            expected = probs.max(1) >= tau
        else:
            mean = rule.probability_sums.numpy() / np.maximum(rule.visits.numpy(), 1)[:, None]
            expected = mean[np.asarray(data.unlabeled_ids)].max(1) >= tau
            np.testing.assert_array_equal(rule.visits.numpy(), visits)
        assert 0 < expected.mean() < 1  # the weights tell examples apart
        np.testing.assert_array_equal(out["rule_weight"], expected.astype(float))
