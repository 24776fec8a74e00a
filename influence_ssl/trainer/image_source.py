"""Image batches for UDA / FixMatch: uint8 arrays in memory, scaled and augmented inside the step.

Every random draw is stateless, a function of (seed, step, stream), so the data order and the
augmentations of step k are the same for every method of a seed and after a resume. The
augmentations are given as callables (the experiments pass influence_ssl.augment's), so the
trainer does not depend on any augmentation library.
"""
import numpy as np
import tensorflow as tf

from influence_ssl.data import scale_images
from influence_ssl.trainer.in_memory_source import InMemorySource


class AugmentedImageSource(InMemorySource):
    """Batches with keys labeled_x (weak view), labeled_y, unlabeled_weak, unlabeled_strong
    (= unlabeled_x, the weak view, for Pseudo-Label), unlabeled_ids; outer batches add val_x, val_y
    (validation images are not augmented).

    Args:
      data: an SSLData with uint8 images [N, H, W, C].
      weak: callable (images [B, H, W, C] float in [-1, 1], seed [2]) -> images.
      strong: the same for the strong view (it receives the raw scaled images; a strong policy
        that starts from the weak view applies the weak augmentation itself).
      scale: uint8 -> float conversion (numpy in, numpy out; tensor in, tensor out).
      probe: optional adaptive policy with `probe_batch(images, seed) -> (images, ops, values)`,
        `update(ops, values, probs, labels)` and checkpointable state (CTAugment). Its probes are
        the weak labeled batch; `observe` feeds the model's predictions back after each θ step.
    """

    def __init__(self, data, labeled_batch, unlabeled_batch, validation_batch, seed, weak, strong,
                 scale=scale_images, probe=None, validation_draw="permutation", validation_labeled=False):
        super().__init__(data, labeled_batch, unlabeled_batch, validation_batch, seed, validation_draw,
                         validation_labeled)
        self.weak, self.strong, self.scale, self.probe = weak, strong, scale, probe
        self.state = probe  # checkpointed with the run (the original FixMatch did not save CTA's rates)
        # Augmentation is worth overlapping with the step (tf.data, one step ahead), except with CTAugment,
        # whose rates change after every step: a batch made ahead would use the previous step's rates.
        self.pipelined = probe is None
        self._eval_sets = None


    def _seed(self, step, stream):
        return tf.stack([tf.constant(self.seed * 1000 + stream, tf.int64), tf.cast(step, tf.int64)])

    def _augment(self, batch, step, offset):
        labeled = self.scale(batch["labeled_x"])
        unlabeled = self.scale(batch["unlabeled_x"])
        weak_u = self.weak(unlabeled, self._seed(step, offset + 1))
        out = dict(batch)
        out.update({
            "labeled_x": self.weak(labeled, self._seed(step, offset)),
            "unlabeled_weak": weak_u,
            "unlabeled_x": weak_u,
            "unlabeled_strong": self.strong(unlabeled, self._seed(step, offset + 2)),
        })
        if "val_x" in batch:
            out["val_x"] = self.scale(batch["val_x"])
        return out

    def train_batch(self, step):
        batch = self._augment(super().train_batch(step), step, offset=10)
        if self.probe is not None:
            batch["probe_x"], batch["probe_ops"], batch["probe_values"] = self.probe.probe_batch(
                batch["labeled_x"], self._seed(step, 13))
        return batch

    def observe(self, model, batch):
        """After a θ step: update the adaptive policy from the model's predictions on the probes
        (inference mode; FixMatch used its EMA model here)."""
        if self.probe is None:
            return tf.no_op()
        probs = tf.nn.softmax(model(batch["probe_x"], training=False))
        return self.probe.update(batch["probe_ops"], batch["probe_values"], probs, batch["labeled_y"])

    def outer_batch(self, outer_step):
        return self._augment(super().outer_batch(outer_step), outer_step, offset=20)

    def validation_batch(self, outer_step):
        batch = self._validation_rows(outer_step)
        return {"val_x": self.scale(batch["val_x"]), "val_y": batch["val_y"]}

    def eval_sets(self):
        if self._eval_sets is None:  # scaled once, in chunks
            scale = lambda x: np.concatenate([np.asarray(self.scale(x[i:i + 4096])) for i in range(0, len(x), 4096)])
            self._eval_sets = {"validation": (scale(self.data.val_x), self.data.val_y),
                               "test": (scale(self.data.test_x), self.data.test_y)}
        return self._eval_sets
