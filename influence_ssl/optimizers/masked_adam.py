"""M-Adam: Adam that moves only the entries whose gradient is non-zero (paper App. C, Alg. 2).

Per-example weights Λ have one entry per unlabeled example, but a step sees only the
sampled batch U'. Plain Adam decays the moments of every entry at every step, which wipes
an example's momentum between its visits (0.9^100 ~ 3e-5). M-Adam applies the Adam
recursions only where the mask M = 1[g != 0] is set:

    t <- t + 1                                   (one global counter, every update)
    m <- m + (beta_1 - 1) m * M + (1 - beta_1) g
    v <- v + (beta_2 - 1) v * M + (1 - beta_2) g^2
    Λ <- Λ - lr * (m / (1 - beta_1^t)) * M / (sqrt(v / (1 - beta_2^t)) + epsilon)

Entries with M = 0 keep Λ, m and v bit for bit. Note the two differences from LazyAdam
(tensorflow-addons): the mask is g != 0, not "row present in the batch" (an in-batch
example with an exactly-zero hypergradient, e.g. a FixMatch example below the confidence
threshold, is frozen), and epsilon is added to sqrt(v_hat) as written in Alg. 2.
"""
import tensorflow as tf
import tf_keras as keras


class MaskedAdam(keras.optimizers.Optimizer):
    """Alg. 2 of Ren et al. as a tf_keras optimizer.

    Sparse gradients (`tf.IndexedSlices`, e.g. the hypergradients of the rows of the
    sampled unlabeled batch) touch only those rows: the cost of a step is proportional
    to the number of rows, never to the size of the variable. Duplicate indices are
    summed first (the base class deduplicates). Dense gradients are masked by g != 0.

    The step counter t is `self.iterations + 1`: it counts every call to
    `apply_gradients`, as in Alg. 2 (not one counter per entry).
    """

    # A sparse step moves only the rows of its gradient (ExampleWeights projects just those).
    updates_only_gradient_rows = True

    def __init__(
        self,
        learning_rate=0.01,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        name="MaskedAdam",
        **kwargs,
    ):
        # XLA buys nothing for a few gathers and scatters and would recompile per batch size.
        kwargs.setdefault("jit_compile", False)
        # The base class defaults to weight_decay=0, which still multiplies every entry of
        # the variable each step: O(|U|). Alg. 2 has no decay.
        kwargs.setdefault("weight_decay", None)
        super().__init__(name=name, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self._built = True
        self._momentums = [self.add_variable_from_reference(v, "m") for v in var_list]
        self._velocities = [self.add_variable_from_reference(v, "v") for v in var_list]

    def _slots(self, variable):
        index = self._index_dict[self._var_key(variable)]
        return self._momentums[index], self._velocities[index]

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        # tf.constant, not tf.cast: casting a Python float goes through float32 first.
        beta_1 = tf.constant(self.beta_1, dtype)
        beta_2 = tf.constant(self.beta_2, dtype)
        t = tf.cast(self.iterations + 1, dtype)
        m, v = self._slots(variable)

        if isinstance(gradient, tf.IndexedSlices):
            rows = gradient.indices
            g = tf.cast(gradient.values, dtype)
            m_new, v_new, delta = self._masked_adam(
                g, tf.gather(m, rows), tf.gather(v, rows), lr, beta_1, beta_2, t
            )
            m.scatter_update(tf.IndexedSlices(m_new, rows))
            v.scatter_update(tf.IndexedSlices(v_new, rows))
            variable.scatter_sub(tf.IndexedSlices(delta, rows))
        else:
            g = tf.cast(gradient, dtype)
            m_new, v_new, delta = self._masked_adam(g, m, v, lr, beta_1, beta_2, t)
            m.assign(m_new)
            v.assign(v_new)
            variable.assign_sub(delta)

    def _masked_adam(self, g, m, v, lr, beta_1, beta_2, t):
        """One masked Adam step on matching slices. Returns (m, v, step to subtract)."""
        mask = tf.cast(tf.not_equal(g, 0), g.dtype)
        m = m + (beta_1 - 1.0) * m * mask + (1.0 - beta_1) * g
        v = v + (beta_2 - 1.0) * v * mask + (1.0 - beta_2) * tf.square(g)
        m_hat = m / (1.0 - tf.pow(beta_1, t))
        v_hat = v / (1.0 - tf.pow(beta_2, t))
        return m, v, lr * m_hat * mask / (tf.sqrt(v_hat) + tf.constant(self.epsilon, g.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
            }
        )
        return config
