"""The picture of a comparison JSON (experiments.compare): each method's test accuracy and the paired
comparisons of the study (ours and the controls against base, ours against the tuned λ)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments import study_plots  # noqa: E402
from influence_ssl.studies.report import departures, is_ood, ood_kind  # noqa: E402


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
    with the hypergradient variant and the initial λ where they are not the paper's."""
    data = config["data"]
    parts = [f"{config['algorithm']['algorithm']} on {data['dataset']}", f"{data['num_labeled']} labels"]
    if is_ood(config):
        parts.append(f"{100 * data['ood_fraction']:.0f}% OOD unlabeled ({ood_kind(config)})")
    return ", ".join(parts + departures(config) + [f"{seeds} seeds (paired)"])
