"""The synthetic study of Sec. 4.1 (Fig. 1 and 2): Pseudo-Label with learned per-example weights on 2-D data.

Methods, on the same data, initialisation and data order per seed:
  supervised          λ = 0
  pseudo_label        one fixed λ (the configuration's weight_init), the paper's baseline
  pseudo_label_tuned  one fixed λ chosen per seed on validation from a grid
  ours                learned per-example weights (Alg. 1, exact last-layer influence, M-Adam)
  ours_reversed       the same with the hypergradient's sign flipped (a control)
"""
from influence_ssl.studies import results as results_lib
from influence_ssl.studies.runner import Method, check_methods, run_study

BASELINE = "pseudo_label"


def methods(tuned_lambda_grid):
    rows = [Method("supervised", "λ = 0", ({"weighting": "none", "weight_init": 0.0},)),
            Method(BASELINE, "one fixed λ", ({"weighting": "none"},)),
            Method("pseudo_label_tuned", "one fixed λ chosen on validation",
                   tuple({"weighting": "none", "weight_init": v} for v in tuned_lambda_grid)),
            Method("ours", "learned per-example λ", ({"weighting": "per_example"},)),
            Method("ours_reversed", "ours, hypergradient reversed (control)", mirror="ours",
                   overrides={"reverse_hypergradient": True})]
    check_methods(rows)
    return rows


def run(base, seeds, cache, tuned_lambda_grid, log=print):
    rows = methods(tuned_lambda_grid)
    per_seed = run_study(base, rows, seeds, cache, log=log)
    summary = results_lib.summarize_methods(per_seed, rows, seeds, "test_accuracy")
    summary["pseudo_label_tuned"]["lambda_per_seed"] = [c["weight_init"] for c in
                                                        summary["pseudo_label_tuned"]["chosen"]]
    pairs = [(name, BASELINE) for name in ("ours", "ours_reversed", "pseudo_label_tuned", "supervised")]
    pairs.append(("ours", "pseudo_label_tuned"))
    out = {"format": results_lib.FORMAT, "study": "synthetic", "seeds": list(seeds), "metric": "test_accuracy",
           "tuned_lambda_grid": list(tuned_lambda_grid), "methods": summary,
           "paired": results_lib.paired_table(summary, pairs), "config": base.to_dict()}
    pooled = results_lib.pooled_weights(per_seed, seeds, "ours")
    if pooled is not None:
        out.update(results_lib.weight_report(pooled, seeds))
    return out


def format_report(results):
    w = results["weights"]
    return "\n".join([
        results_lib.format_methods(results["methods"], results["seeds"], "test_accuracy"), "",
        "paired differences (accuracy points; same data, init and data order; Holm across these rows):",
        results_lib.format_paired(results["paired"]), "",
        f"learned weights (ours, pooled over seeds): wrong pseudo-labels {100 * w['wrong_pseudo_label_rate_all']:.1f}% "
        f"overall vs {100 * w['wrong_pseudo_label_rate_lowest_5pct']:.1f}% among the lowest 5% of λ (ties by expected "
        f"share); AUROC of -λ for wrong pseudo-labels {w['auroc_low_weight_vs_wrong']:.3f} pooled, "
        f"{w['auroc_low_weight_vs_wrong_per_seed_mean']:.3f} ± {w['auroc_low_weight_vs_wrong_per_seed_std']:.3f} "
        "per seed"])
