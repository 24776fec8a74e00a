"""The comparison study: the base algorithm vs learned per-example weights, paired over seeds (Sec. 4.2).

Methods (every seed shares the split, the initialisation, the data order and the augmentations):
  base                  the SSL algorithm with one fixed λ (weighting=none)
  ours                  learned per-example weights, η chosen per seed on validation from a grid
  ours_reversed         the same with the hypergradient's sign flipped (a control), at ours' η
  tuned_single_lambda   (with a λ grid) one fixed λ for all, chosen on validation: a baseline as informed as ours
"""
from influence_ssl.studies import results as results_lib
from influence_ssl.studies.runner import Method, check_methods, run_study

TUNED = "tuned_single_lambda"


def methods(weight_lr_grid, tuned_lambda_grid=()):
    rows = [Method("base", "the base algorithm, fixed λ", ({"weighting": "none"},)),
            Method("ours", "learned per-example λ", tuple({"weighting": "per_example", "weight_lr": eta}
                                                          for eta in weight_lr_grid)),
            Method("ours_reversed", "ours, hypergradient reversed (control)", mirror="ours",
                   overrides={"reverse_hypergradient": True})]
    if tuned_lambda_grid:
        rows.append(Method(TUNED, "one fixed λ chosen on validation",
                           tuple({"weighting": "none", "weight_init": v} for v in tuned_lambda_grid)))
    check_methods(rows)
    return rows


def run(base, seeds, cache, weight_lr_grid, tuned_lambda_grid=(), metric="test_accuracy", log=print):
    """The comparison's results dict (format results.FORMAT, study "compare")."""
    rows = methods(weight_lr_grid, tuned_lambda_grid)
    per_seed = run_study(base, rows, seeds, cache, log=log)
    summary = results_lib.summarize_methods(per_seed, rows, seeds, metric)
    summary["ours"]["weight_lr_per_seed"] = [c["weight_lr"] for c in summary["ours"]["chosen"]]
    if TUNED in summary:
        summary[TUNED]["lambda_per_seed"] = [c["weight_init"] for c in summary[TUNED]["chosen"]]
    pairs = [(m.name, "base") for m in rows if m.name != "base"]
    if TUNED in summary:
        pairs.append(("ours", TUNED))
    out = {"format": results_lib.FORMAT, "study": "compare", "seeds": list(seeds), "metric": metric,
           "weight_lr_grid": list(weight_lr_grid), "tuned_lambda_grid": list(tuned_lambda_grid),
           "methods": summary, "paired": results_lib.paired_table(summary, pairs),
           "config": base.to_dict()}
    pooled = results_lib.pooled_weights(per_seed, seeds, "ours")
    if pooled is not None:
        out.update(results_lib.weight_report(pooled, seeds))
        out["lambda_step_abs_mean_per_seed"] = [per_seed[s]["ours"][1]["lambda_step_abs_mean"] for s in seeds]
    return out


def format_report(results):
    """The comparison as plain text."""
    lines = [results_lib.format_methods(results["methods"], results["seeds"], results["metric"]), "",
             "paired differences (accuracy points; same split, init and data order; Holm across these rows):",
             results_lib.format_paired(results["paired"])]
    w = results.get("weights")
    if w:
        groups = [("all unlabeled", w)] + [
            (f"{name} non-zero hypergradients, {100 * g['fraction']:.0f}% of examples", g)
            for name, g in results["weights_by_hypergradient_count"].items() if "auroc_low_weight_vs_wrong" in g]
        for label, g in groups:
            lines.append(f"learned weights (ours, {label}): wrong pseudo-labels "
                         f"{100 * g['wrong_pseudo_label_rate_all']:.1f}% overall vs "
                         f"{100 * g['wrong_pseudo_label_rate_lowest_5pct']:.1f}% among the lowest 5% of λ; AUROC of "
                         f"-λ {g['auroc_low_weight_vs_wrong']:.3f} pooled, "
                         f"{g['auroc_low_weight_vs_wrong_per_seed_mean']:.3f} ± "
                         f"{g['auroc_low_weight_vs_wrong_per_seed_std']:.3f} per seed"
                         + (f"; OOD {100 * g['ood_share']:.1f}% of the group" if "ood_share" in g else ""))
    if "auroc_low_weight_vs_ood" in results:
        lines.append(f"out-of-distribution unlabeled: {100 * results['ood_fraction']:.0f}%; AUROC of -λ for OOD "
                     f"{results['auroc_low_weight_vs_ood']:.3f} pooled, per seed "
                     + ", ".join(f"{a:.3f}" for a in results["auroc_low_weight_vs_ood_per_seed"]))
    return "\n".join(lines)
