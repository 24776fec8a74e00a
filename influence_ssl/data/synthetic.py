"""The 2-D datasets of Sec. 4.1: linearly separable, circles and moons.

Each has 10 labeled, 30 validation and 1000 unlabeled training examples, plus a large test
set from the same distribution (ground truth for accuracy). The generators are
scikit-learn's (offline); the linear problem is uniform on [-1, 1]^2 split by a line.
"""
import numpy as np
from sklearn import datasets as sk_datasets

from influence_ssl.data.ssl_data import SSLData, class_balanced_split

SYNTHETIC_DATASETS = ("linear", "circles", "moons")

# Noise levels: the classes touch but the boundary is clear, as in the paper's figures.
MOONS_NOISE = 0.15
CIRCLES_NOISE = 0.08
CIRCLES_FACTOR = 0.5
LINEAR_NORMAL = np.array([1.0, -0.6])  # the ground-truth boundary: x · normal = 0


def sample_points(name, n, rng):
    """n points and their labels from dataset `name`. Returns ([n, 2] float32, [n] int64)."""
    seed = int(rng.integers(2**31 - 1))
    if name == "moons":
        x, y = sk_datasets.make_moons(n, noise=MOONS_NOISE, random_state=seed)
    elif name == "circles":
        x, y = sk_datasets.make_circles(n, noise=CIRCLES_NOISE, factor=CIRCLES_FACTOR, random_state=seed)
    elif name == "linear":
        x = rng.uniform(-1.0, 1.0, size=(n, 2))
        y = (x @ LINEAR_NORMAL > 0).astype(np.int64)
    else:
        raise ValueError(f"Unknown synthetic dataset {name!r}; choose one of {SYNTHETIC_DATASETS}.")
    return x.astype(np.float32), y.astype(np.int64)


def make_synthetic(name, seed, num_labeled=10, num_validation=30, num_unlabeled=1000, num_test=10000):
    """One seeded draw of a synthetic SSL problem.

    The training pool (labeled + validation + unlabeled) and the test set are independent
    draws; labeled and validation are class-balanced and disjoint from each other and from
    the unlabeled set.
    """
    for label, value in [("num_labeled", num_labeled), ("num_validation", num_validation),
                         ("num_unlabeled", num_unlabeled), ("num_test", num_test)]:
        if value < 1:
            raise ValueError(f"{label} must be >= 1, got {value}.")
    rng = np.random.default_rng([seed, 2020])
    x, y = sample_points(name, num_labeled + num_validation + num_unlabeled, rng)
    labeled, val, unlabeled = class_balanced_split(y, [num_labeled, num_validation], rng)
    test_x, test_y = sample_points(name, num_test, rng)
    return SSLData(
        name=name,
        num_classes=2,
        labeled_x=x[labeled], labeled_y=y[labeled],
        unlabeled_x=x[unlabeled], unlabeled_ids=np.arange(len(unlabeled), dtype=np.int64),
        unlabeled_true_y=y[unlabeled],
        val_x=x[val], val_y=y[val],
        test_x=test_x, test_y=test_y,
    )
