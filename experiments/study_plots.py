"""The panels every paired study's picture shares: each method's test accuracy (mean, and every seed as a dot),
and each paired comparison of the study's "paired" table (mean, 95% CI; red where the Holm-corrected p < 0.05)."""
import numpy as np


def accuracy_panel(ax, results):
    """Each method's accuracy in %, one row per method (top: the first)."""
    names = list(results["methods"])
    y = np.arange(len(names))[::-1]
    for yi, name in zip(y, names):
        entry = results["methods"][name]
        values = 100 * np.asarray(entry["values"], float)
        ax.scatter(values, np.full(len(values), yi), s=12, color="0.6", zorder=1)
        ax.plot(100 * entry["mean"], yi, "o", color="C0", zorder=2)
    ax.set_yticks(y, names, fontsize=9)
    ax.set_xlabel(f"{results['metric']} (%): mean (blue), seeds (grey)")
    ax.grid(axis="x", alpha=0.3)


def paired_panel(ax, paired, label="paired difference, points (95% CI; red: p_holm < 0.05)", scale=100.0):
    """One row per comparison "a - b" of a paired table (top: the first)."""
    keys = list(paired)
    y = np.arange(len(keys))[::-1]
    for yi, key in zip(y, keys):
        row = paired[key]
        ax.errorbar(scale * row["mean"], yi, xerr=[[scale * (row["mean"] - row["ci_low"])],
                                                   [scale * (row["ci_high"] - row["mean"])]],
                    fmt="o", capsize=3, color="C3" if row["p_holm"] < 0.05 else "C0")
    ax.set_yticks(y, keys, fontsize=9)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlabel(label)
    ax.grid(axis="x", alpha=0.3)
