"""Stateless batch sampling: the batch of step k depends only on (seed, k).

Epochs are random permutations (tf.random.experimental.index_shuffle), so every example
is visited once per epoch, and resuming at step k needs no iterator state.
"""
import tensorflow as tf


def batch_indices(step, batch_size, num_items, seed, stream):
    """Indices [batch_size] of the step-th batch of a shuffled, repeated stream.

    Args:
      step: scalar int, the batch number.
      batch_size, num_items: python ints (batch_size <= num_items).
      seed: python int, the run's seed.
      stream: python int, separating streams of one run (labeled, unlabeled, ...).
    """
    step = tf.cast(step, tf.int64)
    position = step * batch_size + tf.range(batch_size, dtype=tf.int64)
    epoch = position // num_items
    # One permutation per (seed, stream, epoch); a batch may straddle two epochs.
    ones = tf.ones_like(epoch)
    seeds = tf.stack([ones * seed, ones * stream, epoch], axis=1)  # [batch_size, 3]
    return tf.raw_ops.RandomIndexShuffle(
        index=position % num_items, seed=seeds, max_index=tf.constant(num_items - 1, tf.int64))
