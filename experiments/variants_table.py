r"""One table of hypergradient variants, each paired against the paper's method.

Reads the JSONs of experiments.synthetic or experiments.compare runs that differ only in the variant flags
(image_ssl.VARIANT_FLAGS, --influence_scope), the first one being the paper's method, and prints per variant:
accuracy, ours − paper's ours, ours − the baseline (Pseudo-Label / base), ours − the single λ tuned on
validation, the variant's reversed control − the baseline, and AUROC(−λ) for wrong pseudo-labels (and for OOD
examples where the runs have them). Differences are paired per seed; only seeds present in every file count.

  python -m experiments.variants_table out/variants/moons_paper.json out/variants/moons_*.json \
      [--markdown out/variants/moons.md]
"""
import json
import os
import sys

import numpy as np
from absl import flags

from experiments import variant_flags
from experiments.checks import run_main
from influence_ssl.metrics import mean_std
from influence_ssl.report import paired_difference
from influence_ssl.trainer import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("markdown", None, "Also write the table as Markdown here.")

# Per results format: (the base algorithm's method, the tuned single λ's method).
BASELINES = {"influence_ssl.synthetic/1": ("pseudo_label", "pseudo_label_tuned"),
             "influence_ssl.compare/1": ("base", "tuned_single_lambda")}


def load(path):
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"Cannot read {path}: {e}") from None
    if results.get("format") not in BASELINES:
        raise ConfigError(f"{path} has format {results.get('format')!r}; this table reads "
                          f"{', '.join(BASELINES)}.")
    return results


def variant_name(results, path):
    """The variant settings a run has away from the paper's method, or the file's name."""
    return variant_flags.describe(results.get("flags", {})) or os.path.basename(path)


def per_seed(results, method, seeds):
    by_seed = dict(zip(results["seeds"], results["methods"][method]["test_accuracy"]))
    return np.array([by_seed[s] for s in seeds])


def auroc_cell(results, key):
    w = results.get("weights", {})
    per = w.get(f"{key}_per_seed") if key.endswith("wrong") else results.get(f"{key}_per_seed")
    pooled = w.get(key) if key.endswith("wrong") else results.get(key)
    if pooled is None:
        return "—"
    if per:
        mean, std = mean_std(per)
        return f"{pooled:.3f} ({mean:.3f} ± {std:.3f})"
    return f"{pooled:.3f}"


def auroc_diff_cell(results, paper):
    """Per-seed AUROC(−λ → wrong) minus the paper's method's on the same seed: mean ± std (higher on n of N).
    Each run's wrong pseudo-labels come from its own final model, so the two sets differ somewhat."""
    a = results.get("weights", {}).get("auroc_low_weight_vs_wrong_per_seed")
    b = paper.get("weights", {}).get("auroc_low_weight_vs_wrong_per_seed")
    if not a or not b or len(a) != len(b) or results["seeds"] != paper["seeds"]:
        return "—"
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mean, std = mean_std(d)
    return f"{mean:+.3f} ± {std:.3f} (higher on {int((d > 0).sum())}/{len(d)})"


def diff_cell(a, b):
    d = paired_difference(a, b)
    return f"{100 * d['mean']:+.2f} ± {100 * d['std']:.2f} ({d['wins']}/{d['ties']}/{d['losses']})"


def table(paths):
    runs = [(path, load(path)) for path in paths]
    formats = {r["format"] for _, r in runs}
    if len(formats) != 1:
        raise ConfigError(f"Mixed result formats {sorted(formats)}: give runs of one experiment.")
    base, tuned = BASELINES[formats.pop()]
    seeds = sorted(set.intersection(*(set(r["seeds"]) for _, r in runs)))
    if not seeds:
        raise ConfigError("The files share no seed: nothing can be paired.")
    paper = per_seed(runs[0][1], "ours", seeds)
    header = ["variant", "ours (%)", "− paper's ours", f"− {base}", f"− {tuned}", f"reversed − {base}",
              "AUROC(−λ → wrong) pooled (per seed)", "AUROC(−λ → OOD)", "AUROC(wrong) − paper's, per seed"]
    rows = []
    for path, r in runs:
        ours = per_seed(r, "ours", seeds)
        mean, std = mean_std(ours)
        rows.append([variant_name(r, path) if rows else f"paper's method ({os.path.basename(path)})",
                     f"{100 * mean:.2f} ± {100 * std:.2f}",
                     "—" if not rows else diff_cell(ours, paper),
                     diff_cell(ours, per_seed(r, base, seeds)),
                     diff_cell(ours, per_seed(r, tuned, seeds)) if tuned in r["methods"] else "—",
                     diff_cell(per_seed(r, "ours_reversed", seeds), per_seed(r, base, seeds)),
                     auroc_cell(r, "auroc_low_weight_vs_wrong"), auroc_cell(r, "auroc_low_weight_vs_ood"),
                     "—" if not rows else auroc_diff_cell(r, runs[0][1])])
    note = (f"{len(seeds)} paired seeds ({', '.join(map(str, seeds))}); differences in accuracy points, "
            "mean ± std over seeds (wins/ties/losses).")
    return header, rows, note


def markdown(header, rows, note):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines + ["", note])


def main(argv):
    paths = argv[1:]
    if len(paths) < 1:
        raise ConfigError("Give the paper's-method JSON first, then the variants' JSONs.")
    header, rows, note = table(paths)
    text = markdown(header, rows, note)
    print(text)
    if FLAGS.markdown:
        with open(FLAGS.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    run_main(main)
    sys.exit(0)
