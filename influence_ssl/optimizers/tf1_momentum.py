"""TF1 `tf.train.MomentumOptimizer` as a tf_keras optimizer.

The original FixMatch and UDA code train θ with
`tf.train.MomentumOptimizer(lr, 0.9, use_nesterov=True)`. With lr_t the learning rate of
step t (a schedule evaluated at `iterations`, before the increment, as TF1 evaluates it
at the global step), g the gradient and one accumulator per variable (same shape):

    accum <- μ accum + g
    var   <- var - lr_t (g + μ accum)      nesterov=True
    var   <- var - lr_t accum              nesterov=False

tf_keras `SGD(momentum, nesterov=True)` keeps v = -(lr-weighted accum) instead
(v <- μ v - lr_t g; var <- var + μ v - lr_t g). The two agree while lr is constant, but
SGD scales past gradients by the lr of their own step while TF1 scales the whole
accumulator by the current lr, so they differ during a warm-up or decay.

Sparse gradients (`tf.IndexedSlices`) follow TF1's `SparseApplyMomentum`: duplicate
indices are summed first (TF1's `apply_gradients` and the tf_keras base class both do),
then only the rows present move, in var and in accum; absent rows keep their
accumulator undecayed. (tf_keras SGD instead decays and applies every row.)
"""
import tensorflow as tf
import tf_keras as keras


class TF1Momentum(keras.optimizers.Optimizer):
    """Momentum / Nesterov momentum with TF1's update (lr applied to the accumulator).

    Args:
      learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`, called
        with `self.iterations` (0 at the first step).
      momentum: μ, a float in [0, 1).
      nesterov: True for TF1's `use_nesterov=True`.

    The accumulator of each variable is a slot (`accumulator(var)`, same shape and dtype
    as var) tracked by `tf.train.Checkpoint`.
    """

    def __init__(
        self, learning_rate=0.01, momentum=0.9, nesterov=True, name="TF1Momentum", **kwargs
    ):
        # After deduplication a sparse gradient has a data-dependent number of rows, on
        # which XLA would recompile; the dense step is a few elementwise ops anyway.
        kwargs.setdefault("jit_compile", False)
        # The base class defaults to weight_decay=0, which still rescales every variable
        # each step; TF1's optimizer has no decay.
        kwargs.setdefault("weight_decay", None)
        super().__init__(name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.momentum = momentum
        self.nesterov = nesterov

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self._built = True
        # "momentum" is TF1's slot name.
        self._accumulators = [self.add_variable_from_reference(v, "momentum") for v in var_list]

    def accumulator(self, variable):
        """The accumulator slot of `variable`."""
        return self._accumulators[self._index_dict[self._var_key(variable)]]

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        # TF1 converts momentum to a float32 tensor, then casts it to the variable's
        # dtype; do the same so that float64 variables follow TF1 bit for bit too.
        mu = tf.cast(tf.constant(self.momentum, tf.float32), dtype)
        accum = self.accumulator(variable)

        if isinstance(gradient, tf.IndexedSlices):
            rows = gradient.indices  # unique: the base class summed duplicates
            g = tf.cast(gradient.values, dtype)
            a = mu * tf.gather(accum, rows) + g
            accum.scatter_update(tf.IndexedSlices(a, rows))
            variable.scatter_sub(tf.IndexedSlices(self._step(lr, mu, g, a), rows))
        else:
            g = tf.cast(gradient, dtype)
            a = mu * accum + g
            accum.assign(a)
            variable.assign_sub(self._step(lr, mu, g, a))

    def _step(self, lr, mu, g, a):
        """What to subtract from var, given the gradient g and the new accumulator a."""
        return lr * (g + mu * a) if self.nesterov else lr * a

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "momentum": self.momentum,
                "nesterov": self.nesterov,
            }
        )
        return config
