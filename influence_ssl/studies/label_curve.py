"""The base algorithm's accuracy against the number of labels, paired over seeds: where is there headroom?
Each count is paired against the next smaller one (does accuracy still rise?).

One row per label count (the base algorithm: its fixed mask and λ, no learned weights); the labeled batch stays
as configured (a labeled set smaller than it repeats within the batch, as FixMatch's and USB's samplers do), so
only the label count moves. Its base runs are those of any other study at the same configuration (the weighting
rules' base at 10, 20 and 40 labels is this curve's run).
"""
from influence_ssl.studies import results as results_lib
from influence_ssl.studies.runner import Method, check_methods, run_study
from influence_ssl.trainer.config import ConfigError

DEFAULT_LABEL_COUNTS = (10, 20, 40, 80, 160)
NONE = {"weighting": "none"}


def methods(label_counts):
    """base@n for each label count n, in increasing order."""
    counts = sorted(set(label_counts))
    if not counts or counts[0] < 1:
        raise ConfigError(f"The label counts must be >= 1, got {list(label_counts)}.")
    rows = [Method(f"base@{n}", f"base, {n} labels", ({**NONE, "num_labeled": n},), x=n) for n in counts]
    check_methods(rows)
    return rows


def run(base, seeds, cache, label_counts=DEFAULT_LABEL_COUNTS, metric="test_accuracy", log=print):
    """The study's results dict (format results.FORMAT, study "label_curve")."""
    rows = methods(label_counts)
    per_seed = run_study(base, rows, seeds, cache, log=log)
    summary = results_lib.summarize_methods(per_seed, rows, seeds, metric)
    for m in rows:
        summary[m.name]["validation_accuracy"] = [per_seed[s][m.name][1]["validation_accuracy"] for s in seeds]
    names = [m.name for m in rows]
    return {"format": results_lib.FORMAT, "study": "label_curve", "seeds": list(seeds), "metric": metric,
            "label_counts": [m.x for m in rows], "methods": summary,
            "paired": results_lib.paired_table(summary, list(zip(names[1:], names[:-1]))),
            "config": base.to_dict()}


def format_report(results):
    """The curve as plain text, with each count paired against the next smaller one."""
    return "\n".join([results_lib.format_methods(results["methods"], results["seeds"], results["metric"]), "",
                      "each count against the next smaller (accuracy points; Holm across these rows):",
                      results_lib.format_paired(results["paired"])])
