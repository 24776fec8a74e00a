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


def lowest_fraction_rate(weights, flags, fraction):
    """The expected rate of `flags` among the `fraction` of examples with the lowest weights.

    Ties are counted by their expected share: when the k-th lowest weight is shared by t examples of
    which only r fit into the k lowest, each of them counts r/t. (A stable sort would pick those r by
    position, i.e. by seed and ID, not by weight: many λ end at exactly 0.)

    Args:
      weights: [N] floats; flags: [N] bool; fraction: in (0, 1].
    Returns:
      float, the expected fraction of flagged examples among the k = max(1, round(fraction·N)) lowest.
    """
    weights = np.asarray(weights, np.float64)
    flags = np.asarray(flags, bool)
    k = max(1, int(round(fraction * len(weights))))
    threshold = np.sort(weights)[k - 1]
    below = weights < threshold
    tied = weights == threshold
    share = (k - below.sum()) / tied.sum()
    return float((flags[below].sum() + share * flags[tied].sum()) / k)


def weight_diagnostics(weights, wrong, lowest_fraction=0.05, groups=None):
    """How the learned λ relate to wrong pseudo-labels.

    Args:
      weights: [N] final λ_u.
      wrong: [N] bool, the pseudo-label of u is wrong.
      lowest_fraction: the fraction of lowest weights to look at.
      groups: optional [N] run labels (e.g. the seed): AUROC is then also given per group, since
        pooling mixes the λ scales of different runs.
    Returns:
      dict: wrong_pseudo_label_rate_all, wrong_pseudo_label_rate_lowest_5pct (for the default
      fraction; ties by their expected share), auroc_low_weight_vs_wrong (pooled AUROC of -λ as a
      detector of wrong) and, with groups, auroc_low_weight_vs_wrong_per_seed (list, in the order of
      np.unique(groups)) with its _mean and _std.
    """
    weights = np.asarray(weights, np.float64)
    wrong = np.asarray(wrong, bool)
    out = {
        "wrong_pseudo_label_rate_all": float(wrong.mean()),
        f"wrong_pseudo_label_rate_lowest_{int(round(100 * lowest_fraction))}pct":
            lowest_fraction_rate(weights, wrong, lowest_fraction),
        "auroc_low_weight_vs_wrong": auroc(-weights, wrong),
    }
    if groups is not None:
        groups = np.asarray(groups)
        per_group = [auroc(-weights[groups == g], wrong[groups == g]) for g in np.unique(groups)]
        mean, std = mean_std([a for a in per_group if not np.isnan(a)] or [float("nan")])
        out.update({"auroc_low_weight_vs_wrong_per_seed": per_group,
                    "auroc_low_weight_vs_wrong_per_seed_mean": mean,
                    "auroc_low_weight_vs_wrong_per_seed_std": std})
    return out


def mean_std(values):
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
