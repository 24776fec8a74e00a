"""The picture of a weighting-rules JSON (experiments.weighting_rules). Top: each method's test accuracy (mean,
and every seed as a dot) and its paired difference from base (mean, 95% CI). Bottom left: the AUROC of low
weights for wrong pseudo-labels (and OOD examples where there are any), learned λ (λ) and each run's own mask
or rule weight (w), every seed a dot. Bottom right: ours' mean λ in the quantile bins of each rule's weight,
with Spearman's ρ between the two (do they rank the examples alike?)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments import study_plots  # noqa: E402


def draw(results, path):
    """Write the PNG to `path`; returns path."""
    config = results["config"]
    names = list(results["methods"])
    fig, axes = plt.subplots(2, 2, figsize=(13, 0.45 * len(names) + 7.5),
                             gridspec_kw={"height_ratios": [len(names), len(results.get("scores", {})) or 1]})
    (accuracy, paired), (scores, ranks) = axes
    study_plots.accuracy_panel(accuracy, results)
    study_plots.paired_panel(paired, results["paired"], "− base, points, paired (95% CI; red: p_holm < 0.05)")
    _scores(scores, results.get("scores", {}))
    _ranks(ranks, results.get("rank_agreement", {}))
    scores.grid(axis="x", alpha=0.3)
    fig.suptitle(f"weighting rules vs learned λ ({results['ours_recipe']} recipe), "
                 f"{config['algorithm']['algorithm']} on {config['data']['dataset']}, "
                 f"{config['data']['num_labeled']} labels, {len(results['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _scores(ax, scores):
    rows = list(scores)
    y = np.arange(len(rows))[::-1]
    for kind, color, shift, label in (("auroc_wrong", "C0", 0.15, "wrong pseudo-labels"),
                                      ("auroc_ood", "C1", -0.15, "OOD examples")):
        shown = False
        for yi, row in zip(y, rows):
            values = np.asarray(scores[row].get(kind, []), float)
            values = values[np.isfinite(values)]
            if len(values):
                ax.scatter(values, np.full(len(values), yi + shift), s=10, color=color, alpha=0.4)
                ax.plot(values.mean(), yi + shift, "D", color=color, label=None if shown else label)
                shown = True
    ax.axvline(0.5, color="k", lw=0.8)
    ax.set_yticks(y, rows, fontsize=9)
    ax.set_xlabel("AUROC of low weights (0.5: chance), per seed and mean")
    ax.legend(fontsize=8, loc="lower right")


def _ranks(ax, agreement):
    for i, (method, entry) in enumerate(agreement.items()):
        centres = [(lo + hi) / 2 for lo, hi in entry["weight_bins"]]
        order = np.argsort(centres)
        ax.plot(np.arange(len(centres)) + 0.04 * i, np.asarray(entry["lambda_mean_in_bin"])[order], "o-",
                label=f"{method} (ρ = {entry['spearman_mean']:+.2f})")
    ax.set_xlabel("quantile bin of the rule's weight (low → high; a 0/1 mask has two)")
    ax.set_ylabel("ours' mean λ in the bin")
    ax.set_title("do ours' λ and a rule's weight rank the examples alike?", fontsize=10)
    ax.grid(alpha=0.3)
    if agreement:
        ax.legend(fontsize=8)
