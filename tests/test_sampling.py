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


def test_the_base_plus_val_control_trains_on_the_validation_labels_too():
    """--validation_labeled: the labeled set also holds the validation examples (the labels a learned λ uses),
    the validation set is unchanged, and the deliberate overlap is not refused as an accidental one."""
    import pytest

    from influence_ssl.runs import build

    config = config_of(["--validation_labeled"])
    data, _, _ = build.load_data(config)
    plain, _, _ = build.load_data(config_of([]))
    assert len(data.labeled_y) == len(plain.labeled_y) + len(plain.val_y) == 50 + 200
    np.testing.assert_array_equal(data.labeled_x[50:], plain.val_x)
    np.testing.assert_array_equal(data.labeled_y[:50], plain.labeled_y)
    np.testing.assert_array_equal(data.val_y, plain.val_y)
    build.make_source(config, data).check_disjoint()
    with pytest.raises(ValueError, match="also labeled training examples"):
        build.make_source(config_of([]), data).check_disjoint()
