"""Exponential moving average of model weights, for evaluation (FixMatch: 0.999 over trainable
variables; UDA HEAD: 0.9999 over trainable variables and batch-norm statistics)."""
import contextlib

import tensorflow as tf


class WeightEMA(tf.Module):
    """shadow <- decay · shadow + (1 - decay) · variable, after every applied θ step.

    The shadows start at the initial values (no debiasing, as tf.train.ExponentialMovingAverage
    in FixMatch). `swapped()` puts them into the model for evaluation and restores the raw weights.
    """

    def __init__(self, variables, decay, name="ema"):
        super().__init__(name=name)
        self.decay = float(decay)
        self._variables = list(variables)
        # Every replica computes the same shadow: write it once (tf.distribute).
        self.shadows = [tf.Variable(tf.identity(v), trainable=False, name=v.name.split(":")[0] + "/ema",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                        for v in self._variables]

    def update(self):
        for shadow, variable in zip(self.shadows, self._variables):
            shadow.assign(self.decay * shadow + (1.0 - self.decay) * variable)

    @contextlib.contextmanager
    def swapped(self):
        backup = [tf.identity(v) for v in self._variables]
        for shadow, variable in zip(self.shadows, self._variables):
            variable.assign(shadow)
        try:
            yield
        finally:
            for value, variable in zip(backup, self._variables):
                variable.assign(value)
