"""BERT's Adam with decoupled weight decay (`AdamWeightDecayOptimizer`), the θ optimizer of UDA's text code.

With lr_t the learning rate of step t, g the gradient and wd the decay rate:

    m <- β1 m + (1 - β1) g
    v <- β2 v + (1 - β2) g²
    var <- var - lr_t (m / (sqrt(v) + ε) + wd · var)      (wd · var only on decayed variables)

Unlike tf_keras' Adam / AdamW there is no bias correction of m and v, so the first steps are
larger (by 1/sqrt(1 - β2^t) ≈ 3 at step 100); BERT was fine-tuned this way and UDA keeps it. The
decay is not part of the loss. Which variables decay is set with `exclude_from_weight_decay`
(BERT: not LayerNorm, not biases); gradient clipping with the base class's `global_clipnorm`
(applied after the replicas' gradients are summed). Sparse gradients (embedding rows) are
applied densely, every row's moments decaying each step, as BERT's optimizer does.
"""
import tensorflow as tf
import tf_keras as keras


class BertAdam(keras.optimizers.Optimizer):
    """Args: learning_rate (float or schedule, called with `iterations`, 0 at the first step),
    weight_decay (decoupled rate, applied as lr_t · wd · var), beta_1, beta_2, epsilon; **kwargs
    of the base class (e.g. global_clipnorm)."""

    def __init__(self, learning_rate=2e-5, weight_decay=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                 name="BertAdam", **kwargs):
        # The base class subtracts lr_t · wd · var before update_step: BERT's decoupled term.
        super().__init__(name=name, weight_decay=weight_decay or None, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self._built = True
        # BERT's slot names.
        self._momentums = [self.add_variable_from_reference(v, "adam_m") for v in var_list]
        self._velocities = [self.add_variable_from_reference(v, "adam_v") for v in var_list]

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        index = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[index], self._velocities[index]
        g = tf.cast(tf.convert_to_tensor(gradient), dtype)
        beta_1, beta_2 = tf.constant(self.beta_1, dtype), tf.constant(self.beta_2, dtype)
        m.assign(beta_1 * m + (1.0 - beta_1) * g)
        v.assign(beta_2 * v + (1.0 - beta_2) * tf.square(g))
        lr = tf.cast(self.learning_rate, dtype)
        variable.assign_sub(lr * m / (tf.sqrt(v) + tf.constant(self.epsilon, dtype)))

    def get_config(self):
        config = super().get_config()
        config.update({"learning_rate": self._serialize_hyperparameter(self._learning_rate),
                       "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config
