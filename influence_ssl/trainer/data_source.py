"""What the trainer asks of a data source (InMemorySource and AugmentedImageSource implement it)."""
import abc

import tensorflow as tf


class DataSource(abc.ABC):
    """Batches for the two steps of Alg. 1, the evaluation sets, and the sizes the config checks.

    A batch is a dict of tensors: train batches hold at least labeled_x, labeled_y ([B] int) and
    unlabeled_ids ([U] int) plus the unlabeled views the SSL algorithm reads; outer batches add
    val_x and val_y.
    """

    # Batches are pure functions of the step number, so the trainer makes them in graph code: θ batches in a
    # tf.data pipeline one step ahead, Λ batches inside the compiled Λ step (a distributed run needs this).
    stateless = False
    # A stateless source whose batches cost real work (augmentation): the trainer makes them in a tf.data
    # pipeline one step ahead of training instead of inside the step.
    pipelined = False
    # Checkpointable state saved with the run (e.g. CTAugment's rates), or None.
    state = None

    @abc.abstractmethod
    def train_batch(self, step):
        """The θ batch of step `step` (an int or a scalar int64 tensor)."""

    @abc.abstractmethod
    def outer_batch(self, outer_step):
        """The Λ batch (D', U', V') of outer step `outer_step`."""

    def validation_batch(self, outer_step):
        """V' alone ({"val_x", "val_y"}) of outer step `outer_step`, as outer_batch draws it: for a Λ step on a
        θ batch (the authors' code)."""
        raise NotImplementedError(f"{type(self).__name__} draws no validation batch of its own.")

    @abc.abstractmethod
    def eval_sets(self):
        """{name: (x [N, ...] numpy, y [N] numpy)}, evaluated by the trainer (validation, test)."""

    @property
    @abc.abstractmethod
    def num_unlabeled_ids(self):
        """|U|: unlabeled IDs are 0 .. num_unlabeled_ids - 1."""

    @abc.abstractmethod
    def split_sizes(self):
        """(labeled, unlabeled, validation) sizes, for TrainConfig.validate."""

    def check_disjoint(self):
        """Raise ValueError if a validation example is also a labeled example (default: no check)."""

    def observe(self, model, batch):
        """Called after each θ step with the model and the step's batch (e.g. CTAugment's probes)."""
        del model, batch
        return tf.no_op()
