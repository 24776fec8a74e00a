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
    # Mann-Whitney U from average ranks (1-based).
    ranks = _average_ranks(scores) + 1.0
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


# Unlabeled examples grouped by how many Λ steps gave them a non-zero hypergradient (inclusive bounds).
HYPERGRADIENT_COUNT_GROUPS = {"never": (0, 0), "1-2": (1, 2), "3+": (3, np.inf)}


def count_group_masks(counts):
    """{group name: [N] bool mask} of HYPERGRADIENT_COUNT_GROUPS for per-example counts [N]."""
    counts = np.asarray(counts)
    return {name: (counts >= low) & (counts <= high) for name, (low, high) in HYPERGRADIENT_COUNT_GROUPS.items()}


def weights_report(weights, wrong, probs, counts=None, ood=None, seeds=None, lowest_fraction=0.05, bins=20):
    """What the learned λ say about the unlabeled examples (the numbers behind inspect_weights).

    Args:
      weights: [N] final λ_u; wrong: [N] bool, the final model's pseudo-label of u is wrong;
      probs: [N, K] the final model's class probabilities of u (clean view);
      counts: optional [N] number of Λ steps that gave u a non-zero hypergradient;
      ood: optional [N] bool, u is out of distribution; seeds: optional [N] run labels.
    Returns:
      dict with auroc_low_weight_vs_wrong (pooled, and per seed with seeds), wrong_rate_all,
      wrong_rate_lowest_5pct (ties by their expected share), lambda_histogram {edges, counts},
      spearman correlations of λ with confidence and margin, per_class {pseudo-label: n, λ mean,
      wrong rate}, and, when given, by_hypergradient_count and auroc_low_weight_vs_ood.
    """
    weights = np.asarray(weights, np.float64)
    wrong = np.asarray(wrong, bool)
    probs = np.asarray(probs, np.float64)
    top2 = np.sort(probs, axis=1)[:, -2:]
    confidence, margin = top2[:, 1], top2[:, 1] - top2[:, 0]
    pseudo = probs.argmax(1)
    diagnostics = weight_diagnostics(weights, wrong, lowest_fraction, groups=seeds)
    edges = np.linspace(weights.min(), max(weights.max(), weights.min() + 1e-12), bins + 1)
    report = {
        "num_examples": int(len(weights)),
        "auroc_low_weight_vs_wrong": diagnostics["auroc_low_weight_vs_wrong"],
        "wrong_rate_all": diagnostics["wrong_pseudo_label_rate_all"],
        f"wrong_rate_lowest_{int(round(100 * lowest_fraction))}pct":
            diagnostics[f"wrong_pseudo_label_rate_lowest_{int(round(100 * lowest_fraction))}pct"],
        "lambda_histogram": {"edges": edges.tolist(), "counts": np.histogram(weights, edges)[0].tolist()},
        "spearman_lambda_vs_confidence": spearman(weights, confidence),
        "spearman_lambda_vs_margin": spearman(weights, margin),
        "per_class": {int(c): {"n": int((pseudo == c).sum()), "lambda_mean": float(weights[pseudo == c].mean()),
                               "wrong_rate": float(wrong[pseudo == c].mean())} for c in np.unique(pseudo)},
    }
    for key in ("auroc_low_weight_vs_wrong_per_seed", "auroc_low_weight_vs_wrong_per_seed_mean",
                "auroc_low_weight_vs_wrong_per_seed_std"):
        if key in diagnostics:
            report[key] = diagnostics[key]
    if counts is not None:
        report["by_hypergradient_count"] = {
            name: {"fraction": float(inside.mean()),
                   "wrong_rate": float(wrong[inside].mean()) if inside.any() else None,
                   "auroc_low_weight_vs_wrong": auroc(-weights[inside], wrong[inside]) if inside.any() else None}
            for name, inside in count_group_masks(counts).items()}
    if ood is not None:
        report["auroc_low_weight_vs_ood"] = auroc(-weights, np.asarray(ood, bool))
    return report


def spearman(a, b):
    """Spearman rank correlation (average ranks for ties); nan for a constant input."""
    ra, rb = _average_ranks(a), _average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _average_ranks(values):
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    # Ties share the mean of their ranks.
    unique, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / np.bincount(inverse))[inverse]
