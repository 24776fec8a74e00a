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
