"""experiments.benchmarks.madam_epsilon's measurement of M-Adam's ε against hand-computed first-visit steps (its
shadow λ and √v̂), and the synthetic text it trains on."""
import math

import numpy as np
import pytest

from experiments.benchmarks import madam_epsilon


@pytest.mark.parametrize("t_offset", [0, 1700])
def test_shadow_lambda_first_visit_by_hand(t_offset):
    """A row's first visit: m = 0.1 g, v = 0.001 g²; with the global counter t, √v̂ = |g|·√(0.001 / (1 − 0.999^t))
    and |Δλ| = η · (0.1 |g| / (1 − 0.9^t)) / (√v̂ + ε)."""
    g = np.array([7e-7, -7e-7, 2e-8], np.float32)
    for eps in (1e-7, 1e-8):
        shadow = madam_epsilon.ShadowLambda(5, 0.01, eps, t_offset)
        moved, sqrt_v, t = shadow.step([0, 3, 4], g)
        assert t == t_offset + 1
        g64 = np.abs(g.astype(np.float64))
        expected_sqrt_v = g64 * math.sqrt(0.001 / (1 - 0.999 ** t))
        np.testing.assert_allclose(sqrt_v, expected_sqrt_v, rtol=1e-5)
        np.testing.assert_allclose(moved, 0.01 * (0.1 * g64 / (1 - 0.9 ** t)) / (expected_sqrt_v + eps), rtol=1e-4)
        np.testing.assert_array_equal(shadow.values.numpy()[[1, 2]], [1.0, 1.0])  # rows not in the batch
    # Late in a run √v̂ of |g| = 7e-7 is 2.4e-8: below ε = 1e-7, which then cuts the step about five-fold.
    if t_offset:
        assert 2.3e-8 < expected_sqrt_v[0] < 2.5e-8


def test_synthetic_text_has_the_text_paths_shapes_and_a_class_signal():
    data = madam_epsilon.synthetic_text(0, num_unlabeled=200, length=16)
    assert data.unlabeled_x.shape == data.unlabeled_aug_x.shape == (200, 16) and data.labeled_x.shape == (20, 16)
    assert np.all(data.unlabeled_x[:, 0] == 2) and np.all(data.unlabeled_x[:, -1] == 3)  # [CLS] ... [SEP]
    words = data.unlabeled_x[:, 1:-1]
    low_half = np.mean(words < madam_epsilon.SPECIAL + 47, axis=1)
    # class 0 leans to the lower half of the vocabulary: about 0.7 + 0.3/2 of its words, class 1 about 0.15
    assert low_half[data.unlabeled_true_y == 0].mean() > 0.8 > 0.2 > low_half[data.unlabeled_true_y == 1].mean()
    changed = np.mean(data.unlabeled_x != data.unlabeled_aug_x)
    assert 0.03 < changed < 0.12  # 10% of the words redrawn (some to themselves)


def test_means_over_lambda_steps_by_hand():
    rows = [{"mean_abs_g": g, "mean_sqrt_v_hat": v, "share_below": {1e-7: b, 1e-8: b / 2},
             "mean_abs_step": {1e-7: s, 1e-8: 2 * s, 1e-30: 3 * s}}
            for g, v, b, s in [(1e-7, 2e-8, 1.0, 1e-3), (3e-7, 4e-8, 0.5, 3e-3)]]
    out = madam_epsilon.means(rows)
    assert out["lambda_steps"] == 2 and out["mean_abs_g"] == pytest.approx(2e-7)
    assert out["share_below"] == pytest.approx({"1e-07": 0.75, "1e-08": 0.375})
    assert out["mean_abs_step"] == pytest.approx({"1e-07": 2e-3, "1e-08": 4e-3, "1e-30": 6e-3})
    assert "√v̂ < 1e-7 in 75% of rows" in madam_epsilon.summary(out)
