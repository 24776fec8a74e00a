"""Per-example records of a finished run, for `experiments.inspect_weights` (no flags here).

A record is one .npz per run: for every unlabeled example its ID, final λ, the number of Λ steps that
gave it a non-zero hypergradient, its true label (hidden from training), the final model's class
probabilities on its clean view, whether it is out of distribution, and what to draw it with: the
2-D point (synthetic runs) or, for images, the pictures of the 32 lowest- and 32 highest-weighted.
"""
import numpy as np

from influence_ssl.metrics import softmax

RECORD_NAME = "unlabeled_diagnostics.npz"
NUM_EXTREMES = 32


def extremes(weights, ids, count=NUM_EXTREMES):
    """Row indices of the `count` lowest and highest λ (ties by ID, so the choice is reproducible)."""
    order = np.lexsort((ids, weights))
    return order[:count], order[::-1][:count]


def collect(trainer, data, seed, clean_unlabeled, kind, ood=None):
    """The record of `trainer`'s finished run on `data` (an SSLData).

    clean_unlabeled: the model's input for every unlabeled example, un-augmented ([N, ...] numpy).
    kind: "image" (data.unlabeled_x are uint8 pictures) or "points" (2-D inputs, drawn as a scatter).
    """
    ids = np.asarray(data.unlabeled_ids)
    per_example = trainer.weights.num_examples > 1  # a single shared λ (or none) is one table entry
    weights = trainer.weights.to_numpy()[ids] if per_example else np.full(len(ids), trainer.weights.to_numpy()[0])
    counts = trainer.weights.counts_numpy()[ids] if per_example else np.zeros(len(ids), np.int32)
    record = {"ids": ids, "lambda": weights, "counts": counts, "true_y": np.asarray(data.unlabeled_true_y),
              "probs": softmax(trainer.logits(np.asarray(clean_unlabeled))).astype(np.float32),
              "ood": np.zeros(len(ids), bool) if ood is None else np.asarray(ood, bool),
              "seed": np.int64(seed), "kind": np.str_(kind), "dataset": np.str_(data.name)}
    if kind == "points":
        record["points"] = np.asarray(data.unlabeled_x, np.float32)
    else:
        low, high = extremes(weights, ids)
        record.update({"low_rows": low, "high_rows": high,
                       "low_images": np.asarray(data.unlabeled_x[low]),
                       "high_images": np.asarray(data.unlabeled_x[high])})
    return record


def save(path, record):
    np.savez_compressed(path, **record)
    return path


def load(path):
    with np.load(path, allow_pickle=False) as f:
        return {key: f[key] for key in f.files}
