"""Report metrics against independent references: scikit-learn's AUROC, TF's softmax, hand counts."""
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from influence_ssl.metrics import auroc, softmax, weight_diagnostics


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 300).astype(float)  # many ties
    positives = rng.random(300) < 0.3
    assert auroc(scores, positives) == pytest.approx(roc_auc_score(positives, scores), abs=1e-12)


def test_auroc_of_one_class_is_nan():
    assert np.isnan(auroc([0.1, 0.2], [True, True]))


def test_softmax_matches_tf():
    logits = np.random.default_rng(1).normal(size=(7, 4)) * 30
    np.testing.assert_allclose(softmax(logits), tf.nn.softmax(tf.constant(logits)).numpy(), rtol=1e-12)


def test_weight_diagnostics_by_hand():
    weights = np.arange(40, dtype=float)  # the lowest 5% are the first 2
    wrong = np.zeros(40, bool)
    wrong[[0, 10, 20, 30]] = True
    d = weight_diagnostics(weights, wrong)
    assert d["wrong_pseudo_label_rate_all"] == pytest.approx(0.1)
    assert d["wrong_pseudo_label_rate_lowest_5pct"] == pytest.approx(0.5)
    assert d["auroc_low_weight_vs_wrong"] == pytest.approx(roc_auc_score(wrong, -weights))


def test_lowest_fraction_counts_ties_by_their_expected_share():
    """40 examples, the lowest 5% = 2 of them. Four share λ = 0, one of which is wrong: each tied
    example counts 2/4, so the expected wrong rate is 0.5·1/2 = 0.25 whatever their order."""
    weights = np.concatenate([np.zeros(4), np.arange(1, 37, dtype=float)])
    for wrong_position in range(4):
        wrong = np.zeros(40, bool)
        wrong[wrong_position] = True
        wrong[20] = True
        assert weight_diagnostics(weights, wrong)["wrong_pseudo_label_rate_lowest_5pct"] == pytest.approx(0.25)
    # Below the tie: one example strictly lower (wrong), then 3 tied (none wrong), k = 2.
    weights = np.array([-1.0, 0.0, 0.0, 0.0] + list(range(1, 37)), float)
    wrong = np.zeros(40, bool)
    wrong[0] = True
    assert weight_diagnostics(weights, wrong)["wrong_pseudo_label_rate_lowest_5pct"] == pytest.approx(0.5)


def test_per_seed_auroc_beside_the_pooled_one():
    rng = np.random.default_rng(2)
    seeds = np.repeat([0, 1, 2], 50)
    wrong = rng.random(150) < 0.3
    weights = np.where(wrong, 0.0, 1.0) * (1 + 10 * seeds) + rng.normal(size=150)  # a scale per seed
    d = weight_diagnostics(weights, wrong, groups=seeds)
    expected = [roc_auc_score(wrong[seeds == s], -weights[seeds == s]) for s in range(3)]
    np.testing.assert_allclose(d["auroc_low_weight_vs_wrong_per_seed"], expected, rtol=1e-12)
    assert d["auroc_low_weight_vs_wrong_per_seed_mean"] == pytest.approx(np.mean(expected))
    assert d["auroc_low_weight_vs_wrong_per_seed_std"] == pytest.approx(np.std(expected, ddof=1))
    assert d["auroc_low_weight_vs_wrong"] == pytest.approx(roc_auc_score(wrong, -weights))
