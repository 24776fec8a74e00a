"""The picture of a weighting-rules JSON (experiments.weighting_rules): on the left each method's test accuracy
(mean, and every seed as a dot); on the right each method's paired difference from base (mean, 95% CI)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def draw(results, path):
    """Write the PNG to `path`; returns path."""
    methods, config = results["methods"], results["config"]
    names = list(methods)
    y = np.arange(len(names))[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 2), sharey=True)
    for yi, name in zip(y, names):
        values = 100 * np.asarray(methods[name]["values"], float)
        left.scatter(values, np.full(len(values), yi), s=12, color="0.6", zorder=1)
        left.plot(100 * methods[name]["mean"], yi, "o", color="C0", zorder=2)
    left.set_yticks(y, names, fontsize=9)
    left.set_xlabel(f"{results['metric']} (%): mean (blue), seeds (grey)")
    rows = {key.split(" - ")[0]: row for key, row in results["paired"].items()}
    for yi, name in zip(y, names):
        if name in rows:
            row = rows[name]
            right.errorbar(100 * row["mean"], yi, xerr=[[100 * (row["mean"] - row["ci_low"])],
                                                        [100 * (row["ci_high"] - row["mean"])]],
                           fmt="o", capsize=3, color="C3" if row["p_holm"] < 0.05 else "C0")
    right.axvline(0.0, color="k", lw=0.8)
    right.set_xlabel("− base, points, paired (95% CI; red: p_holm < 0.05)")
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"weighting rules vs learned λ ({results['ours_recipe']} recipe), "
                 f"{config['algorithm']['algorithm']} on {config['data']['dataset']}, "
                 f"{config['data']['num_labeled']} labels, {len(results['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
