"""The picture of one ablation JSON (experiments.ablate): the paper's form of the figure on the left, and on
the right each method's paired difference from the base run of the same seed (mean ± std over seeds). The
seeds differ in difficulty far more than the methods differ, so the spread of the left panel hides what the
right panel shows.

influence, optimizer: validation error over training (Fig. 3, Fig. 4 centre).
weighting, validation_size: test error against the study's axis (Fig. 4 left, right).
sensitivity: validation error per (N, η) (Table 3 as a bar chart).
recipe: each switch of the authors' code alone, and the whole of it, paired with the paper's recipe (95% CI); and
how far λ moved under each recipe (the histogram of |λ - 1|).
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

AXIS_LABELS = {"weighting": "labeled examples", "validation_size": "validation examples"}


def _base_of(name, methods):
    """The base method of the same axis value (same split) as `name`."""
    suffix = name[name.index("@"):] if "@" in name else ""
    return "base" + suffix


def _style(name):
    """Base black and dashed, on top: a method that ends where base does must not hide it."""
    return {"color": "k", "ls": "--", "zorder": 3} if name.startswith("base") else {}


def _curves(left, right, methods):
    for name, e in methods.items():
        curve = e.get("validation_error_curve")
        if curve is None:
            continue
        steps = np.asarray(curve["steps"])
        line, = left.plot(steps, 100 * np.asarray(curve["mean"]), label=name, **_style(name))
        base = methods[_base_of(name, methods)].get("validation_error_curve", {})
        if name.startswith("base") or "per_seed" not in curve or "per_seed" not in base:
            continue
        diff = 100 * (np.asarray(curve["per_seed"]) - np.asarray(base["per_seed"]))
        mean, std = diff.mean(0), (diff.std(0, ddof=1) if len(diff) > 1 else np.zeros(len(steps)))
        right.plot(steps, mean, color=line.get_color(), label=name)
        right.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    left.set_xlabel("θ step")
    left.set_ylabel("validation error (%), mean over seeds")
    right.set_xlabel("θ step")
    right.set_ylabel("validation error − base's (points)")


def _against_axis(left, right, methods, study):
    families = {}
    for name, e in methods.items():
        families.setdefault(name.split("@")[0], []).append(e)
    for family, entries in families.items():
        entries.sort(key=lambda e: e["x"])
        x = np.array([e["x"] for e in entries], np.float64)
        line, = left.plot(x, [100 * (1 - e["mean"]) for e in entries], marker="o", label=family, **_style(family))
        if family != "base":
            paired = [e["paired_vs_base"] for e in entries]
            right.errorbar(x, [-100 * p["mean"] for p in paired], yerr=[100 * p["std"] for p in paired],
                           marker="o", capsize=3, color=line.get_color(), label=family)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.minorticks_off()
        ax.set_xlabel(AXIS_LABELS[study])
    left.set_ylabel("test error (%), mean over seeds")
    right.set_ylabel("test error − base's (points)")


def _bars(left, right, methods):
    names = [n for n in methods if not n.startswith("base")]
    base = np.asarray(methods["base"]["validation_accuracy"])
    left.bar(range(len(names)), [100 * (1 - methods[n]["validation_accuracy_mean"]) for n in names])
    left.axhline(100 * (1 - base.mean()), color="k", ls="--", label="base")
    diffs = [100 * (base - np.asarray(methods[n]["validation_accuracy"])) for n in names]
    right.bar(range(len(names)), [d.mean() for d in diffs],
              yerr=[d.std(ddof=1) if len(d) > 1 else 0.0 for d in diffs], capsize=3)
    for ax in (left, right):
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    left.set_ylabel("validation error (%), mean over seeds")
    right.set_ylabel("validation error − base's (points)")


def _recipe(left, right, results):
    rows = [(name.split(" - ")[0], row) for name, row in results["paired"].items()
            if name.endswith(" - ours_paper")]
    y = np.arange(len(rows))
    means = [100 * row["mean"] for _, row in rows]
    errors = [[100 * (row["mean"] - row["ci_low"]) for _, row in rows],
              [100 * (row["ci_high"] - row["mean"]) for _, row in rows]]
    left.errorbar(means, y, xerr=errors, fmt="o", capsize=3)
    left.axvline(0.0, color="k", lw=0.8)
    left.set_yticks(y, [name for name, _ in rows], fontsize=8)
    left.set_xlabel("test accuracy − ours (paper's recipe), points (95% CI)")
    for name in ("ours_paper", "ours_authors"):
        histogram = results["methods"][name].get("lambda_change_histogram")
        if histogram:
            bins = histogram["bins"]
            labels = [f"[{a:g}, {b:g})" for a, b in zip(bins[:-1], bins[1:])]
            share = np.asarray(histogram["counts"], float) / max(1, sum(histogram["counts"]))
            offset = -0.2 if name == "ours_paper" else 0.2
            right.bar(np.arange(len(labels)) + offset, 100 * share, width=0.4, label=name)
    right.set_xticks(np.arange(len(labels)), labels, rotation=30, fontsize=8)
    right.set_xlabel("|λ − 1| at the end (bins)")
    right.set_ylabel("unlabeled examples (%), all seeds")
    right.legend(fontsize=8)


def draw(results, path):
    """Write the study's PNG to `path`; returns path."""
    study, methods = results["ablation"], results["methods"]
    config = results["config"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    if study == "recipe":
        _recipe(left, right, results)
        fig.suptitle(f"the authors' code against the paper's recipe, {config['algorithm']['algorithm']} on "
                     f"{config['data']['dataset']}, {len(results['seeds'])} seeds (paired)")
        return _save(fig, path)
    if study in ("influence", "optimizer"):
        _curves(left, right, methods)
    elif study in AXIS_LABELS:
        _against_axis(left, right, methods, study)
    else:
        _bars(left, right, methods)
    right.axhline(0.0, color="k", lw=0.8)
    what = f"{config['algorithm']['algorithm']} on {config['data']['dataset']}"
    fig.suptitle(f"{study} ablation, {what}, {len(results['seeds'])} seeds "
                 "(right: paired with the base run of each seed; below 0 is better)")
    left.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path):
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
