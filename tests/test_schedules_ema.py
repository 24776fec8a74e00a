"""θ learning-rate schedules against the codebases' formulas; the weight EMA against numpy."""
import math

import numpy as np
import pytest
import tensorflow as tf

from influence_ssl.trainer.ema import WeightEMA
from influence_ssl.trainer.schedules import ThetaSchedule


@pytest.mark.parametrize("k", [0, 1000, 2**19, 2**20])
def test_fixmatch_cosine(k):
    lr = ThetaSchedule("fixmatch_cosine", 0.03, 2**20)(k)
    assert float(lr) == pytest.approx(0.03 * math.cos(7 * math.pi * k / (16 * 2**20)), rel=1e-5)


def test_fixmatch_final_lr():
    assert float(ThetaSchedule("fixmatch_cosine", 0.03, 100)(100)) == pytest.approx(0.03 * math.cos(7 * math.pi / 16),
                                                                                  rel=1e-5)


@pytest.mark.parametrize("k, expected", [
    (0, 0.0), (10_000, 0.015), (20_000, 0.03), (400_000, 0.03 * 0.004),
    (210_000, 0.03 * (0.996 * 0.5 * (1 + math.cos(math.pi * 0.5)) + 0.004)),
])
def test_uda_2019_warmup_then_cosine_to_min_ratio(k, expected):
    lr = ThetaSchedule("uda_cosine", 0.03, 400_000, warmup_steps=20_000, min_lr_ratio=0.004)(k)
    assert float(lr) == pytest.approx(expected, rel=1e-5, abs=1e-9)


def test_uda_current_without_warmup():
    assert float(ThetaSchedule("uda_current", 0.03, 500_000)(250_000)) == pytest.approx(
        0.03 * math.cos(7 * math.pi * 0.5 / 16), rel=1e-5)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="schedule"):
        ThetaSchedule("step", 0.1, 10)


def test_ema_follows_numpy_and_swaps_back():
    v = tf.Variable([1.0, 2.0])
    ema = WeightEMA([v], decay=0.9)
    shadow = np.array([1.0, 2.0])
    for value in ([3.0, 0.0], [5.0, 1.0], [0.0, 0.0]):
        v.assign(value)
        ema.update()
        shadow = 0.9 * shadow + 0.1 * np.array(value)
    np.testing.assert_allclose(ema.shadows[0].numpy(), shadow, rtol=1e-6)
    with ema.swapped():
        np.testing.assert_allclose(v.numpy(), shadow, rtol=1e-6)
    np.testing.assert_array_equal(v.numpy(), [0.0, 0.0])
