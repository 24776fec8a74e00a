"""A study's results: per-method values over seeds, paired statistics (influence_ssl.stats, Holm across the
rows of one table), and the learned weights' diagnostics; one JSON format for every study."""
import numpy as np

from influence_ssl import stats
from influence_ssl.metrics import auroc, count_group_masks, lowest_fraction_rate, mean_std, weight_diagnostics

FORMAT = "influence_ssl.study/1"
# The benchmarks' JSON formats (experiments/benchmarks/<name>.py writes, experiments.report reads).
SEC44_FORMAT = "influence_ssl.sec44/1"
PERGRAD_SPEED_FORMAT = "influence_ssl.pergrad_speed/1"
MADAM_EPSILON_FORMAT = "influence_ssl.madam_epsilon/1"
AUGMENT_SPEED_FORMAT = "influence_ssl.augment_speed/1"
DAMPING_STUDY_FORMAT = "influence_ssl.damping_study/1"


def method_values(per_seed, seeds, name, metric):
    return [per_seed[s][name][1].get(metric, float("nan")) for s in seeds]


def summarize_methods(per_seed, methods, seeds, metric):
    """{name: {label, values, mean, std, chosen (overrides per seed), x, paper, diverged_seeds}}."""
    out = {}
    for m in methods:
        values = method_values(per_seed, seeds, m.name, metric)
        finite = [v for v in values if np.isfinite(v)]
        mean, std = mean_std(finite) if finite else (float("nan"), float("nan"))
        entry = {"label": m.label, "values": values, "mean": mean, "std": std,
                 "chosen": [per_seed[s][m.name][0] for s in seeds]}
        diverged = [s for s in seeds if "diverged" in per_seed[s][m.name][1]]
        if diverged:
            entry["diverged_seeds"] = diverged
        if m.x is not None:
            entry["x"] = m.x
        if m.paper is not None:
            entry["paper"] = list(m.paper)
        out[m.name] = entry
    return out


def paired_table(summary, pairs):
    """[(a, b)] -> {"a - b": paired statistics of a over b, with p_holm across these rows}. Seeds where either
    method has no value (a diverged run) are left out of that row."""
    rows = {}
    for a, b in pairs:
        x, y = np.asarray(summary[a]["values"], float), np.asarray(summary[b]["values"], float)
        keep = np.isfinite(x) & np.isfinite(y)
        if keep.sum() >= 1:
            rows[f"{a} - {b}"] = stats.paired(x[keep], y[keep])
    return stats.compare_table(rows)


def pooled_weights(per_seed, seeds, name):
    """The per-example arrays of method `name` over seeds, concatenated, with the seed of each row; None if a
    seed has none (a diverged run)."""
    arrays = [per_seed[s][name][2] for s in seeds]
    if any(a is None for a in arrays):
        return None
    out = {key: np.concatenate([a[key] for a in arrays]) for key in arrays[0]}
    out["seed"] = np.concatenate([np.full(len(a["lambda"]), s) for a, s in zip(arrays, seeds)])
    return out


def weight_report(pooled, seeds):
    """How the learned λ relate to wrong pseudo-labels (pooled and per seed), split by how many Λ steps gave an
    example a non-zero hypergradient, and to out-of-distribution examples where there are any."""
    lam, wrong, groups, ood = pooled["lambda"], pooled["wrong"], pooled["seed"], pooled["ood"]
    out = {"weights": weight_diagnostics(lam, wrong, groups=groups), "weights_by_hypergradient_count": {}}
    for name, inside in count_group_masks(pooled["counts"]).items():
        entry = {"fraction": float(inside.mean())}
        if ood.any() and inside.any():  # is the mask what keeps the OOD examples from a hypergradient?
            entry["ood_share"] = float(ood[inside].mean())
        if inside.sum() >= 2:
            entry.update(weight_diagnostics(lam[inside], wrong[inside], groups=groups[inside]))
        out["weights_by_hypergradient_count"][name] = entry
    if ood.any():
        out["ood_fraction"] = float(ood.mean())
        out["auroc_low_weight_vs_ood"] = auroc(-lam, ood)
        out["auroc_low_weight_vs_ood_per_seed"] = [auroc(-lam[groups == s], ood[groups == s]) for s in seeds]
        out["ood_share_lowest_5pct_per_seed"] = [lowest_fraction_rate(lam[groups == s], ood[groups == s], 0.05)
                                                 for s in seeds]
    return out


LAMBDA_CHANGE_BINS = (0.0, 1e-6, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, np.inf)


def lambda_movement(arrays, initial=1.0):
    """How far λ moved from its start over a method's seeds: updates per example (Λ steps with a non-zero
    hypergradient), the quantiles of |λ - initial| and its histogram over LAMBDA_CHANGE_BINS. arrays: one
    execute.weight_arrays dict per seed (None for a diverged run, left out)."""
    arrays = [a for a in arrays if a is not None]
    if not arrays:
        return {}
    change = np.abs(np.concatenate([a["lambda"] for a in arrays]) - initial)
    counts = np.concatenate([a["counts"] for a in arrays])
    histogram, _ = np.histogram(change, bins=np.asarray(LAMBDA_CHANGE_BINS))
    return {"updates_per_example_mean": float(counts.mean()), "updates_per_example_max": int(counts.max()),
            "lambda_change_quantiles": {str(q): float(np.quantile(change, q)) for q in (0.5, 0.9, 0.99, 1.0)},
            "lambda_change_histogram": {"bins": [float(b) for b in LAMBDA_CHANGE_BINS],
                                        "counts": histogram.tolist()}}


def format_methods(summary, seeds, metric):
    """Plain text: one line per method (mean ± std in %, per seed)."""
    width = max(len(n) for n in summary) + 2
    lines = [f"{'method':<{width}} {metric + ' (%)':>24}   per seed ({', '.join(map(str, seeds))})"]
    for name, entry in summary.items():
        per_seed = " ".join(f"{100 * v:5.1f}" for v in entry["values"])
        diverged = f"   (diverged on seeds {entry['diverged_seeds']})" if entry.get("diverged_seeds") else ""
        lines.append(f"{name:<{width}} {100 * entry['mean']:15.2f} ± {100 * entry['std']:5.2f}   {per_seed}{diverged}")
    return "\n".join(lines)


def format_paired(table, scale=100.0):
    """Plain text: one line per paired row: mean ± std, 95% CI, p (permutation), p_holm, wins/ties/losses."""
    lines = []
    for name, row in table.items():
        lines.append(f"  {name}: {scale * row['mean']:+.2f} ± {scale * row['std']:.2f}, 95% CI "
                     f"[{scale * row['ci_low']:+.2f}, {scale * row['ci_high']:+.2f}], p = {row['p_perm']:.3g}, "
                     f"p_holm = {row['p_holm']:.3g}, wins {row['wins']} / ties {row['ties']} / losses "
                     f"{row['losses']} -> {stats.verdict(row).split(' (')[0]}")
    return "\n".join(lines)
