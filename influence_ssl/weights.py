"""The table of per-example weights Λ = {λ_u}: one non-negative weight per unlabeled example.

Λ lives in a single [|U|] variable indexed by the unlabeled example's stable integer ID
(the data pipeline yields that ID with every unlabeled example). A training step gathers
the weights of its batch; an outer step of Alg. 1 sends the hypergradients of the batch's
rows to the optimizer as a `tf.IndexedSlices` and projects back to λ >= 0 every row the
optimizer can have moved. With MaskedAdam (or SGD without momentum) those are the batch's rows,
and a step costs O(batch), never O(|U|). Plain Adam, or SGD with momentum, keeps moving rows
outside the batch on their old momentum (exactly the ablation of Fig. 4 centre), so with them
the projection covers the whole table: O(|U|), like the optimizer's own step.

Beside Λ, the table counts for every example how many Λ steps gave it a non-zero hypergradient
(a FixMatch example below the confidence mask gets exactly 0, and M-Adam then leaves it alone),
so that diagnostics can tell examples whose λ was moved from those it never was.

With |U| = 1 and every ID 0 the same table holds one shared λ (Fig. 4 left): the optimizer
sums duplicate indices, so its gradient is Σ_u dL_val/dλ_u = dL_val/dλ.

A variant (not the paper's method) parametrises λ = f(φ) and lets the optimizer step φ
(with dL_val/dφ = dL_val/dλ · f'(φ)) instead of projecting λ: f = softplus (λ > 0, steps shrink
near 0), or f = 2·λ₀·sigmoid (λ in (0, 2·λ₀), λ₀ the initial value, φ₀ = 0).
"""
import csv
import math
import os

import numpy as np
import tensorflow as tf
import tf_keras as keras

from influence_ssl.optimizers.masked_adam import MaskedAdam


def updates_only_gradient_rows(optimizer):
    """Whether a step of `optimizer` on a tf.IndexedSlices gradient leaves every other row untouched."""
    if getattr(optimizer, "updates_only_gradient_rows", False):
        return True
    if isinstance(optimizer, keras.optimizers.SGD):
        momentum = optimizer.momentum
        return isinstance(momentum, (int, float)) and momentum == 0
    return False


PARAMETRIZATIONS = ("projection", "softplus", "sigmoid")


def _inverse_softplus(y):
    """φ with softplus(φ) = y > 0 (for large y, y itself up to float precision)."""
    return y + math.log(-math.expm1(-y))


class ExampleWeights(tf.Module):
    """Λ, its optimizer and the projection onto λ >= 0, checkpointable as one object.

    Args:
      num_examples: |U|, the number of unlabeled example IDs (IDs are 0 .. |U|-1).
      initial_value: λ at the start (the paper: 1; 5 for UDA on CIFAR-10 with 250 labels).
      optimizer: a tf_keras optimizer for Λ; default MaskedAdam(learning_rate=0.01).
      dtype: dtype of Λ.
      parametrization: "projection" (the paper: step λ, then clip to λ >= 0), "softplus" or "sigmoid"
        (step φ with λ = f(φ); see the module docstring).
      upper_bound: None, or the projection clips to 0 <= λ <= upper_bound (the authors' code: 2).

    Save and restore with `tf.train.Checkpoint(weights=table)`: the weights, the hypergradient
    counts, the optimizer's step counter and its slots (m, v) are all tracked. The optimizer is built
    at construction so that a restore finds its slots in place.
    """

    def __init__(self, num_examples, initial_value=1.0, optimizer=None, dtype=tf.float32,
                 parametrization="projection", upper_bound=None, name="example_weights"):
        super().__init__(name=name)
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {', '.join(PARAMETRIZATIONS)}, got {parametrization!r}.")
        num_examples = int(num_examples)
        if num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {num_examples}.")
        if not np.isfinite(initial_value) or initial_value < 0:
            raise ValueError(f"initial_value must be a finite number >= 0, got {initial_value}.")
        if parametrization != "projection" and initial_value <= 0:
            raise ValueError(f"A {parametrization} parametrization needs initial_value > 0, got {initial_value}.")
        if upper_bound is not None and parametrization != "projection":
            raise ValueError(f"upper_bound applies to the projection, not to a {parametrization} parametrization.")
        if upper_bound is not None and not upper_bound >= initial_value:
            raise ValueError(f"upper_bound must be >= initial_value {initial_value}, got {upper_bound}.")
        self.num_examples = num_examples
        self.parametrization = parametrization
        self.upper_bound = upper_bound
        # Not trainable: Λ is stepped by its own optimizer, never by θ's (nor listed with θ by a Keras model
        # that tracks the table).
        self.values = tf.Variable(
            tf.fill([num_examples], tf.constant(initial_value, dtype)), trainable=False, name="lambda"
        )
        # The optimizer's variable: λ itself, or φ with λ = f(φ).
        self._scale = 2.0 * initial_value  # the sigmoid's bound
        if parametrization == "projection":
            self.stepped = self.values
        else:
            phi0 = _inverse_softplus(initial_value) if parametrization == "softplus" else 0.0
            self.stepped = tf.Variable(tf.fill([num_examples], tf.constant(phi0, dtype)), trainable=False, name="phi")
        # How many Λ steps gave each example a non-zero hypergradient.
        self.hypergradient_counts = tf.Variable(tf.zeros([num_examples], tf.int32), trainable=False,
                                                name="nonzero_hypergradient_counts")
        self.optimizer = optimizer if optimizer is not None else MaskedAdam(learning_rate=0.01)
        self.optimizer.build([self.stepped])
        self._local_steps = updates_only_gradient_rows(self.optimizer)

    def gather(self, ids):
        """λ for a batch. ids: [B] integer IDs. Returns [B]."""
        return tf.gather(self.values, ids)

    def apply_gradients(self, ids, grads):
        """One optimizer step on the rows `ids`, then project to λ >= 0 every row it can have moved.

        Args:
          ids: [B] integer IDs of the sampled unlabeled examples (duplicates allowed:
            their gradients are summed).
          grads: [B] dL_val/dλ_u for those rows.
        """
        ids = tf.convert_to_tensor(ids)
        grads = tf.cast(grads, self.values.dtype)
        self.hypergradient_counts.scatter_add(tf.IndexedSlices(tf.cast(grads != 0, tf.int32), ids))
        if self.parametrization != "projection":
            grads = grads * self._derivative(tf.gather(self.stepped, ids))  # chain rule: dL/dφ = dL/dλ · f'(φ)
        # A constant shape: tf.shape(self.values) would read all |U| entries.
        dense_shape = tf.constant([self.num_examples], ids.dtype)
        self.optimizer.apply_gradients([(tf.IndexedSlices(grads, ids, dense_shape), self.stepped)])
        # λ from the stepped variable (projection onto Λ >= 0, or f(φ)), wherever the step could move it.
        if self._local_steps:
            self.values.scatter_update(tf.IndexedSlices(self._lambda_of(tf.gather(self.stepped, ids)), ids))
        else:
            self.values.assign(self._lambda_of(self.stepped))

    def _lambda_of(self, stepped):
        if self.parametrization == "softplus":
            return tf.nn.softplus(stepped)
        if self.parametrization == "sigmoid":
            return self._scale * tf.sigmoid(stepped)
        if self.upper_bound is None:
            return tf.nn.relu(stepped)
        return tf.clip_by_value(stepped, 0.0, self.upper_bound)

    def _derivative(self, phi):
        """f'(φ) of the parametrization."""
        if self.parametrization == "softplus":
            return tf.sigmoid(phi)
        s = tf.sigmoid(phi)
        return self._scale * s * (1.0 - s)

    def to_numpy(self):
        """Λ as a [|U|] numpy array (index = example ID)."""
        return self.values.numpy()

    def counts_numpy(self):
        """[|U|] int: the number of Λ steps that gave each example a non-zero hypergradient."""
        return self.hypergradient_counts.numpy()

    def export(self, path):
        """Write (id, weight) to `path`: .npy (a [|U|] array, index = ID) or .csv (id, weight,
        nonzero_hypergradient_steps)."""
        values = self.to_numpy()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        extension = os.path.splitext(path)[1].lower()
        if extension == ".npy":
            np.save(path, values)
        elif extension == ".csv":
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["id", "weight", "nonzero_hypergradient_steps"])
                rows = enumerate(zip(values, self.counts_numpy()))
                writer.writerows((i, repr(float(w)), int(c)) for i, (w, c) in rows)
        else:
            raise ValueError(f"Cannot export weights to {path!r}: use a .npy or .csv path.")
        return path
