"""Image datasets (CIFAR-10, SVHN from TFDS; sklearn digits) as uint8 numpy arrays with stable IDs.

Every training image's ID is its position in the returned training array. TFDS splits are read
in record order (shuffle_files=False, one file at a time, deterministic tf.data), so a given
prepared TFDS folder gives the same order on every machine. Note: TFDS shuffles records by key
when it *prepares* a dataset, so these positions are not the original files' order (FixMatch
and UDA index the original CIFAR batches / SVHN .mat order); the per-split SHA-256 fingerprints
in `metadata` identify the exact array a run used.

Images stay uint8 in memory ([N, H, W, C]; CIFAR-10 train is 150 MB, SVHN train+extra 1.8 GB);
the trainer scales them in-graph with `scale_images`.

Labels are int64 in 0..K-1. TFDS `svhn_cropped` stores digit identity (the builder writes
label % 10, so digit "0", stored as 10 in the .mat files, becomes 0): this is UDA's 10 -> 0
convention. FixMatch instead maps y -> y − 1 (digit 0 -> 9, digit d -> d − 1); see
`svhn_labels_as`.
"""
import dataclasses
import hashlib
import os

import numpy as np

from influence_ssl.data.splits import labels_sha256 as _labels_sha
from influence_ssl.data.splits import make_image_ssl_split
from influence_ssl.data.ssl_data import SSLData, class_balanced_split

IMAGE_DATASETS = ("cifar10", "svhn", "digits")
# Whether a left-right mirror keeps an image's class, i.e. whether the weak and strong augmentations
# may flip it. Natural images yes (FixMatch, UDA); digits no (SVHN in both codebases; sklearn digits
# likewise: a mirrored 2, 3, 5 or 7 is not that digit). Every dataset must say.
HORIZONTAL_FLIP = {"cifar10": True, "svhn": False, "digits": False}
assert set(HORIZONTAL_FLIP) == set(IMAGE_DATASETS)
TFDS_NAMES = {"cifar10": "cifar10", "svhn": "svhn_cropped"}
NORMALIZATIONS = ("fixmatch", "uda")

# UDA's per-channel statistics of x/255 (ref §3e).
UDA_MEAN_STD = {
    "cifar10": ((0.49139968, 0.48215841, 0.44653091), (0.24703223, 0.24348513, 0.26158784)),
    "svhn": ((0.4376821, 0.4437697, 0.47280442), (0.19803012, 0.20101562, 0.19703614)),
}

# sklearn digits: a fixed, class-stratified 500-image test set (50 per class); 1,297 train.
DIGITS_NUM_TEST = 500
DIGITS_SPLIT_SEED = 0
_READ_BATCH = 4096


class DatasetNotFoundError(FileNotFoundError):
    """A TFDS dataset is not prepared under the data_dir searched (nothing is downloaded)."""


@dataclasses.dataclass
class ImageDataset:
    """Train/test images (uint8 [N, H, W, C]) and labels (int64 [N]); train ID = row position."""

    name: str
    num_classes: int
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    metadata: dict


def fingerprint(*arrays):
    """SHA-256 over the arrays' dtypes, shapes and bytes (identifies a split's content and order)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ TFDS
def _missing_message(name, tfds_name, builder, data_dir, reason):
    root = str(builder.data_dir_root) if builder is not None else (data_dir or "<TFDS default>")
    target = (str(builder.data_dir) if builder is not None
              else os.path.join(root, tfds_name, "<version>"))
    found = ""
    dataset_root = os.path.join(root, tfds_name)
    if os.path.isdir(dataset_root):
        versions = sorted(os.listdir(dataset_root))
        found = f" Found only these entries in {dataset_root}: {versions}." if versions else ""
    return (
        f"Dataset {name!r} (TFDS {tfds_name!r}) is not prepared under data_dir={root!r}: {reason}.{found}\n"
        f"Nothing is downloaded here. On a machine with internet run\n"
        f"    tfds build {tfds_name} --data_dir=<dir>\n"
        f"(or python -c \"import tensorflow_datasets as tfds; tfds.builder('{tfds_name}', "
        f"data_dir='<dir>').download_and_prepare()\"),\n"
        f"then copy the prepared folder <dir>/{tfds_name}/<version> to {target} "
        f"and pass data_dir={root!r} (or set TFDS_DATA_DIR)."
    )


def prepared_tfds_builder(name, data_dir=None, splits=("train", "test")):
    """The TFDS builder of `name`, or DatasetNotFoundError when its prepared data is missing.

    Never downloads: only checks that `<data_dir>/<tfds_name>/<version>` holds a prepared dataset
    (dataset_info.json and features.json) listing the requested splits.
    """
    import tensorflow_datasets as tfds

    tfds_name = TFDS_NAMES[name]
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    except Exception as error:  # noqa: BLE001 - any failure to build the builder means "not usable"
        raise DatasetNotFoundError(_missing_message(name, tfds_name, None, data_dir,
                                                    f"tfds.builder failed ({error})")) from error
    if not builder.is_prepared():
        raise DatasetNotFoundError(_missing_message(
            name, tfds_name, builder, data_dir, f"no prepared version {builder.version} at {builder.data_dir}"))
    known = list(builder.info.splits.keys())
    missing = [s for s in splits if known and s not in known]
    if missing:
        raise DatasetNotFoundError(_missing_message(
            name, tfds_name, builder, data_dir, f"splits {missing} missing (prepared: {known})"))
    return builder


def read_tfds_split(builder, split):
    """All (image, label) pairs of one split in record order, as uint8 [N, H, W, C] and int64 [N]."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(interleave_cycle_length=1, shuffle_seed=None)
    ds = builder.as_dataset(split=split, shuffle_files=False, as_supervised=True, read_config=read_config)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options).batch(_READ_BATCH)
    try:
        expected = int(builder.info.splits[split].num_examples)
    except (KeyError, TypeError):
        expected = None
    if expected:  # fill one preallocated array (no 2x peak from concatenation on SVHN extra)
        shape = tuple(builder.info.features["image"].shape)
        images = np.empty((expected, *shape), np.uint8)
        labels = np.empty((expected,), np.int64)
        n = 0
        for x, y in tfds.as_numpy(ds):
            if n + len(y) > expected:
                raise ValueError(f"{builder.name}/{split}: more records than the {expected} in dataset_info.")
            images[n:n + len(y)], labels[n:n + len(y)] = x, y
            n += len(y)
        if n != expected:
            raise ValueError(f"{builder.name}/{split}: read {n} records, dataset_info says {expected}.")
        return images, labels
    parts = [(x, y) for x, y in tfds.as_numpy(ds)]
    if not parts:
        raise ValueError(f"{builder.name}/{split} is empty.")
    return (np.concatenate([x for x, _ in parts]).astype(np.uint8, copy=False),
            np.concatenate([y for _, y in parts]).astype(np.int64))


def _load_tfds(name, data_dir, with_extra):
    if with_extra and name != "svhn":
        raise ValueError(f"with_extra applies to 'svhn' only, not {name!r}.")
    train_splits = ["train", "extra"] if with_extra else ["train"]
    builder = prepared_tfds_builder(name, data_dir, splits=[*train_splits, "test"])
    parts = [read_tfds_split(builder, split) for split in train_splits]
    if len(parts) == 1:
        train_x, train_y = parts[0]
    else:
        train_x = np.concatenate([x for x, _ in parts])
        train_y = np.concatenate([y for _, y in parts])
    test_x, test_y = read_tfds_split(builder, "test")
    offsets, start = {}, 0
    for split, (_, y) in zip(train_splits, parts):
        offsets[split] = [start, start + len(y)]
        start += len(y)
    metadata = {
        "source": "tfds",
        "tfds_name": builder.name,
        "tfds_version": str(builder.version),
        "data_dir": str(builder.data_dir),
        "train_splits": train_splits,
        "train_id_ranges": offsets,  # IDs [start, stop) of each TFDS split in the training array
        "read_order": "TFDS record order (shuffle_files=False, interleave_cycle_length=1)",
        "label_convention": ("digit identity (TFDS label % 10; UDA's 10->0)" if name == "svhn"
                             else "TFDS ClassLabel"),
    }
    return train_x, train_y, test_x, test_y, metadata


# --------------------------------------------------------------------------------------- digits
def _load_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng([DIGITS_SPLIT_SEED, 8])
    test, train = class_balanced_split(labels, [DIGITS_NUM_TEST], rng)  # both sorted: sklearn order
    metadata = {
        "source": "sklearn.datasets.load_digits",
        "pixel_scale": "round(v * 255 / 16) for v in 0..16",
        "train_test_split": f"class-stratified, {DIGITS_NUM_TEST} test, seed {DIGITS_SPLIT_SEED}; "
                            "both in sklearn order",
        "sklearn_index_train": train.tolist(),
    }
    return images[train], labels[train], images[test], labels[test], metadata


def load_image_dataset(name, data_dir=None, *, with_extra=False):
    """Train and test arrays of "cifar10", "svhn" (TFDS svhn_cropped) or "digits" (sklearn).

    Args:
      name: one of IMAGE_DATASETS.
      data_dir: TFDS data directory (None: TFDS's default, $TFDS_DATA_DIR or ~/tensorflow_datasets).
      with_extra: SVHN only: append the 531,131 `extra` images after the 73,257 `train` images.
    Returns:
      ImageDataset; metadata records the source, version, ID ranges and SHA-256 fingerprints.
    Raises:
      DatasetNotFoundError: the TFDS dataset is not prepared under data_dir (checked before reading).
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"Unknown image dataset {name!r}; choose one of {IMAGE_DATASETS}.")
    if name == "digits":
        if with_extra:
            raise ValueError("with_extra applies to 'svhn' only.")
        train_x, train_y, test_x, test_y, metadata = _load_digits()
    else:
        train_x, train_y, test_x, test_y, metadata = _load_tfds(name, data_dir, with_extra)
    metadata.update(num_train=len(train_y), num_test=len(test_y), image_shape=list(train_x.shape[1:]),
                    train_sha256=fingerprint(train_x, train_y), test_sha256=fingerprint(test_x, test_y))
    return ImageDataset(name=name, num_classes=10, train_x=train_x, train_y=train_y,
                        test_x=test_x, test_y=test_y, metadata=metadata)


# -------------------------------------------------------------------------- scaling and labels
def flips_horizontally(name):
    """Whether the augmentations of dataset `name` may mirror its images left-right."""
    if name not in HORIZONTAL_FLIP:
        raise ValueError(f"Unknown image dataset {name!r}; choose one of {IMAGE_DATASETS}.")
    return HORIZONTAL_FLIP[name]


def scale_images(images, normalization="fixmatch", dataset=None):
    """uint8 pixels -> float32 network input. numpy in, numpy out; tf.Tensor in, tf.Tensor out.

    "fixmatch": x·2/255 − 1 in [−1, 1] (the project default for both algorithms).
    "uda": (x/255 − mean)/std per channel with UDA's constants for dataset "cifar10" or "svhn".
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"Unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}.")
    if normalization == "uda" and dataset not in UDA_MEAN_STD:
        raise ValueError(f"UDA normalization has constants for {sorted(UDA_MEAN_STD)}, not {dataset!r}.")
    if isinstance(images, np.ndarray):
        x = images.astype(np.float32)
        if normalization == "fixmatch":
            return x * np.float32(2.0 / 255.0) - np.float32(1.0)
        mean, std = (np.asarray(v, np.float32) for v in UDA_MEAN_STD[dataset])
        return (x / np.float32(255.0) - mean) / std
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    if normalization == "fixmatch":
        return x * (2.0 / 255.0) - 1.0
    mean, std = (tf.constant(v, tf.float32) for v in UDA_MEAN_STD[dataset])
    return (x / 255.0 - mean) / std


def svhn_labels_as(labels, convention):
    """Map TFDS svhn_cropped labels (digit identity) to "tfds"/"uda" (unchanged) or "fixmatch" (y−1)."""
    labels = np.asarray(labels, np.int64)
    if convention in ("tfds", "uda"):
        return labels
    if convention == "fixmatch":  # FixMatch reads the .mat label l in 1..10 as l − 1; digit 0 is l=10
        return (labels - 1) % 10
    raise ValueError(f"Unknown SVHN label convention {convention!r}; choose tfds, uda or fixmatch.")


# ------------------------------------------------------------------------------------ SSL data
def _gather_sorted_inplace(x, idx, chunk=8192):
    """x[idx] for sorted unique idx, written over x's own rows (no second full-size copy).

    Safe because idx[i] >= i: chunk [a, b) reads rows >= a, which earlier chunks never wrote.
    Returns a view x[:len(idx)].
    """
    for start in range(0, len(idx), chunk):
        rows = idx[start:start + chunk]
        x[start:start + len(rows)] = x[rows]
    return x[:len(idx)]


def image_ssl_data(name, num_labeled, num_validation, seed, data_dir=None, *, with_extra=False,
                   labeled_in_unlabeled=True, split=None, dataset=None, return_split=False):
    """An SSLData of uint8 images [N, H, W, C] and int64 labels from a seeded split.

    Args:
      name, data_dir, with_extra: as load_image_dataset.
      num_labeled, num_validation, seed, labeled_in_unlabeled: as make_image_ssl_split.
      split: a precomputed ImageSplit (e.g. load_split of a resumed run); then num_labeled,
        num_validation and seed are not used.
      dataset: a preloaded ImageDataset (left unmodified); by default the dataset is loaded and
        its training array is compacted in place into the unlabeled array.
      return_split: also return the ImageSplit and the dataset metadata.
    Returns:
      SSLData (unlabeled_ids = training positions, unlabeled_true_y for diagnostics only), or
      (SSLData, ImageSplit, metadata) with return_split.
    """
    owned = dataset is None
    if owned:
        dataset = load_image_dataset(name, data_dir, with_extra=with_extra)
    elif dataset.name != name:
        raise ValueError(f"dataset is {dataset.name!r}, not {name!r}.")
    train_x, train_y = dataset.train_x, dataset.train_y
    if split is None:
        split = make_image_ssl_split(train_y, num_labeled, num_validation, seed,
                                     labeled_in_unlabeled=labeled_in_unlabeled)
    elif split.num_train != len(train_y) or (split.labels_sha256 and
                                             split.labels_sha256 != _labels_sha(train_y)):
        raise ValueError("split was made for another training set (size or label order differs).")
    labeled_x, val_x = train_x[split.labeled], train_x[split.validation]
    unlabeled_y = train_y[split.unlabeled]
    if owned:
        unlabeled_x = _gather_sorted_inplace(train_x, split.unlabeled)
    else:
        unlabeled_x = train_x[split.unlabeled]
    data = SSLData(
        name=name, num_classes=dataset.num_classes,
        labeled_x=labeled_x, labeled_y=train_y[split.labeled],
        unlabeled_x=unlabeled_x, unlabeled_ids=split.unlabeled.copy(), unlabeled_true_y=unlabeled_y,
        val_x=val_x, val_y=train_y[split.validation],
        test_x=dataset.test_x, test_y=dataset.test_y,
    )
    return (data, split, dataset.metadata) if return_split else data
