"""Batches of an in-memory SSLData for Alg. 1, sampled statelessly by step number."""
import numpy as np
import tensorflow as tf

from influence_ssl.data.sampling import batch_indices
from influence_ssl.trainer.data_source import DataSource

# Separate random streams of one run.
_LABELED, _UNLABELED, _OUTER_LABELED, _OUTER_UNLABELED, _VALIDATION = range(5)


class InMemorySource(DataSource):
    """Serves θ batches (labeled + unlabeled) and Λ batches (+ validation) of an SSLData.

    The batch of step k depends only on (seed, k): runs that share a seed share their data
    order whatever the method, and a resumed run continues the same sequence. V' is a slice of a
    permutation of the validation set, or (validation_draw="replacement", the authors' code) drawn
    uniformly with replacement.
    """

    stateless = True  # batches are pure functions of the step: the trainer samples in-graph

    def __init__(self, data, labeled_batch, unlabeled_batch, validation_batch, seed, validation_draw="permutation",
                 validation_labeled=False):
        if validation_draw not in ("permutation", "replacement"):
            raise ValueError(f"validation_draw must be permutation or replacement, got {validation_draw!r}.")
        self.data, self.validation_draw = data, validation_draw
        self.validation_labeled = validation_labeled  # a control: the validation examples are labeled ones too
        self.sizes = (labeled_batch, unlabeled_batch, validation_batch)
        self.seed = seed
        self._labeled_x = tf.constant(data.labeled_x)
        self._labeled_y = tf.constant(data.labeled_y)
        self._unlabeled_x = tf.constant(data.unlabeled_x)
        self._unlabeled_ids = tf.constant(data.unlabeled_ids)
        self._val_x = tf.constant(data.val_x)
        self._val_y = tf.constant(data.val_y)

    @property
    def num_unlabeled_ids(self):
        return int(np.max(self.data.unlabeled_ids)) + 1

    def split_sizes(self):
        """(labeled, unlabeled, validation) sizes, for TrainConfig.validate."""
        d = self.data
        return len(d.labeled_y), len(d.unlabeled_ids), len(d.val_y)

    def check_disjoint(self):
        """Raise ValueError if a validation example is also a labeled example (unless the run says they are)."""
        if self.validation_labeled:
            return
        labeled = {row.tobytes() for row in np.asarray(self.data.labeled_x)}
        shared = sum(row.tobytes() in labeled for row in np.asarray(self.data.val_x))
        if shared:
            raise ValueError(f"{shared} validation examples are also labeled training examples: "
                             "the validation set must be disjoint from the labeled set.")

    def _take(self, step, stream, size, *arrays):
        idx = batch_indices(step, size, int(arrays[0].shape[0]), self.seed, stream)
        return [tf.gather(a, idx) for a in arrays]

    def train_batch(self, step):
        labeled_batch, unlabeled_batch, _ = self.sizes
        lx, ly = self._take(step, _LABELED, labeled_batch, self._labeled_x, self._labeled_y)
        ux, ids = self._take(step, _UNLABELED, unlabeled_batch, self._unlabeled_x, self._unlabeled_ids)
        return {"labeled_x": lx, "labeled_y": ly, "unlabeled_x": ux, "unlabeled_ids": ids}

    def outer_batch(self, outer_step):
        labeled_batch, unlabeled_batch, validation_batch = self.sizes
        lx, ly = self._take(outer_step, _OUTER_LABELED, labeled_batch, self._labeled_x, self._labeled_y)
        ux, ids = self._take(outer_step, _OUTER_UNLABELED, unlabeled_batch, self._unlabeled_x,
                             self._unlabeled_ids)
        return {"labeled_x": lx, "labeled_y": ly, "unlabeled_x": ux, "unlabeled_ids": ids,
                **self._validation_rows(outer_step)}

    def validation_batch(self, outer_step):
        return self._validation_rows(outer_step)

    def _validation_rows(self, outer_step):
        """V' of outer step `outer_step` as stored ({"val_x", "val_y"}); a subclass prepares the rows."""
        validation_batch = self.sizes[2]
        if self.validation_draw == "permutation":
            vx, vy = self._take(outer_step, _VALIDATION, validation_batch, self._val_x, self._val_y)
        else:
            seed = tf.random.fold_in(tf.constant([self.seed, _VALIDATION], tf.int64), tf.cast(outer_step, tf.int64))
            idx = tf.random.stateless_uniform([validation_batch], seed, maxval=int(self._val_y.shape[0]),
                                              dtype=tf.int64)
            vx, vy = tf.gather(self._val_x, idx), tf.gather(self._val_y, idx)
        return {"val_x": vx, "val_y": vy}

    def eval_sets(self):
        """{name: (x, y)} evaluated by the trainer."""
        return {"validation": (self.data.val_x, self.data.val_y), "test": (self.data.test_x, self.data.test_y)}
