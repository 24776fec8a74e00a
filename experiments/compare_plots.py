"""The picture of a comparison JSON (experiments.compare): each method's test accuracy and the paired
comparisons of the study (ours and the controls against base, ours against the tuned λ)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments import study_plots  # noqa: E402


def draw(results, path):
    """Write the PNG to `path`; returns path."""
    config = results["config"]
    rows = max(len(results["methods"]), len(results["paired"]))
    fig, (accuracy, paired) = plt.subplots(1, 2, figsize=(12, 0.45 * rows + 2))
    study_plots.accuracy_panel(accuracy, results)
    study_plots.paired_panel(paired, results["paired"])
    data = config["data"]
    ood = f", {100 * data['ood_fraction']:.0f}% OOD unlabeled" if data["ood_classes"] or data["ood_noise"] else ""
    fig.suptitle(f"{config['algorithm']['algorithm']} on {data['dataset']}, {data['num_labeled']} labels{ood}, "
                 f"{len(results['seeds'])} seeds (paired)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
