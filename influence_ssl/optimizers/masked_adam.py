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

The authors' released code (jason718/semi-sup, main.py `madam_update_influence`) differs in two ways,
each an option here: one step count per entry, incremented when the entry is stepped, with bias
correction by it (`per_entry_steps`), and every sampled entry stepped whatever its gradient
(`mask_zero_gradients=False`; with that, a sparse step's mask is "row present in the batch").
"""
import tensorflow as tf
import tf_keras as keras

DEFAULT_EPSILON = 1e-7  # tf_keras' Adam's (Alg. 2 names no value)


class MaskedAdam(keras.optimizers.Optimizer):
    """Alg. 2 of Ren et al. as a tf_keras optimizer.

    Sparse gradients (`tf.IndexedSlices`, e.g. the hypergradients of the rows of the
    sampled unlabeled batch) touch only those rows: the cost of a step is proportional
    to the number of rows, never to the size of the variable. Duplicate indices are
    summed first (the base class deduplicates). Dense gradients are masked by g != 0.

    The step counter t is `self.iterations + 1`: it counts every call to
    `apply_gradients`, as in Alg. 2; with per_entry_steps=True it is instead a slot t [|Λ|] of
    counters, each entry's own number of steps (the authors' code).

    Args:
      per_entry_steps: one step count per entry (the authors' code) instead of one global count.
      mask_zero_gradients: M = 1[g != 0] (Alg. 2); False steps every entry of the gradient (the
        authors' code; for a dense gradient: every entry).
    """

    # A sparse step moves only the rows of its gradient (ExampleWeights projects just those).
    updates_only_gradient_rows = True

    def __init__(
        self,
        learning_rate=0.01,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=DEFAULT_EPSILON,
        per_entry_steps=False,
        mask_zero_gradients=True,
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
        self.per_entry_steps = per_entry_steps
        self.mask_zero_gradients = mask_zero_gradients

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self._built = True
        self._momentums = [self.add_variable_from_reference(v, "m") for v in var_list]
        self._velocities = [self.add_variable_from_reference(v, "v") for v in var_list]
        if self.per_entry_steps:
            self._step_counts = [self.add_variable_from_reference(v, "t") for v in var_list]

    def _slots(self, variable):
        index = self._index_dict[self._var_key(variable)]
        counts = self._step_counts[index] if self.per_entry_steps else None
        return self._momentums[index], self._velocities[index], counts

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        # tf.constant, not tf.cast: casting a Python float goes through float32 first.
        beta_1 = tf.constant(self.beta_1, dtype)
        beta_2 = tf.constant(self.beta_2, dtype)
        m, v, counts = self._slots(variable)

        if isinstance(gradient, tf.IndexedSlices):
            rows = gradient.indices
            g = tf.cast(gradient.values, dtype)
            mask = self._mask(g)
            t = self._global_t(dtype) if counts is None else tf.gather(counts, rows) + mask
            m_new, v_new, delta = self._masked_adam(
                g, mask, tf.gather(m, rows), tf.gather(v, rows), lr, beta_1, beta_2, t
            )
            m.scatter_update(tf.IndexedSlices(m_new, rows))
            v.scatter_update(tf.IndexedSlices(v_new, rows))
            if counts is not None:
                counts.scatter_update(tf.IndexedSlices(t, rows))
            variable.scatter_sub(tf.IndexedSlices(delta, rows))
        else:
            g = tf.cast(gradient, dtype)
            mask = self._mask(g)
            t = self._global_t(dtype) if counts is None else counts + mask
            m_new, v_new, delta = self._masked_adam(g, mask, m, v, lr, beta_1, beta_2, t)
            m.assign(m_new)
            v.assign(v_new)
            if counts is not None:
                counts.assign(t)
            variable.assign_sub(delta)

    def _mask(self, g):
        """M: 1[g != 0] (Alg. 2), or 1 for every entry of the gradient."""
        if self.mask_zero_gradients:
            return tf.cast(tf.not_equal(g, 0), g.dtype)
        return tf.ones_like(g)

    def _global_t(self, dtype):
        """Alg. 2's t: this step's number (a scalar)."""
        return tf.cast(self.iterations + 1, dtype)

    def _masked_adam(self, g, mask, m, v, lr, beta_1, beta_2, t):
        """One masked Adam step on matching slices. Returns (m, v, step to subtract).

        An entry with t = 0 (per-entry counts, never stepped) has mask 0: its step is 0, not 0/0."""
        m = m + (beta_1 - 1.0) * m * mask + (1.0 - beta_1) * g
        v = v + (beta_2 - 1.0) * v * mask + (1.0 - beta_2) * tf.square(g)
        # t >= 1 wherever mask = 1; elsewhere the step is masked out, so any t > 0 does.
        t = tf.maximum(t, 1.0)
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
                "per_entry_steps": self.per_entry_steps,
                "mask_zero_gradients": self.mask_zero_gradients,
            }
        )
        return config
