"""The picture of a comparison JSON (experiments.compare): each method's test accuracy and the paired
comparisons of the study (ours and the controls against base, ours against the tuned λ)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments import study_plots  # noqa: E402
from influence_ssl.studies.report import describe  # noqa: E402


def draw(results, path):
    """Write the PNG to `path`; returns path."""
    config = results["config"]
    rows = max(len(results["methods"]), len(results["paired"]))
    fig, (accuracy, paired) = plt.subplots(1, 2, figsize=(12, 0.45 * rows + 2))
    study_plots.accuracy_panel(accuracy, results)
    study_plots.paired_panel(paired, results["paired"])
    fig.suptitle(title(config, len(results["seeds"])))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def title(config, seeds):
    """'fixmatch on digits, 50 labels, 50% OOD unlabeled (noise images), λ0=3, 10 seeds (paired)': the setting,
    with the initial λ and the hypergradient variant where they are not the paper's."""
    data, weight_init = config["data"], config["train"]["weight_init"]
    parts = [f"{config['algorithm']['algorithm']} on {data['dataset']}", f"{data['num_labeled']} labels"]
    if data["ood_classes"] or data["ood_noise"]:
        kind = "noise images" if data["ood_noise"] else f"classes {','.join(map(str, data['ood_classes']))} held out"
        parts.append(f"{100 * data['ood_fraction']:.0f}% OOD unlabeled ({kind})")
    if weight_init != 1:
        parts.append(f"λ0={weight_init:g}")
    if describe(config):
        parts.append(describe(config))
    return ", ".join(parts + [f"{seeds} seeds (paired)"])
