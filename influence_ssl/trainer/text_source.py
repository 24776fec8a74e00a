"""Text batches for UDA: token ids in memory, the augmented copy of each unlabeled review made offline.

UDA's text code augments once before training (aug_copy=1), so nothing is random here but the
sampling: the original and the augmented view of an unlabeled review are drawn together as one row
of a [N, 2, L] array, with InMemorySource's stateless sampling (same order for every method of a seed).
"""
import dataclasses

import numpy as np

from influence_ssl.trainer.in_memory_source import InMemorySource


class PairedTextSource(InMemorySource):
    """Batches with keys labeled_x [B, L], labeled_y [B], unlabeled_weak (UDA's "ori") and
    unlabeled_strong ("aug") [U, L], unlabeled_x (= unlabeled_weak), unlabeled_ids [U]; outer batches
    add val_x, val_y. data: a TextSSLData (int32 token ids, unlabeled_aug_x row-aligned)."""

    def __init__(self, data, labeled_batch, unlabeled_batch, validation_batch, seed, validation_draw="permutation",
                 validation_labeled=False):
        if data.unlabeled_aug_x is None or data.unlabeled_aug_x.shape != data.unlabeled_x.shape:
            raise ValueError("PairedTextSource needs unlabeled_aug_x of unlabeled_x's shape.")
        self.text_data = data
        paired = dataclasses.replace(data, unlabeled_x=np.stack([data.unlabeled_x, data.unlabeled_aug_x], axis=1))
        super().__init__(paired, labeled_batch, unlabeled_batch, validation_batch, seed, validation_draw,
                         validation_labeled)

    @staticmethod
    def scale(x):
        """The model's input for stored rows (as AugmentedImageSource.scale): token ids already are."""
        return x

    @staticmethod
    def _split_views(batch):
        pair = batch.pop("unlabeled_x")
        batch.update(unlabeled_weak=pair[:, 0], unlabeled_strong=pair[:, 1], unlabeled_x=pair[:, 0])
        return batch

    def train_batch(self, step):
        return self._split_views(super().train_batch(step))

    def outer_batch(self, outer_step):
        return self._split_views(super().outer_batch(outer_step))
