"""Image datasets: TFDS loading on mock data, missing-data errors, digits, splits, scaling, labels."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import config_of

from influence_ssl.data import (
    DatasetNotFoundError,
    SSLData,
    image_ssl_data,
    load_image_dataset,
    load_split,
    make_image_ssl_split,
    save_split,
    scale_images,
    svhn_labels_as,
)
from influence_ssl.data import images as images_lib
from influence_ssl.runs import build
from influence_ssl.trainer import ConfigError

NUM_MOCK = 40


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A data_dir whose cifar10 and svhn_cropped folders hold metadata only (prepared-looking)."""
    root = tmp_path_factory.mktemp("tfds")
    for name in ("cifar10", "svhn_cropped"):
        builder = tfds.builder(name, data_dir=str(root))
        os.makedirs(builder.data_dir, exist_ok=True)
        builder.info.write_to_directory(builder.data_dir)
    return str(root)


@pytest.fixture()
def mock_tfds(tfds_dir):
    with tfds.testing.mock_data(num_examples=NUM_MOCK, data_dir=tfds_dir):
        yield tfds_dir


@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_tfds_loader_on_mock_data(mock_tfds, name):
    first = load_image_dataset(name, mock_tfds)
    second = load_image_dataset(name, mock_tfds)
    assert first.train_x.shape == (NUM_MOCK, 32, 32, 3) and first.train_x.dtype == np.uint8
    assert first.train_y.shape == (NUM_MOCK,) and first.train_y.dtype == np.int64
    assert first.test_x.shape == (NUM_MOCK, 32, 32, 3) and first.test_y.dtype == np.int64
    assert first.train_y.min() >= 0 and first.train_y.max() < 10 and first.num_classes == 10
    # IDs are positions in record order: the same order as a plain sequential TFDS read, every time.
    reference = tfds.load(images_lib.TFDS_NAMES[name], split="train", data_dir=mock_tfds,
                          shuffle_files=False, as_supervised=True)
    ref_x = np.stack([x for x, _ in tfds.as_numpy(reference)])
    np.testing.assert_array_equal(first.train_x, ref_x)
    np.testing.assert_array_equal(first.train_x, second.train_x)
    np.testing.assert_array_equal(first.train_y, second.train_y)
    assert first.metadata["train_sha256"] == second.metadata["train_sha256"]
    assert first.metadata["train_id_ranges"] == {"train": [0, NUM_MOCK]}


def test_svhn_extra_is_appended_after_train(mock_tfds):
    data = load_image_dataset("svhn", mock_tfds, with_extra=True)
    assert data.train_x.shape[0] == 2 * NUM_MOCK
    assert data.metadata["train_id_ranges"] == {"train": [0, NUM_MOCK], "extra": [NUM_MOCK, 2 * NUM_MOCK]}
    with pytest.raises(ValueError, match="svhn"):
        load_image_dataset("cifar10", mock_tfds, with_extra=True)


def test_image_ssl_data_on_mock_data(mock_tfds):
    full = load_image_dataset("cifar10", mock_tfds)
    data, split, meta = image_ssl_data("cifar10", 10, 5, seed=1, data_dir=mock_tfds, return_split=True)
    assert isinstance(data, SSLData) and data.labeled_x.dtype == np.uint8
    np.testing.assert_array_equal(data.unlabeled_ids, split.unlabeled)
    assert len(data.unlabeled_ids) == NUM_MOCK - 5
    # Each array row is the training image of its ID (in-place compaction of the owned array).
    np.testing.assert_array_equal(data.unlabeled_x, full.train_x[data.unlabeled_ids])
    np.testing.assert_array_equal(data.unlabeled_true_y, full.train_y[data.unlabeled_ids])
    np.testing.assert_array_equal(data.labeled_x, full.train_x[split.labeled])
    np.testing.assert_array_equal(data.val_y, full.train_y[split.validation])
    assert meta["train_sha256"] == full.metadata["train_sha256"]
    # A preloaded dataset is not modified and gives the same SSLData.
    before = full.train_x.copy()
    again = image_ssl_data("cifar10", 10, 5, seed=1, dataset=full)
    np.testing.assert_array_equal(full.train_x, before)
    np.testing.assert_array_equal(again.unlabeled_x, data.unlabeled_x)


def test_missing_dataset_raises_one_clear_error(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_image_dataset("cifar10", str(tmp_path))
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for part in ["'cifar10'", str(tmp_path), "tfds build cifar10", "cifar10/3.0.2", "Nothing is downloaded"]:
        assert part in message, part
    assert not any(files for _, _, files in os.walk(tmp_path))  # no download attempted
    with pytest.raises(DatasetNotFoundError, match="svhn_cropped"):
        image_ssl_data("svhn", 10, 5, seed=0, data_dir=str(tmp_path))


class _FakeSplitInfo:
    def __init__(self, n):
        self.num_examples = n


class _FakeBuilder:
    """Enough of a DatasetBuilder for read_tfds_split's preallocated path (dataset_info sizes known)."""

    name = "fake"

    def __init__(self, n, claimed):
        self.images = np.arange(n * 2 * 2 * 3, dtype=np.uint8).reshape(n, 2, 2, 3)
        self.labels = np.arange(n, dtype=np.int64) % 10
        self.info = type("Info", (), {"splits": {"train": _FakeSplitInfo(claimed)},
                                      "features": {"image": type("F", (), {"shape": (2, 2, 3)})}})

    def as_dataset(self, split, shuffle_files, as_supervised, read_config):
        assert shuffle_files is False and as_supervised and read_config.interleave_cycle_length == 1
        return tf.data.Dataset.from_tensor_slices((self.images, self.labels))


def test_read_split_preallocated_path():
    images_lib_batch = images_lib._READ_BATCH
    images_lib._READ_BATCH = 4  # several batches
    try:
        builder = _FakeBuilder(10, 10)
        x, y = images_lib.read_tfds_split(builder, "train")
        np.testing.assert_array_equal(x, builder.images)
        np.testing.assert_array_equal(y, builder.labels)
        for claimed in (9, 11):
            with pytest.raises(ValueError, match="dataset_info"):
                images_lib.read_tfds_split(_FakeBuilder(10, claimed), "train")
    finally:
        images_lib._READ_BATCH = images_lib_batch


def test_gather_sorted_inplace_matches_fancy_indexing():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(1000, 2, 2, 1), dtype=np.uint8)
    idx = np.sort(rng.choice(1000, size=900, replace=False))
    expected = x[idx]
    np.testing.assert_array_equal(images_lib._gather_sorted_inplace(x, idx, chunk=64), expected)


def test_digits_loader():
    first, second = load_image_dataset("digits"), load_image_dataset("digits")
    assert first.train_x.shape == (1297, 8, 8, 1) and first.test_x.shape == (500, 8, 8, 1)
    assert first.train_x.dtype == np.uint8 and first.train_y.dtype == np.int64
    assert first.train_x.max() == 255 and first.train_x.min() == 0
    assert np.bincount(first.test_y).tolist() == [50] * 10
    np.testing.assert_array_equal(first.train_x, second.train_x)
    np.testing.assert_array_equal(first.test_y, second.test_y)
    data = image_ssl_data("digits", 20, 30, seed=0)
    assert data.labeled_x.shape == (20, 8, 8, 1) and len(data.unlabeled_ids) == 1297 - 30


def imbalanced_labels(n=1000):
    rng = np.random.default_rng(123)
    return rng.choice(10, size=n, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum()).astype(np.int64)


def test_split_determinism_balance_and_disjointness():
    labels = imbalanced_labels()
    a = make_image_ssl_split(labels, 40, 100, seed=3)
    b = make_image_ssl_split(labels, 40, 100, seed=3)
    c = make_image_ssl_split(labels, 40, 100, seed=4)
    for field in ("labeled", "validation", "unlabeled"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.labeled, c.labeled) and not np.array_equal(a.validation, c.validation)
    assert len(a.labeled) == 40 and len(a.validation) == 100
    assert np.intersect1d(a.labeled, a.validation).size == 0
    assert np.bincount(labels[a.labeled], minlength=10).tolist() == [4] * 10
    assert np.bincount(labels[a.validation], minlength=10).tolist() == [10] * 10
    # unlabeled = all training images minus validation (labeled included), sorted.
    np.testing.assert_array_equal(a.unlabeled, np.setdiff1d(np.arange(len(labels)), a.validation))
    assert np.isin(a.labeled, a.unlabeled).all()
    strict = make_image_ssl_split(labels, 40, 100, seed=3, labeled_in_unlabeled=False)
    assert len(strict.unlabeled) == len(labels) - 140 and not np.isin(a.labeled, strict.unlabeled).any()
    with pytest.raises(ValueError, match="exceeds"):
        make_image_ssl_split(labels, 900, 101, seed=0)


def test_split_golden_values():
    """Pins the generator: a change here changes every recorded split."""
    split = make_image_ssl_split(np.arange(100) % 10, 10, 20, seed=0)
    assert split.labeled.tolist() == [24, 30, 61, 68, 83, 86, 87, 92, 95, 99]
    assert split.validation.tolist() == [12, 13, 15, 16, 17, 29, 31, 35, 38, 40,
                                         44, 47, 52, 63, 81, 88, 89, 90, 94, 96]


def test_split_save_load_roundtrip(tmp_path):
    labels = imbalanced_labels()
    split = make_image_ssl_split(labels, 40, 100, seed=3)
    path = tmp_path / "split.json"
    save_split(path, split, dataset="cifar10")
    assert json.loads(path.read_text())["metadata"] == {"dataset": "cifar10"}
    loaded = load_split(path, train_labels=labels)
    for field in ("labeled", "validation", "unlabeled"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(split, field))
    assert (loaded.seed, loaded.num_train, loaded.labels_sha256) == (3, 1000, split.labels_sha256)
    with pytest.raises(ValueError, match="another training set"):
        load_split(path, train_labels=labels[::-1])


def test_scaling_and_label_conventions():
    pixels = np.array([[[[0, 128, 255]]]], np.uint8)
    scaled = scale_images(pixels)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled.ravel(), [-1.0, 128 * 2 / 255 - 1, 1.0], atol=1e-6)
    np.testing.assert_allclose(scale_images(tf.constant(pixels)).numpy(), scaled, atol=1e-6)
    uda = scale_images(pixels, "uda", "cifar10").ravel()
    mean, std = images_lib.UDA_MEAN_STD["cifar10"]
    np.testing.assert_allclose(uda, [(0 - mean[0]) / std[0], (128 / 255 - mean[1]) / std[1],
                                     (1 - mean[2]) / std[2]], rtol=1e-5)
    np.testing.assert_allclose(scale_images(tf.constant(pixels), "uda", "cifar10").numpy().ravel(), uda, rtol=1e-5)
    with pytest.raises(ValueError):
        scale_images(pixels, "uda", "digits")
    digits = np.arange(10)
    assert svhn_labels_as(digits, "uda").tolist() == digits.tolist()
    assert svhn_labels_as(digits, "fixmatch").tolist() == [9, 0, 1, 2, 3, 4, 5, 6, 7, 8]


def test_a_run_configuration_loads_its_seeds_split(mock_tfds):
    """influence_ssl.runs.build: the split of (sizes, seed), the same as the data module's, with the split
    returned for saving; a split that does not fit is a one-line ConfigError before any model exists."""
    config = config_of(["--num_labeled=20", "--num_validation=30", "--batch=10", "--validation_batch=30", "--seed=3"])
    data, split, meta = build.load_data(config)
    reference = image_ssl_data("digits", 20, 30, seed=3)
    np.testing.assert_array_equal(data.labeled_x, reference.labeled_x)
    np.testing.assert_array_equal(data.unlabeled_ids, split.unlabeled)
    assert split.seed == 3 and len(split.validation) == 30
    cifar = config_of(["--dataset=cifar10", f"--data_dir={mock_tfds}", "--num_labeled=10", "--num_validation=5",
                       "--validation_batch=5", "--batch=10", "--seed=1"])
    data, split, meta = build.load_data(cifar)
    assert data.labeled_x.shape == (10, 32, 32, 3) and len(data.unlabeled_ids) == NUM_MOCK - 5
    assert meta["train_sha256"]
    with pytest.raises(ConfigError, match=r"--num_labeled=40 with --num_validation=5 does not fit cifar10"):
        build.load_data(config_of(["--dataset=cifar10", f"--data_dir={mock_tfds}", "--num_labeled=40",
                                   "--num_validation=5", "--validation_batch=5", "--batch=10"]))
