"""Out-of-distribution unlabeled data (Oliver et al. 2018's class-mismatch setting; Ren et al.'s story
that per-example weights should down-weight harmful unlabeled examples).

Some classes are held out of the labeled, validation and test sets, and their training images are put
into the unlabeled set so that they make up a chosen fraction of it; or, with noise, uniform-noise
images of the same shape are. The in-distribution classes are relabelled 0..K_in-1.
"""
import numpy as np

from influence_ssl.data.splits import SplitSizeError, make_image_ssl_split
from influence_ssl.data.ssl_data import SSLData

OOD_STREAM = 2020_2  # second seed word of the OOD draws (the split uses splits.SPLIT_STREAM)


def ood_ssl_data(dataset, num_labeled, num_validation, seed, *, ood_classes=(), ood_fraction=0.0, noise=False):
    """An SSLData whose unlabeled set is a fraction `ood_fraction` out of distribution.

    Args:
      dataset: an ImageDataset (uint8 images [N, H, W, C], labels [N]).
      num_labeled, num_validation, seed: as make_image_ssl_split, on the in-distribution classes.
      ood_classes: classes held out of labeled, validation and test; their training images are the OOD
        pool (not with noise).
      ood_fraction: in [0, 1): the OOD share of the unlabeled set, whose size is the in-distribution
        unlabeled count at every fraction (capped by the OOD pool: |pool| / fraction).
      noise: the OOD pool is uniform uint8 noise images instead (no class held out).
    Returns:
      SSLData with `unlabeled_ood` [U] bool; OOD rows have unlabeled_true_y = -1 (no pseudo-label is right).
    """
    if not 0.0 <= ood_fraction < 1.0:
        raise SplitSizeError(f"ood_fraction must be in [0, 1), got {ood_fraction}.")
    held_out = np.asarray(sorted(set(int(c) for c in ood_classes)), np.int64)
    if noise and held_out.size:
        raise SplitSizeError("Give either OOD classes or noise, not both.")
    if np.any((held_out < 0) | (held_out >= dataset.num_classes)):
        raise SplitSizeError(f"OOD classes must be in 0..{dataset.num_classes - 1}, got {held_out.tolist()}.")
    kept = np.setdiff1d(np.arange(dataset.num_classes), held_out)
    if kept.size < 2:
        raise SplitSizeError("At least two classes must stay in distribution.")
    relabel = np.full(dataset.num_classes, -1, np.int64)
    relabel[kept] = np.arange(kept.size)
    inside = relabel[dataset.train_y] >= 0
    in_x, in_y = dataset.train_x[inside], relabel[dataset.train_y[inside]]
    split = make_image_ssl_split(in_y, num_labeled, num_validation, seed)
    rng = np.random.default_rng([int(seed), OOD_STREAM])
    # The unlabeled set keeps one size at every fraction (Oliver et al.'s class-mismatch protocol): its
    # in-distribution part shrinks as the OOD part grows.
    pool = None if noise else dataset.train_x[~inside]
    total = len(split.unlabeled)
    if pool is not None and ood_fraction > 0:
        total = min(total, int(len(pool) / ood_fraction))
    num_ood = int(round(ood_fraction * total))
    unlabeled = np.sort(rng.choice(split.unlabeled, size=total - num_ood, replace=False))
    if noise:
        ood_x = rng.integers(0, 256, size=(num_ood, *dataset.train_x.shape[1:]), dtype=np.uint8)
    else:
        ood_x = pool[np.sort(rng.choice(len(pool), size=num_ood, replace=False))]
    test_inside = relabel[dataset.test_y] >= 0
    return SSLData(
        name=dataset.name, num_classes=int(kept.size),
        labeled_x=in_x[split.labeled], labeled_y=in_y[split.labeled],
        unlabeled_x=np.concatenate([in_x[unlabeled], ood_x]),
        unlabeled_ids=np.arange(len(unlabeled) + num_ood, dtype=np.int64),
        unlabeled_true_y=np.concatenate([in_y[unlabeled], np.full(num_ood, -1, np.int64)]),
        val_x=in_x[split.validation], val_y=in_y[split.validation],
        test_x=dataset.test_x[test_inside], test_y=relabel[dataset.test_y[test_inside]],
        unlabeled_ood=np.concatenate([np.zeros(len(unlabeled), bool), np.ones(num_ood, bool)]))
