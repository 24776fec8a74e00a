"""The weighting rules of the field against learned per-example λ, paired over seeds.

Methods (every seed shares the split, the initialisation, the data order and the augmentations):
  base            the SSL algorithm with its fixed confidence mask and one fixed λ (weighting=none)
  base_plus_val   base with the validation examples labeled too (--validation_labeled): the labels ours uses
  tuned_lambda    base with one fixed λ, chosen on validation from a grid
  ours            learned per-example λ, the paper's recipe (--recipe=paper), η chosen on validation
  reversed        ours with the hypergradient's sign flipped, at ours' chosen η (control)
  permuted        ours with each batch's λ shuffled among its examples, at ours' chosen η (control)
  softmatch       SoftMatch's truncated Gaussian weight, its paper's defaults only (no flag sets a parameter)
  freematch       FreeMatch's self-adaptive thresholds, its paper's defaults only (no flag sets a parameter)
  flexmatch       FlexMatch's class-wise thresholds, τ (--confidence) chosen on validation
  uasd            UASD's filter on the running mean prediction, its threshold chosen on validation
  ours_softmatch  learned λ on top of SoftMatch's weight, η chosen on validation

Every choice is the runner's one rule (lowest final validation loss). Paired tables: every method against base,
and every method but base against ours (Holm across each table). The learned λ of ours are related to wrong
pseudo-labels; the rules' own weights are not exported by a run, so their AUROC is not reported.
"""
from influence_ssl.studies import results as results_lib
from influence_ssl.studies.protocol import DEFAULT_TUNED_LAMBDA_GRID
from influence_ssl.studies.runner import Method, check_methods, run_study
from influence_ssl.trainer.config import ConfigError

ALGORITHMS = ("fixmatch", "pseudo_label")
DEFAULT_UASD_THRESHOLDS = (0.8, 0.9, 0.95)
DEFAULT_FLEXMATCH_CONFIDENCES = (0.9, 0.95)
OURS = {"weighting": "per_example"}
NONE = {"weighting": "none"}
# The flag each chosen method picks on validation, reported per seed.
CHOSEN = {"tuned_lambda": "weight_init", "ours": "weight_lr", "ours_softmatch": "weight_lr",
          "flexmatch": "confidence", "uasd": "uasd_threshold"}


def check_base(base):
    """ConfigError (one line) for a base configuration the rules do not apply to, or that sets what the study
    sets per method."""
    if base.family != "image" or base.algorithm.algorithm not in ALGORITHMS:
        raise ConfigError(f"The weighting rules apply to FixMatch and Pseudo-Label on images, not "
                          f"--algorithm={base.algorithm.algorithm} on --dataset={base.data.dataset}.")
    if base.algorithm.weighting_rule != "none":
        raise ConfigError("The study sets --weighting_rule per method: remove it.")
    if base.recipe != "paper":
        raise ConfigError("ours is the paper's recipe in this study: leave --recipe at paper.")


def methods(weight_lr_grid, tuned_lambda_grid=DEFAULT_TUNED_LAMBDA_GRID, uasd_thresholds=DEFAULT_UASD_THRESHOLDS,
            flexmatch_confidences=DEFAULT_FLEXMATCH_CONFIDENCES):
    """The rows, in table order."""
    rows = [Method("base", "the base algorithm, fixed mask and λ", (NONE,)),
            Method("base_plus_val", "base, the validation examples labeled too",
                   ({**NONE, "validation_labeled": True},)),
            Method("tuned_lambda", "one fixed λ chosen on validation",
                   tuple({**NONE, "weight_init": v} for v in tuned_lambda_grid)),
            Method("ours", "learned per-example λ (the paper's recipe)",
                   tuple({**OURS, "weight_lr": eta} for eta in weight_lr_grid)),
            Method("reversed", "ours, hypergradient reversed (control)", mirror="ours",
                   overrides={"reverse_hypergradient": True}),
            Method("permuted", "ours, λ shuffled within each batch (control)", mirror="ours",
                   overrides={"permute_weights": True}),
            Method("softmatch", "SoftMatch's weight (defaults)", ({**NONE, "weighting_rule": "softmatch"},)),
            Method("freematch", "FreeMatch's thresholds (defaults)", ({**NONE, "weighting_rule": "freematch"},)),
            Method("flexmatch", "FlexMatch's thresholds, τ chosen on validation",
                   tuple({**NONE, "weighting_rule": "flexmatch", "confidence": t} for t in flexmatch_confidences)),
            Method("uasd", "UASD's filter, threshold chosen on validation",
                   tuple({**NONE, "weighting_rule": "uasd", "uasd_threshold": t} for t in uasd_thresholds)),
            Method("ours_softmatch", "learned λ on top of SoftMatch's weight",
                   tuple({**OURS, "weighting_rule": "softmatch", "weight_lr": eta} for eta in weight_lr_grid))]
    check_methods(rows)
    return rows


def run(base, seeds, cache, weight_lr_grid, tuned_lambda_grid=DEFAULT_TUNED_LAMBDA_GRID,
        uasd_thresholds=DEFAULT_UASD_THRESHOLDS, flexmatch_confidences=DEFAULT_FLEXMATCH_CONFIDENCES,
        metric="test_accuracy", log=print):
    """The study's results dict (format results.FORMAT, study "weighting_rules")."""
    check_base(base)
    grids = {"weight_lr": list(weight_lr_grid), "weight_init": list(tuned_lambda_grid),
             "uasd_threshold": list(uasd_thresholds), "flexmatch_confidence": list(flexmatch_confidences)}
    if not all(grids.values()):
        raise ConfigError(f"Every grid needs a value, got {grids}.")
    rows = methods(weight_lr_grid, tuned_lambda_grid, uasd_thresholds, flexmatch_confidences)
    per_seed = run_study(base, rows, seeds, cache, log=log)
    summary = results_lib.summarize_methods(per_seed, rows, seeds, metric)
    for name, flag in CHOSEN.items():
        summary[name][f"{flag}_per_seed"] = [c[flag] for c in summary[name]["chosen"]]
    names = [m.name for m in rows]
    out = {"format": results_lib.FORMAT, "study": "weighting_rules", "seeds": list(seeds), "metric": metric,
           "ours_recipe": base.recipe, "grids": grids, "methods": summary,
           "paired": results_lib.paired_table(summary, [(n, "base") for n in names if n != "base"]),
           "paired_vs_ours": results_lib.paired_table(summary, [(n, "ours") for n in names
                                                                if n not in ("base", "ours")]),
           "rule_weights_auroc": "not reported: runs export the learned λ only, not a rule's weights",
           "config": base.to_dict()}
    pooled = results_lib.pooled_weights(per_seed, seeds, "ours")
    if pooled is not None:
        out.update(results_lib.weight_report(pooled, seeds))
    return out


def format_report(results):
    """The study as plain text."""
    lines = [results_lib.format_methods(results["methods"], results["seeds"], results["metric"]), "",
             "against base (accuracy points; same split, init and data order; Holm across these rows):",
             results_lib.format_paired(results["paired"]), "",
             f"against ours ({results['ours_recipe']} recipe; Holm across these rows):",
             results_lib.format_paired(results["paired_vs_ours"])]
    for name, flag in CHOSEN.items():
        lines.append(f"{name}: {flag} chosen per seed {results['methods'][name][f'{flag}_per_seed']}")
    w = results.get("weights")
    if w:
        lines.append(f"learned λ (ours): wrong pseudo-labels {100 * w['wrong_pseudo_label_rate_all']:.1f}% overall vs "
                     f"{100 * w['wrong_pseudo_label_rate_lowest_5pct']:.1f}% among the lowest 5% of λ; AUROC of -λ "
                     f"{w['auroc_low_weight_vs_wrong']:.3f} pooled")
    lines.append(f"the rules' weights: {results['rule_weights_auroc']}")
    return "\n".join(lines)
