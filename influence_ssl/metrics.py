"""Plain-numpy metrics for reports: accuracy, AUROC, pseudo-label diagnostics of the weights."""
import numpy as np


def softmax(logits):
    """Row-wise softmax of [N, K] logits, in float64."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def auroc(scores, positives):
    """Area under the ROC curve of `scores` as a detector of `positives` (ties count 1/2).

    Args:
      scores: [N] higher = more likely positive.
      positives: [N] bool.
    Returns:
      float in [0, 1], or nan when one class is empty.
    """
    scores = np.asarray(scores, np.float64)
    positives = np.asarray(positives, bool)
    num_pos, num_neg = positives.sum(), (~positives).sum()
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    # Mann-Whitney U from average ranks.
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positives].sum() - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def weight_diagnostics(weights, wrong, lowest_fraction=0.05):
    """How the learned λ relate to wrong pseudo-labels.

    Args:
      weights: [N] final λ_u.
      wrong: [N] bool, the pseudo-label of u is wrong.
      lowest_fraction: the fraction of lowest weights to look at.
    Returns:
      dict: wrong_pseudo_label_rate_all, wrong_pseudo_label_rate_lowest_5pct (for the
      default fraction), auroc_low_weight_vs_wrong (AUROC of -λ as a detector of wrong).
    """
    weights = np.asarray(weights, np.float64)
    wrong = np.asarray(wrong, bool)
    k = max(1, int(round(lowest_fraction * len(weights))))
    # Stable order: ties broken by index, so the result does not depend on the sort.
    lowest = np.argsort(weights, kind="mergesort")[:k]
    return {
        "wrong_pseudo_label_rate_all": float(wrong.mean()),
        f"wrong_pseudo_label_rate_lowest_{int(round(100 * lowest_fraction))}pct": float(wrong[lowest].mean()),
        "auroc_low_weight_vs_wrong": auroc(-weights, wrong),
    }


def mean_std(values):
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
