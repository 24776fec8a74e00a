r"""One table of hypergradient variants, each paired against the paper's method.

Reads study JSONs of experiments.synthetic or experiments.compare (influence_ssl.study/1) that differ only in
what they set away from the paper's hypergradient (influence_ssl.studies.report.describe), the first one being
the paper's method, and gives per variant: the test error of ours, then the paired comparisons ours − the
paper's ours, ours − the baseline (Pseudo-Label / base), ours − the single λ tuned on validation, the variant's
reversed control − the baseline, and its per-seed AUROC(−λ → wrong pseudo-label) − the paper's method's; with
AUROC(−λ) for wrong pseudo-labels and for OOD examples, and the OOD share among the lowest 5% of λ, where the
runs have them. Differences are paired by seed; only seeds present in every file count. Every comparison gives
mean ± std, the permutation p, wins/ties/losses and the verdict, Holm across the whole table.

  python -m experiments.variants_table results/ood/ood_0.5.json results/variants/ood_0.5_*.json \
      [--markdown out/variants/ood_0.5.md]
"""
import os
import sys

from absl import flags

from experiments import define_markdown
from experiments.checks import run_main
from influence_ssl.studies.report import (
    Pair,
    ResultsError,
    auroc_cell,
    describe,
    error_of,
    load,
    ood_share_cell,
    render_markdown,
    render_text,
    table,
)
from influence_ssl.studies.results import FORMAT
from influence_ssl.trainer import ConfigError

FLAGS = flags.FLAGS
define_markdown()

# Per study: (the base algorithm's method, the tuned single λ's method).
BASELINES = {"synthetic": ("pseudo_label", "pseudo_label_tuned"), "compare": ("base", "tuned_single_lambda")}


def read(path):
    results = load(path)
    if not isinstance(results, dict) or results.get("format") != FORMAT or results.get("study") not in BASELINES:
        what = results.get("format") if isinstance(results, dict) else None
        study = results.get("study") if isinstance(results, dict) else None
        raise ConfigError(f"{path} has format {what!r} (study {study!r}); this table reads {FORMAT} studies "
                          f"{', '.join(BASELINES)}.")
    return results


def per_seed(results, method, seeds):
    by_seed = dict(zip(results["seeds"], results["methods"][method]["values"]))
    return [by_seed[s] for s in seeds]


def auroc_per_seed(results, seeds):
    """AUROC(−λ → wrong) of ours per seed (weight_diagnostics lists them in sorted seed order), or None."""
    per = results.get("weights", {}).get("auroc_low_weight_vs_wrong_per_seed")
    if not per or len(per) != len(results["seeds"]):
        return None
    by_seed = dict(zip(sorted(results["seeds"]), per))
    return [by_seed[s] for s in seeds]


def build(paths):
    return table_of([(path, read(path)) for path in paths])


def table_of(runs, title="Hypergradient variants against the paper's method"):
    """The table of `runs`, [(path, study JSON)] with the paper's method first."""
    studies = {r["study"] for _, r in runs}
    if len(studies) != 1:
        raise ConfigError(f"Mixed studies {sorted(studies)}: give runs of one experiment.")
    base, tuned = BASELINES[studies.pop()]
    seeds = sorted(set.intersection(*(set(r["seeds"]) for _, r in runs)))
    if not seeds:
        raise ConfigError("The files share no seed: nothing can be paired.")
    paper = runs[0][1]
    paper_ours, paper_auroc = per_seed(paper, "ours", seeds), auroc_per_seed(paper, seeds)
    rows = []
    for i, (path, r) in enumerate(runs):
        name = (f"paper's method ({os.path.basename(path)})" if i == 0
                else describe(r["config"]) or os.path.basename(path))
        ours, w = per_seed(r, "ours", seeds), r.get("weights", {})
        rows.append([name, "ours: test error (%)", error_of(ours),
                     auroc_cell(w.get("auroc_low_weight_vs_wrong"), w.get("auroc_low_weight_vs_wrong_per_seed")),
                     auroc_cell(r.get("auroc_low_weight_vs_ood"), r.get("auroc_low_weight_vs_ood_per_seed")),
                     ood_share_cell(r), None])
        pairs = [("ours − paper's ours", Pair(ours, paper_ours, "paper's ours")) if i else None,
                 (f"ours − {base}", Pair(ours, per_seed(r, base, seeds), base)),
                 (f"ours − {tuned}", Pair(ours, per_seed(r, tuned, seeds), tuned)) if tuned in r["methods"] else None,
                 (f"reversed − {base}", Pair(per_seed(r, "ours_reversed", seeds), per_seed(r, base, seeds), base))]
        auroc = auroc_per_seed(r, seeds)
        if i and auroc and paper_auroc:
            pairs.append(("AUROC(−λ → wrong) − paper's (AUROC, not points)",
                          Pair(auroc, paper_auroc, "paper's AUROC", scale=1.0)))
        rows += [[name, label, "", "", "", "", pair] for label, pair in filter(None, pairs)]
    return table(title,
                 ["variant", "row", "measured", "AUROC(−λ → wrong) pooled (per seed)", "AUROC(−λ → OOD)",
                  "OOD among the lowest 5% of λ"], rows,
                 [f"{len(seeds)} paired seeds ({', '.join(map(str, seeds))}). Each variant's wrong pseudo-labels "
                  "come from its own final model, so the AUROC difference compares somewhat different sets."])


def main(argv):
    paths = argv[1:]
    if not paths:
        raise ConfigError("Give the paper's-method JSON first, then the variants' JSONs.")
    result = build(paths)
    print(render_text(result))
    if FLAGS.markdown:
        with open(FLAGS.markdown, "w") as f:
            f.write(render_markdown(result))


if __name__ == "__main__":
    run_main(main, ResultsError)
    sys.exit(0)
