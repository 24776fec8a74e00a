"""An in-memory semi-supervised dataset: labeled, unlabeled (with stable IDs), validation, test."""
import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass
class SSLData:
    """Arrays of one split. Unlabeled example i has ID unlabeled_ids[i].

    unlabeled_true_y holds the hidden labels of the unlabeled examples: never used for
    training, only for diagnostics (how many pseudo-labels are wrong). unlabeled_ood, when set,
    marks the out-of-distribution unlabeled examples (diagnostics only, like the labels).
    """

    name: str
    num_classes: int
    labeled_x: np.ndarray
    labeled_y: np.ndarray
    unlabeled_x: np.ndarray
    unlabeled_ids: np.ndarray
    unlabeled_true_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    unlabeled_ood: Optional[np.ndarray] = None

    def with_validation_labeled(self):
        """A copy whose labeled set also holds the validation examples (a control: the labels a learned λ uses,
        given to the base algorithm); the validation set stays as it is."""
        return dataclasses.replace(self, labeled_x=np.concatenate([self.labeled_x, self.val_x]),
                                   labeled_y=np.concatenate([self.labeled_y, self.val_y]))

    def summary(self):
        ood = "" if self.unlabeled_ood is None else f" ({int(np.sum(self.unlabeled_ood))} out of distribution)"
        return (f"{self.name}: {len(self.labeled_y)} labeled, {len(self.unlabeled_ids)} unlabeled{ood}, "
                f"{len(self.val_y)} validation, {len(self.test_y)} test, {self.num_classes} classes")


def class_balanced_split(labels, sizes, rng):
    """Split indices of `labels` into disjoint parts, each as class-balanced as possible.

    Args:
      labels: [N] integer labels of the pool.
      sizes: list of part sizes (the remainder is returned as the last part).
      rng: numpy Generator.
    Returns:
      list of len(sizes) + 1 index arrays.
    """
    classes = np.unique(labels)
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in classes}
    parts = []
    for size in sizes:
        if size < 0:
            raise ValueError(f"Split sizes must be >= 0, got {sizes}.")
        picked = []
        while len(picked) < size:
            available = [c for c in classes if pools[c]]
            if not available:
                raise ValueError(f"Cannot take splits of sizes {sizes} from {len(labels)} examples.")
            # Round-robin over classes, so every part holds ~size/K of each class.
            for c in available[: size - len(picked)]:
                picked.append(pools[c].pop())
        parts.append(np.sort(np.array(picked, dtype=np.int64)))
    rest = np.sort(np.array([i for c in classes for i in pools[c]], dtype=np.int64))
    return parts + [rest]
