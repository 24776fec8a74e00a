"""The picture of a label-curve JSON (experiments.label_curve): the base algorithm's test accuracy against the
number of labels (log scale), every seed a dot, the mean ± std a line."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def draw(results, path):
    """Write the PNG to `path`; returns path."""
    methods, config = results["methods"], results["config"]
    counts = np.asarray(results["label_counts"], float)
    entries = [methods[f"base@{int(n)}"] for n in counts]
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, entry in zip(counts, entries):
        values = 100 * np.asarray(entry["values"], float)
        ax.scatter(np.full(len(values), n), values, s=10, color="0.6", zorder=1)
    means = 100 * np.array([e["mean"] for e in entries])
    stds = 100 * np.array([e["std"] for e in entries])
    ax.errorbar(counts, means, yerr=stds, fmt="o-", capsize=3, color="C0", zorder=2, label="mean ± std")
    ax.set_xscale("log")
    ax.set_xticks(counts, [str(int(n)) for n in counts])
    ax.minorticks_off()
    ax.set_xlabel("labeled examples")
    ax.set_ylabel(f"{results['metric']} (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"base {config['algorithm']['algorithm']} on {config['data']['dataset']}, "
                 f"{len(results['seeds'])} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
