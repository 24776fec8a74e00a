"""The picture of one ablation JSON (experiments.ablate): the form of the paper's figure for that study.

influence, optimizer: validation error over training, mean with a ± std band over seeds (Fig. 3, Fig. 4 centre).
weighting, validation_size: test error against the study's axis, mean ± std over seeds (Fig. 4 left, right).
sensitivity: validation error per (N, η) with the base algorithm as a line (Table 3 as a bar chart).
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

AXIS_LABELS = {"weighting": "labeled examples", "validation_size": "validation examples"}


def _curves(ax, methods):
    for name, e in methods.items():
        curve = e.get("validation_error_curve")
        if curve is None:
            continue
        steps, mean, std = (np.asarray(curve[k], np.float64) for k in ("steps", "mean", "std"))
        line, = ax.plot(steps, 100 * mean, label=name)
        ax.fill_between(steps, 100 * (mean - std), 100 * (mean + std), color=line.get_color(), alpha=0.15)
    ax.set_xlabel("θ step")
    ax.set_ylabel("validation error (%)")


def _against_axis(ax, methods, study):
    families = {}
    for name, e in methods.items():
        families.setdefault(name.split("@")[0], []).append(e)
    for family, entries in families.items():
        entries.sort(key=lambda e: e["x"])
        x = [e["x"] for e in entries]
        ax.errorbar(x, [100 * (1 - e["mean"]) for e in entries], yerr=[100 * e["std"] for e in entries],
                    marker="o", capsize=3, label=family)
    ax.set_xscale("log")
    ax.set_xlabel(AXIS_LABELS[study])
    ax.set_ylabel("test error (%)")


def _bars(ax, methods):
    names = [n for n in methods if not n.startswith("base")]
    errors = [100 * (1 - methods[n]["validation_accuracy_mean"]) for n in names]
    spread = [100 * methods[n]["validation_accuracy_std"] for n in names]
    ax.bar(range(len(names)), errors, yerr=spread, capsize=3, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.axhline(100 * (1 - methods["base"]["validation_accuracy_mean"]), color="k", ls="--", label="base")
    ax.set_ylabel("validation error (%)")


def draw(results, path):
    """Write the study's PNG to `path`; returns path."""
    study, methods = results["study"], results["methods"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if study in ("influence", "optimizer"):
        _curves(ax, methods)
    elif study in AXIS_LABELS:
        _against_axis(ax, methods, study)
    else:
        _bars(ax, methods)
    ax.set_title(f"{study} ablation, {results['algorithm']} on {results['dataset']}, {len(results['seeds'])} seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
