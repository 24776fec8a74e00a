"""The table of per-example weights Λ = {λ_u}: one non-negative weight per unlabeled example.

Λ lives in a single [|U|] variable indexed by the unlabeled example's stable integer ID
(the data pipeline yields that ID with every unlabeled example). A training step gathers
the weights of its batch; an outer step of Alg. 1 sends the hypergradients of the batch's
rows to the optimizer as a `tf.IndexedSlices` and projects those rows back to λ >= 0.
Both cost O(batch), never O(|U|) (with MaskedAdam or SGD; plain Adam decays every entry,
which is exactly the ablation of Fig. 4 centre).

With |U| = 1 and every ID 0 the same table holds one shared λ (Fig. 4 left): the optimizer
sums duplicate indices, so its gradient is Σ_u dL_val/dλ_u = dL_val/dλ.
"""
import csv
import os

import numpy as np
import tensorflow as tf

from influence_ssl.optimizers.masked_adam import MaskedAdam


class ExampleWeights(tf.Module):
    """Λ, its optimizer and the projection onto λ >= 0, checkpointable as one object.

    Args:
      num_examples: |U|, the number of unlabeled example IDs (IDs are 0 .. |U|-1).
      initial_value: λ at the start (the paper: 1; 5 for UDA on CIFAR-10 with 250 labels).
      optimizer: a tf_keras optimizer for Λ; default MaskedAdam(learning_rate=0.01).
      dtype: dtype of Λ.

    Save and restore with `tf.train.Checkpoint(weights=table)`: the weights, the
    optimizer's step counter and its slots (m, v) are all tracked. The optimizer is built
    at construction so that a restore finds its slots in place.
    """

    def __init__(self, num_examples, initial_value=1.0, optimizer=None, dtype=tf.float32,
                 name="example_weights"):
        super().__init__(name=name)
        num_examples = int(num_examples)
        if num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {num_examples}.")
        if not np.isfinite(initial_value) or initial_value < 0:
            raise ValueError(f"initial_value must be a finite number >= 0, got {initial_value}.")
        self.num_examples = num_examples
        self.values = tf.Variable(
            tf.fill([num_examples], tf.cast(initial_value, dtype)), name="lambda"
        )
        self.optimizer = optimizer if optimizer is not None else MaskedAdam(learning_rate=0.01)
        self.optimizer.build([self.values])

    def gather(self, ids):
        """λ for a batch. ids: [B] integer IDs. Returns [B]."""
        return tf.gather(self.values, ids)

    def apply_gradients(self, ids, grads):
        """One optimizer step on the rows `ids`, then project those rows to λ >= 0.

        Args:
          ids: [B] integer IDs of the sampled unlabeled examples (duplicates allowed:
            their gradients are summed).
          grads: [B] dL_val/dλ_u for those rows.
        """
        ids = tf.convert_to_tensor(ids)
        grads = tf.cast(grads, self.values.dtype)
        # A constant shape: tf.shape(self.values) would read all |U| entries.
        dense_shape = tf.constant([self.num_examples], ids.dtype)
        self.optimizer.apply_gradients([(tf.IndexedSlices(grads, ids, dense_shape), self.values)])
        # Projection onto the constraint set Λ >= 0, only where the step could move λ.
        self.values.scatter_update(tf.IndexedSlices(tf.nn.relu(tf.gather(self.values, ids)), ids))

    def to_numpy(self):
        """Λ as a [|U|] numpy array (index = example ID)."""
        return self.values.numpy()

    def export(self, path):
        """Write (id, weight) to `path`: .npy (a [|U|] array, index = ID) or .csv."""
        values = self.to_numpy()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        extension = os.path.splitext(path)[1].lower()
        if extension == ".npy":
            np.save(path, values)
        elif extension == ".csv":
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["id", "weight"])
                writer.writerows((i, repr(float(w))) for i, w in enumerate(values))
        else:
            raise ValueError(f"Cannot export weights to {path!r}: use a .npy or .csv path.")
        return path
