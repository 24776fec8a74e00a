"""Results tables over seeds: per-method mean ± std and paired differences against a baseline."""
import numpy as np

from influence_ssl.metrics import mean_std


def method_summary(accuracies):
    """{"test_accuracy": [...], "mean": m, "std": s} for one method's per-seed accuracies."""
    mean, std = mean_std(accuracies)
    return {"test_accuracy": [float(a) for a in accuracies], "mean": mean, "std": std}


def paired_difference(ours, base):
    """Per-seed differences ours - base: mean, std, wins (ours > base), ties, losses."""
    diff = np.asarray(ours, np.float64) - np.asarray(base, np.float64)
    mean, std = mean_std(diff)
    return {"mean": mean, "std": std, "wins": int((diff > 0).sum()), "ties": int((diff == 0).sum()),
            "losses": int((diff < 0).sum()), "per_seed": [float(d) for d in diff]}


def format_table(methods, seeds, baseline, compared):
    """A plain-text table: one row per method (mean ± std, per seed), then paired differences.

    Args:
      methods: {name: method_summary(...)}.
      seeds: the seeds, in the order of the accuracy lists.
      baseline: the method the others are paired against.
      compared: the methods to pair against the baseline.
    """
    width = max(len(name) for name in methods) + 2
    lines = [f"{'method':<{width}} {'test accuracy (%)':>20}   per seed ({', '.join(map(str, seeds))})"]
    for name, summary in methods.items():
        per_seed = " ".join(f"{100 * a:5.1f}" for a in summary["test_accuracy"])
        lines.append(f"{name:<{width}} {100 * summary['mean']:11.2f} ± {100 * summary['std']:5.2f}   {per_seed}")
    lines.append("")
    lines.append(f"paired differences against {baseline} (accuracy points; same split, init and data order):")
    for name in compared:
        d = paired_difference(methods[name]["test_accuracy"], methods[baseline]["test_accuracy"])
        lines.append(f"  {name} - {baseline}: {100 * d['mean']:+.2f} ± {100 * d['std']:.2f}   "
                     f"wins {d['wins']}, ties {d['ties']}, losses {d['losses']} of {len(seeds)}")
    return "\n".join(lines)
