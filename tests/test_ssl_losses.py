"""SSL losses against values computed by hand (math module), on tiny batches.

The model is the identity: features = inputs, and the head is the identity matrix with zero bias,
so the inputs ARE the logits and every value below can be written down directly.
"""
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from influence_ssl.models import Classifier
from influence_ssl.ssl import UDA, FixMatch, PseudoLabel
from influence_ssl.ssl.losses import soft_cross_entropy
from influence_ssl.ssl.tsa import tsa_threshold


def identity_model(num_classes=2):
    backbone = keras.Sequential([keras.layers.InputLayer(input_shape=(num_classes,)),
                                 keras.layers.Lambda(lambda x: x)])
    model = Classifier(backbone, num_classes, head_initializer="identity")
    model.build((None, num_classes))
    model.head.kernel.assign(tf.eye(num_classes))
    return model


def softmax(z):
    e = [math.exp(v - max(z)) for v in z]
    return [v / sum(e) for v in e]


def log_softmax(z, k):
    return z[k] - max(z) - math.log(sum(math.exp(v - max(z)) for v in z))


def batch(labeled, labels, weak, strong):
    f = lambda a: tf.constant(a, tf.float32)
    return {"labeled_x": f(labeled), "labeled_y": tf.constant(labels, tf.int64),
            "unlabeled_weak": f(weak), "unlabeled_strong": f(strong), "unlabeled_x": f(weak)}


def test_fixmatch_mask_pseudo_label_and_loss():
    # p(weak row 0) = softmax(3, 0) = (0.9526, 0.0474) >= 0.95: kept, label 0.
    # p(weak row 1) = softmax(0.1, 0) = (0.525, 0.475) < 0.95: masked.
    b = batch([[0.0, 1.0]], [1], [[3.0, 0.0], [0.1, 0.0]], [[1.0, 2.0], [5.0, -5.0]])
    out = FixMatch(0.95).losses(identity_model(), b, training=False, step=0)
    np.testing.assert_allclose(out.unlabeled.numpy(), [-log_softmax([1.0, 2.0], 0), 0.0], rtol=1e-6)
    np.testing.assert_allclose(out.labeled.numpy(), [-log_softmax([0.0, 1.0], 1)], rtol=1e-6)
    np.testing.assert_array_equal(out.unlabeled_targets.numpy(), [[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(out.unlabeled_features.numpy(), [[1.0, 2.0], [5.0, -5.0]])  # strong view
    assert float(out.metrics["mask_rate"]) == 0.5


def test_fixmatch_threshold_is_inclusive():
    z = math.log(0.95 / 0.05)  # softmax(z, 0) = (0.95, 0.05) exactly (up to float rounding)
    b = batch([[0.0, 0.0]], [0], [[z + 1e-5, 0.0]], [[0.0, 0.0]])
    out = FixMatch(0.95).losses(identity_model(), b, training=False, step=0)
    assert out.unlabeled_targets.numpy()[0, 0] == 1.0


def test_uda_kl_with_temperature_and_strict_threshold():
    # weak (1, 0): p = (0.7311, 0.2689) > 0.6 kept; weak (0, 0): p = (0.5, 0.5) masked.
    # T = 0.5 sharpens the target to softmax(2, 0); the mask uses the unsharpened p.
    b = batch([[0.0, 0.0]], [0], [[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [3.0, 0.0]])
    out = UDA(temperature=0.5, threshold=0.6).losses(identity_model(), b, training=False, step=0)
    t, q = softmax([2.0, 0.0]), softmax([0.0, 1.0])
    kl = sum(ti * math.log(ti / qi) for ti, qi in zip(t, q))
    np.testing.assert_allclose(out.unlabeled.numpy(), [kl, 0.0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.unlabeled_targets.numpy(), [t, [0.0, 0.0]], rtol=1e-6)
    # The influence uses CE against the same targets: same gradient as the KL.
    z = tf.constant([[0.0, 1.0]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        ce = soft_cross_entropy(out.unlabeled_targets[:1], z)
        kl_again = UDA(0.5, 0.6).losses(identity_model(), {**b, "unlabeled_strong": tf.concat([z, [[3.0, 0.0]]], 0)},
                                        training=False, step=0).unlabeled[0]
    np.testing.assert_allclose(tape.gradient(ce, z).numpy(), tape.gradient(kl_again, z).numpy(), rtol=1e-5)


def test_uda_threshold_is_strict():
    b = batch([[0.0, 0.0]], [0], [[0.0, 0.0]], [[1.0, 0.0]])
    out = UDA(threshold=0.5).losses(identity_model(), b, training=False, step=0)
    assert float(out.unlabeled[0]) == 0.0  # max p = 0.5 is not > 0.5


@pytest.mark.parametrize("schedule, expected_alpha", [("linear", 0.5), ("log", 1 - math.exp(-2.5)),
                                                      ("exp", math.exp(-2.5))])
def test_tsa_thresholds(schedule, expected_alpha):
    eta = float(tsa_threshold(schedule, 50, 100, 10))
    assert eta == pytest.approx(expected_alpha * 0.9 + 0.1, rel=1e-6)


def test_uda_tsa_drops_confident_labeled_examples_and_renormalises():
    # Linear TSA at r = 0.5, K = 2: η = 0.75. Row 0: p_correct = 0.881 > 0.75, dropped; row 1: 0.5 kept.
    b = batch([[2.0, 0.0], [0.0, 0.0]], [0, 0], [[0.0, 0.0]], [[0.0, 0.0]])
    out = UDA(tsa="linear", total_steps=100).losses(identity_model(), b, training=False, step=50)
    # mean over the batch of the scaled losses = Σ kept CE / #kept = log 2.
    np.testing.assert_allclose(out.labeled.numpy(), [0.0, 2 * math.log(2.0)], rtol=1e-6)
    np.testing.assert_allclose(out.labeled_targets.numpy(), [[0.0, 0.0], [2.0, 0.0]])


def test_pseudo_label_hard_targets():
    b = batch([[0.0, 0.0]], [0], [[0.2, 0.0], [-1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]])
    out = PseudoLabel().losses(identity_model(), b, training=False, step=0)
    np.testing.assert_allclose(out.unlabeled.numpy(), [-log_softmax([0.2, 0.0], 0), -log_softmax([-1.0, 1.0], 1)],
                               rtol=1e-6)


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"threshold": 1.0}, {"tsa": "cosine"}])
def test_uda_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        UDA(**kwargs)
