"""Stateless batch sampling (influence_ssl.data.sampling): epochs are permutations, so a batch larger than the
set repeats it, as FixMatch and USB repeat a few labels within a batch."""
import collections

import numpy as np
from conftest import config_of

from influence_ssl.data.sampling import batch_indices


def test_a_batch_larger_than_the_set_repeats_it_and_whole_epochs_visit_every_example_equally():
    size, batch, steps = 20, 32, 10
    counts = collections.Counter()
    for step in range(steps):
        idx = batch_indices(step, batch, size, seed=0, stream=0).numpy()
        # 32 consecutive positions touch at most 3 epochs (each a permutation): at most 3 visits per batch.
        assert np.bincount(idx, minlength=size).max() <= 3
        counts.update(idx.tolist())
    assert set(counts.values()) == {steps * batch // size}  # 10 batches = 16 whole epochs: 16 visits each
    first = batch_indices(0, batch, size, seed=0, stream=0).numpy()
    assert set(first.tolist()) == set(range(size))  # the first batch holds the whole first epoch


def test_a_labeled_batch_larger_than_the_labeled_set_is_accepted():
    """--num_labeled=20 with the digits preset's batch of 32 used to stop with "larger than the 20 labeled
    examples"; the unlabeled batch still may not exceed its set."""
    config = config_of(["--num_labeled=20", "--batch=32"])
    assert (config.data.num_labeled, config.train.labeled_batch) == (20, 32)
