"""Seeded SSL splits of an image training set by index (IDs = training-array positions).

labeled:    num_labeled images, class-balanced (round-robin over classes: the first classes in
            label order get one more when num_labeled is not a multiple of K).
validation: num_validation images, class-balanced, disjoint from labeled (Ren et al.'s 1,024).
unlabeled:  every training image except the validation ones, labeled images included (FixMatch
            and UDA both do this on purpose); labeled_in_unlabeled=False removes them too.

Only numpy.random.Generator(PCG64) seeded from [seed, SPLIT_STREAM] is used, so a seed gives the
same split on every machine and numpy version that keeps PCG64 and `permutation` stable (a
golden test pins one split).
"""
import dataclasses
import hashlib
import json

import numpy as np

from influence_ssl.data.ssl_data import class_balanced_split

SPLIT_STREAM = 2020_1  # second seed word: keeps split draws apart from other seeded streams
SPLIT_FORMAT = "influence_ssl.image_split/1"


@dataclasses.dataclass(frozen=True)
class ImageSplit:
    """Sorted int64 index arrays into the training set, plus what made them."""

    labeled: np.ndarray
    validation: np.ndarray
    unlabeled: np.ndarray
    num_train: int
    seed: int
    labeled_in_unlabeled: bool = True
    labels_sha256: str = ""

    def summary(self):
        return (f"split seed {self.seed}: {len(self.labeled)} labeled, {len(self.validation)} validation, "
                f"{len(self.unlabeled)} unlabeled of {self.num_train}")


def labels_sha256(labels):
    labels = np.ascontiguousarray(np.asarray(labels, np.int64))
    return hashlib.sha256(labels.tobytes()).hexdigest()


def _unlabeled(num_train, labeled, validation, labeled_in_unlabeled):
    keep = np.ones(num_train, bool)
    keep[validation] = False
    if not labeled_in_unlabeled:
        keep[labeled] = False
    return np.flatnonzero(keep).astype(np.int64)


class SplitSizeError(ValueError):
    """The requested labeled and validation sizes do not fit the training set."""


def make_image_ssl_split(train_labels, num_labeled, num_validation, seed, *, labeled_in_unlabeled=True):
    """A seeded class-balanced labeled set, a disjoint validation set, and the unlabeled rest.

    Args:
      train_labels: [N] int labels of the whole training set (ID = position).
      num_labeled: size of the labeled set (>= 1).
      num_validation: size of the validation set (>= 0).
      seed: int.
      labeled_in_unlabeled: keep the labeled images in the unlabeled set (FixMatch/UDA convention).
    Returns:
      ImageSplit with sorted int64 index arrays.
    """
    labels = np.asarray(train_labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"train_labels must be a 1-D integer array, got {labels.dtype} {labels.shape}.")
    if num_labeled < 1 or num_validation < 0:
        raise SplitSizeError(f"Need num_labeled >= 1 and num_validation >= 0, got {num_labeled}, {num_validation}.")
    if num_labeled + num_validation > len(labels):
        raise SplitSizeError(f"num_labeled + num_validation = {num_labeled + num_validation} exceeds the "
                             f"{len(labels)} training images.")
    rng = np.random.default_rng([int(seed), SPLIT_STREAM])
    labeled, validation, _ = class_balanced_split(labels, [num_labeled, num_validation], rng)
    return ImageSplit(
        labeled=labeled, validation=validation,
        unlabeled=_unlabeled(len(labels), labeled, validation, labeled_in_unlabeled),
        num_train=len(labels), seed=int(seed), labeled_in_unlabeled=bool(labeled_in_unlabeled),
        labels_sha256=labels_sha256(labels),
    )


def save_split(path, split, **metadata):
    """Write the split as JSON (labeled and validation IDs; unlabeled is recomputed on load)."""
    record = {
        "format": SPLIT_FORMAT,
        "seed": split.seed,
        "num_train": split.num_train,
        "labeled_in_unlabeled": split.labeled_in_unlabeled,
        "labels_sha256": split.labels_sha256,
        "num_labeled": len(split.labeled),
        "num_validation": len(split.validation),
        "num_unlabeled": len(split.unlabeled),
        "labeled": split.labeled.tolist(),
        "validation": split.validation.tolist(),
        "metadata": metadata,
    }
    with open(path, "w") as f:
        json.dump(record, f)


def load_split(path, train_labels=None):
    """Read a split written by save_split. With train_labels, check it is the same training set."""
    with open(path) as f:
        record = json.load(f)
    if record.get("format") != SPLIT_FORMAT:
        raise ValueError(f"{path}: not an {SPLIT_FORMAT} file (format={record.get('format')!r}).")
    num_train = int(record["num_train"])
    labeled = np.asarray(record["labeled"], np.int64)
    validation = np.asarray(record["validation"], np.int64)
    for label, idx in [("labeled", labeled), ("validation", validation)]:
        if idx.size and (idx.min() < 0 or idx.max() >= num_train or np.any(np.diff(idx) <= 0)):
            raise ValueError(f"{path}: {label} IDs are not sorted unique IDs in [0, {num_train}).")
    if np.intersect1d(labeled, validation).size:
        raise ValueError(f"{path}: labeled and validation IDs overlap.")
    if train_labels is not None:
        if len(train_labels) != num_train or labels_sha256(train_labels) != record["labels_sha256"]:
            raise ValueError(f"{path}: the split was made for another training set (size or label order "
                             f"differs: {num_train} vs {len(train_labels)} images); the dataset's "
                             "order or version changed.")
    return ImageSplit(
        labeled=labeled, validation=validation,
        unlabeled=_unlabeled(num_train, labeled, validation, record["labeled_in_unlabeled"]),
        num_train=num_train, seed=int(record["seed"]),
        labeled_in_unlabeled=bool(record["labeled_in_unlabeled"]), labels_sha256=record["labels_sha256"],
    )
