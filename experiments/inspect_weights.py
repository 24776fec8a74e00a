r"""What the learned weights say: λ against wrong pseudo-labels, confidence, margin and class.

  python -m experiments.inspect_weights runs/digits_fixmatch                 # one image run (experiments.train)
  python -m experiments.inspect_weights out/runs/moons/seed_*                 # synthetic runs (--runs_dir)
  python -m experiments.inspect_weights DIR1 DIR2 ... --out_dir=out/inspect  # several seeds, pooled

Each DIR holds the unlabeled_diagnostics.npz a run writes. Writes weights_report.json (metrics.weights_report:
AUROC of -λ as a detector of wrong pseudo-labels, pooled and per seed; the wrong-label rate overall and
among the lowest 5% of λ, ties by their expected share; the λ histogram; ...) and PNGs into --out_dir
(default: the first DIR): the λ histogram, λ against confidence and margin, λ per pseudo-label class,
and the 32 lowest- and highest-weighted examples (pictures with label, pseudo-label and λ; for 2-D
data a scatter on one absolute λ scale).
"""
import json
import math
import os

import numpy as np
from absl import flags

from experiments import diagnostics, quiet_absl_info
from experiments.checks import run_main, writable_dir
from influence_ssl.metrics import weights_report
from influence_ssl.trainer import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", None, "Where the report and pictures go (default: the first run directory).")


def load_runs(run_dirs):
    records = []
    for run_dir in run_dirs:
        path = os.path.join(run_dir, diagnostics.RECORD_NAME)
        if not os.path.exists(path):
            raise ConfigError(f"{run_dir} holds no {diagnostics.RECORD_NAME}: give the directory of a finished "
                              "experiments.train run, or of experiments.synthetic --runs_dir=.../seed_<s>.")
        records.append(diagnostics.load(path))
    return records


def pooled(records, key):
    return np.concatenate([r[key] for r in records])


def wrong_of(record):
    return record["probs"].argmax(1) != record["true_y"]


def finite_or_none(value):
    """JSON has no NaN: an undefined metric (e.g. AUROC with one class empty) is written as null."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report(records):
    ood = pooled(records, "ood")
    return finite_or_none(weights_report(
        pooled(records, "lambda"), np.concatenate([wrong_of(r) for r in records]), pooled(records, "probs"),
        counts=pooled(records, "counts"), ood=ood if ood.any() else None,
        seeds=np.concatenate([np.full(len(r["ids"]), int(r["seed"])) for r in records])))


def draw(records, result, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lam = pooled(records, "lambda")
    probs = pooled(records, "probs")
    wrong = np.concatenate([wrong_of(r) for r in records])
    top2 = np.sort(probs, axis=1)[:, -2:]
    paths = []

    def save(fig, name):
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    edges = result["lambda_histogram"]["edges"]
    ax.hist([lam[~wrong], lam[wrong]], bins=edges, stacked=True, color=["#777777", "red"],
            label=["pseudo-label right", "pseudo-label wrong"])
    ax.set_xlabel("learned λ_u")
    ax.set_ylabel("unlabeled examples")
    ax.set_title(f"λ histogram ({len(records)} run(s), {len(lam)} examples)")
    ax.legend()
    save(fig, "lambda_histogram.png")

    for name, values, label in [("confidence", top2[:, 1], "final confidence max_k p_k"),
                                ("margin", top2[:, 1] - top2[:, 0], "final margin p_(1) - p_(2)")]:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.scatter(values[~wrong], lam[~wrong], s=6, c="#444444", label="pseudo-label right")
        ax.scatter(values[wrong], lam[wrong], s=10, c="red", label="pseudo-label wrong")
        ax.set_xlabel(label)
        ax.set_ylabel("learned λ_u")
        ax.set_title(f"λ against {name} (Spearman {result[f'spearman_lambda_vs_{name}'] or float('nan'):.2f})")
        ax.legend()
        save(fig, f"lambda_vs_{name}.png")

    pseudo = probs.argmax(1)
    classes = np.unique(pseudo)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(classes) + 2), 3.5))
    ax.boxplot([lam[pseudo == c] for c in classes], tick_labels=[str(c) for c in classes], showfliers=False)
    ax.set_xlabel("pseudo-label (final model)")
    ax.set_ylabel("learned λ_u")
    ax.set_title("λ per pseudo-label class")
    save(fig, "lambda_per_class.png")

    first = records[0]
    if str(first["kind"]) == "points":
        save(points_figure(plt, first), "lambda_points.png")
    else:
        save(extremes_figure(plt, first), "lambda_extremes.png")
    return paths


def points_figure(plt, record):
    """2-D data: every unlabeled point on ONE absolute λ scale (0 .. max λ); × = wrong pseudo-label."""
    from experiments.synthetic_plots import WEIGHT_CMAP  # Fig. 1/2's shading: pink = low, black = high

    lam, wrong, points = record["lambda"], wrong_of(record), record["points"]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    vmax = max(float(lam.max()), 1e-6)
    for subset, marker, size in [(~wrong, "o", 9), (wrong, "x", 18)]:
        art = ax.scatter(points[subset, 0], points[subset, 1], c=lam[subset], cmap=WEIGHT_CMAP, vmin=0.0,
                         vmax=vmax, marker=marker, s=size)
    fig.colorbar(art, ax=ax, label="λ_u (absolute scale, 0 to the run's maximum)")
    ax.set_title(f"{record['dataset']} seed {int(record['seed'])}: λ of every unlabeled point; × = wrong")
    return fig


def extremes_figure(plt, record):
    """The 32 lowest- and 32 highest-weighted pictures with true label, pseudo-label and λ."""
    rows = [(record["low_rows"], record["low_images"]), (record["high_rows"], record["high_images"])]
    per_row = 16
    fig, axes = plt.subplots(4, per_row, figsize=(per_row * 0.9, 4 * 1.25))
    for block, (indices, images) in enumerate(rows):
        for k in range(2 * per_row):
            ax = axes[2 * block + k // per_row, k % per_row]
            ax.axis("off")
            if k >= len(indices):
                continue
            image = images[k]
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", interpolation="nearest")
            row = indices[k]
            pseudo = int(record["probs"][row].argmax())
            truth = int(record["true_y"][row])
            ax.set_title(f"{truth}→{pseudo}\n{record['lambda'][row]:.2f}", fontsize=6,
                         color="red" if pseudo != truth else "black")
    fig.suptitle(f"{record['dataset']} seed {int(record['seed'])}: rows 1-2 the 32 lowest λ, rows 3-4 the 32 "
                 "highest; each titled true→pseudo-label (red: wrong) and λ", fontsize=9)
    return fig


def main(argv):
    run_dirs = argv[1:]
    quiet_absl_info()
    if not run_dirs:
        raise ConfigError("Give at least one run directory (see the module docstring).")
    records = load_runs(run_dirs)
    out_dir = writable_dir(FLAGS.out_dir or run_dirs[0], "--out_dir")
    result = report(records)
    result["runs"] = [os.path.abspath(d) for d in run_dirs]
    path = os.path.join(out_dir, "weights_report.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    pictures = draw(records, result, out_dir)
    per_seed = result.get("auroc_low_weight_vs_wrong_per_seed_mean")
    print(f"{len(records)} run(s), {result['num_examples']} unlabeled examples: wrong pseudo-labels "
          f"{100 * result['wrong_rate_all']:.1f}% overall, {100 * result['wrong_rate_lowest_5pct']:.1f}% among "
          f"the lowest 5% of λ; AUROC(-λ → wrong) {result['auroc_low_weight_vs_wrong']} pooled"
          + (f", {per_seed:.3f} per seed" if per_seed is not None else ""))
    print(f"report: {path}\npictures: {', '.join(pictures)}")


def run():
    run_main(main)


if __name__ == "__main__":
    run()
