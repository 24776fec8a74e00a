"""The weighting rules of the field against learned per-example λ, paired over seeds.

Methods (every seed shares the split, the initialisation, the data order and the augmentations):
  base            the SSL algorithm with its fixed confidence mask and one fixed λ (weighting=none)
  base_plus_val   base with the validation examples labeled too (--validation_labeled): the labels ours uses
  tuned_lambda    base with one fixed λ, chosen on validation from a grid
  ours            learned per-example λ, the paper's recipe (--recipe=paper), η chosen on validation
  reversed        ours with the hypergradient's sign flipped, at ours' chosen η (control)
  permuted        ours with each batch's λ shuffled among its examples, at ours' chosen η (control)
  softmatch       SoftMatch's truncated Gaussian weight, its EMA momentum m chosen on validation
  freematch       FreeMatch's self-adaptive thresholds, its EMA momentum m chosen on validation
  flexmatch       FlexMatch's class-wise thresholds, τ (--confidence) chosen on validation
  uasd            UASD's filter on the running mean prediction, its threshold chosen on validation
  ours_softmatch  learned λ on top of SoftMatch's weight at softmatch's chosen m, η chosen on validation

Each rule runs its paper's defaults but for one parameter chosen from a small grid that holds the default, as
ours' η is: SoftMatch's and FreeMatch's m = 0.999 averages over ~1,000 steps, the whole length of a CPU-scale
run (their papers train 2^20 steps), hence the grid (0.999, 0.99).

Every choice is the runner's one rule (lowest final validation loss). Paired tables: every method against base,
and every method but base against ours (Holm across each table).

What the weights say about the examples, per seed (each run exports, for every unlabeled example, its learned
λ, the final model's confidence and pseudo-label, and the weight the run's own mask or rule gives it under the
final model, its statistics as the run left them): AUROC of the low weights for wrong pseudo-labels and, with
out-of-distribution data, for OOD examples; the share of OOD examples among the lowest 5% (ties by their
expected share); paired: each rule's weight and FixMatch's own mask against ours' λ (Holm). Whether ours' λ
ranks the examples as a rule does: Spearman's ρ between ours' λ and each rule's weight on the same seed (the
same split and unlabeled set; two runs), and ours' mean λ in the quantile bins of each rule's weight.
"""
import numpy as np
from scipy import stats as scipy_stats

from influence_ssl.metrics import auroc, lowest_fraction_rate
from influence_ssl.studies import results as results_lib
from influence_ssl.studies.protocol import DEFAULT_TUNED_LAMBDA_GRID
from influence_ssl.studies.runner import Method, check_methods, run_study
from influence_ssl.trainer.config import ConfigError

ALGORITHMS = ("fixmatch", "pseudo_label")
# UASD's threshold applies to a mean over every visit since the start, low-confidence early ones included.
DEFAULT_UASD_THRESHOLDS = (0.7, 0.8, 0.9)
DEFAULT_FLEXMATCH_CONFIDENCES = (0.9, 0.95)
DEFAULT_WEIGHTING_EMAS = (0.999, 0.99)
OURS = {"weighting": "per_example"}
NONE = {"weighting": "none"}
# The flag each chosen method picks on validation, reported per seed.
CHOSEN = {"tuned_lambda": "weight_init", "ours": "weight_lr", "softmatch": "weighting_ema",
          "freematch": "weighting_ema", "flexmatch": "confidence", "uasd": "uasd_threshold",
          "ours_softmatch": "weight_lr"}
# The rows whose runs learn λ, and the rules whose weights ours' λ is set beside.
LEARNED = ("ours", "reversed", "permuted", "ours_softmatch")
RULES = ("softmatch", "freematch", "flexmatch", "uasd")
RANK_BINS = 10


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
            flexmatch_confidences=DEFAULT_FLEXMATCH_CONFIDENCES, weighting_emas=DEFAULT_WEIGHTING_EMAS):
    """The rows, in table order."""
    def rule(name, flag, grid):
        return tuple({**NONE, "weighting_rule": name, flag: v} for v in grid)

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
            Method("softmatch", "SoftMatch's weight, m chosen on validation",
                   rule("softmatch", "weighting_ema", weighting_emas)),
            Method("freematch", "FreeMatch's thresholds, m chosen on validation",
                   rule("freematch", "weighting_ema", weighting_emas)),
            Method("flexmatch", "FlexMatch's thresholds, τ chosen on validation",
                   rule("flexmatch", "confidence", flexmatch_confidences)),
            Method("uasd", "UASD's filter, threshold chosen on validation",
                   rule("uasd", "uasd_threshold", uasd_thresholds)),
            Method("ours_softmatch", "learned λ on top of SoftMatch's weight", mirror="softmatch",
                   overrides=OURS, candidates=tuple({"weight_lr": eta} for eta in weight_lr_grid))]
    check_methods(rows)
    return rows


def run(base, seeds, cache, weight_lr_grid, tuned_lambda_grid=DEFAULT_TUNED_LAMBDA_GRID,
        uasd_thresholds=DEFAULT_UASD_THRESHOLDS, flexmatch_confidences=DEFAULT_FLEXMATCH_CONFIDENCES,
        weighting_emas=DEFAULT_WEIGHTING_EMAS, metric="test_accuracy", log=print):
    """The study's results dict (format results.FORMAT, study "weighting_rules")."""
    check_base(base)
    grids = {"weight_lr": list(weight_lr_grid), "weight_init": list(tuned_lambda_grid),
             "uasd_threshold": list(uasd_thresholds), "flexmatch_confidence": list(flexmatch_confidences),
             "weighting_ema": list(weighting_emas)}
    if not all(grids.values()):
        raise ConfigError(f"Every grid needs a value, got {grids}.")
    rows = methods(weight_lr_grid, tuned_lambda_grid, uasd_thresholds, flexmatch_confidences, weighting_emas)
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
           "paired_on_rule": results_lib.paired_table(summary, on_rule_pairs(names)),
           "config": base.to_dict()}
    pooled = results_lib.pooled_weights(per_seed, seeds, "ours")
    if pooled is not None:
        out.update(results_lib.weight_report(pooled, seeds))
    arrays = {name: [per_seed[s][name][2] for s in seeds] for name in names}
    out["scores"] = scores = score_table(arrays)
    out["paired_scores"] = paired_scores(scores)
    out["rank_agreement"] = rank_agreement(arrays)
    return out


def on_rule_pairs(names):
    """[(ours_<rule>, <rule>)]: learned λ on top of a rule against the rule alone (what λ adds to it)."""
    return [(n, n[len("ours_"):]) for n in names if n.startswith("ours_") and n[len("ours_"):] in names]


def score_names(arrays):
    """[(row, method, array key)]: the learned λ of the rows that learn it, and the weight of base's fixed mask,
    of each rule and of SoftMatch under ours_softmatch (the other rows' own weight is base's mask again)."""
    rows = [(f"{m} λ", m, "lambda") for m in LEARNED if m in arrays]
    return rows + [(f"{m} w", m, "rule_weight") for m in ("base",) + RULES + ("ours_softmatch",) if m in arrays]


def score_table(arrays):
    """{row: per-seed statistics of a score} for score_names: AUROC of the low values for wrong pseudo-labels,
    and with OOD rows for OOD examples, with the share of OOD rows among the lowest 5% and overall. A seed whose
    run diverged, or exported no such score, gives NaN."""
    table = {}
    for row, method, key in score_names(arrays):
        per_seed = [_score_stats(a, key) for a in arrays[method]]
        entry = {name: [s.get(name, float("nan")) for s in per_seed]
                 for name in ("auroc_wrong", "auroc_ood", "ood_share_lowest_5pct", "ood_share")}
        if all(np.isnan(v) for v in entry["auroc_ood"]):
            entry = {"auroc_wrong": entry["auroc_wrong"]}
        entry["auroc_wrong_mean"] = _nanmean(entry["auroc_wrong"])
        if "auroc_ood" in entry:
            entry["auroc_ood_mean"] = _nanmean(entry["auroc_ood"])
        table[row] = entry
    return table


def _score_stats(arrays, key):
    if arrays is None or key not in arrays or np.all(np.isnan(arrays[key])):
        return {}
    score, wrong, ood = np.asarray(arrays[key], float), arrays["wrong"], np.asarray(arrays["ood"], bool)
    out = {"auroc_wrong": auroc(-score, wrong)}
    if ood.any():
        out.update(auroc_ood=auroc(-score, ood), ood_share=float(ood.mean()),
                   ood_share_lowest_5pct=lowest_fraction_rate(score, ood, 0.05))
    return out


def _nanmean(values):
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def paired_scores(scores):
    """AUROC (wrong pseudo-labels, then OOD where there is any) per seed, paired: each rule's weight, FixMatch's
    own mask (base w) and the λ of the controls against ours' λ (Holm across each table)."""
    if "ours λ" not in scores:
        return {}
    others = [f"{m} w" for m in ("base",) + RULES] + [f"{m} λ" for m in LEARNED if m != "ours"]
    out = {}
    for kind in ("auroc_wrong", "auroc_ood"):
        values = {row: {"values": entry[kind]} for row, entry in scores.items() if kind in entry}
        pairs = [(row, "ours λ") for row in others if row in values and "ours λ" in values]
        if pairs:
            out[kind] = results_lib.paired_table(values, pairs)
    return out


def rank_agreement(arrays):
    """Per rule (and base's mask): Spearman's ρ per seed between ours' λ and the rule run's weight of the same
    examples, and ours' mean λ in bins of the rule's weight (pooled over seeds)."""
    out = {}
    for method in ("base",) + RULES:
        pairs = [(o, r) for o, r in zip(arrays["ours"], arrays[method])
                 if o is not None and r is not None and "rule_weight" in r and not np.all(np.isnan(r["rule_weight"]))]
        if not pairs:
            continue
        rho = [_spearman(o["lambda"], r["rule_weight"]) for o, r in pairs]
        lam = np.concatenate([o["lambda"] for o, _ in pairs])
        weight = np.concatenate([r["rule_weight"] for _, r in pairs])
        out[method] = {"spearman_per_seed": rho, "spearman_mean": _nanmean(rho), **_binned(weight, lam)}
    return out


def _spearman(a, b):
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # a constant ranks nothing
    return float(scipy_stats.spearmanr(a, b).statistic)


def _binned(weight, lam):
    """Ours' λ (mean, count) within bins of a weight: one bin per value where it takes at most RANK_BINS values
    (a 0/1 mask: two), else RANK_BINS quantile bins (empty ones, between tied edges, left out)."""
    values = np.unique(weight)
    if len(values) <= RANK_BINS:
        bins = [(v, v, weight == v) for v in values]
    else:
        edges = np.quantile(weight, np.linspace(0, 1, RANK_BINS + 1))
        index = np.clip(np.searchsorted(edges, weight, side="right") - 1, 0, RANK_BINS - 1)
        bins = [(edges[i], edges[i + 1], index == i) for i in range(RANK_BINS) if np.any(index == i)]
    return {"weight_bins": [[float(low), float(high)] for low, high, _ in bins],
            "lambda_mean_in_bin": [float(lam[inside].mean()) for _, _, inside in bins],
            "count_in_bin": [int(inside.sum()) for _, _, inside in bins]}


def format_report(results):
    """The study as plain text."""
    lines = [results_lib.format_methods(results["methods"], results["seeds"], results["metric"]), "",
             "against base (accuracy points; same split, init and data order; Holm across these rows):",
             results_lib.format_paired(results["paired"]), "",
             f"against ours ({results['ours_recipe']} recipe; Holm across these rows):",
             results_lib.format_paired(results["paired_vs_ours"])]
    if results.get("paired_on_rule"):
        lines += ["", "learned λ on top of a rule, against the rule alone (Holm across these rows):",
                  results_lib.format_paired(results["paired_on_rule"])]
    for name, flag in CHOSEN.items():
        lines.append(f"{name}: {flag} chosen per seed {results['methods'][name][f'{flag}_per_seed']}")
    w = results.get("weights")
    if w:
        lines.append(f"learned λ (ours): wrong pseudo-labels {100 * w['wrong_pseudo_label_rate_all']:.1f}% overall vs "
                     f"{100 * w['wrong_pseudo_label_rate_lowest_5pct']:.1f}% among the lowest 5% of λ; AUROC of -λ "
                     f"{w['auroc_low_weight_vs_wrong']:.3f} pooled")
    lines += ["", "low weights as a detector (AUROC, mean over seeds; λ: learned, w: the run's own mask or rule):"]
    for row, entry in results["scores"].items():
        ood = ""
        if "auroc_ood" in entry:
            ood = (f", OOD {entry['auroc_ood_mean']:.3f} (OOD share in the lowest 5% "
                   f"{100 * _nanmean(entry['ood_share_lowest_5pct']):.1f}% against "
                   f"{100 * _nanmean(entry['ood_share']):.1f}% overall)")
        lines.append(f"  {row:<18} wrong pseudo-labels {entry['auroc_wrong_mean']:.3f}{ood}")
    for kind, table in results["paired_scores"].items():
        lines += ["", f"{kind} per seed, paired against ours' λ (Holm across these rows):",
                  results_lib.format_paired(table, scale=1.0)]
    lines += ["", "does ours' λ rank the examples as a rule's weight does (Spearman ρ per seed, mean):"]
    for method, entry in results["rank_agreement"].items():
        lines.append(f"  {method:<10} ρ = {entry['spearman_mean']:+.3f}; ours' mean λ by the rule's weight bin: "
                     + ", ".join(f"[{lo:.2g}, {hi:.2g}] {m:.3f}" for (lo, hi), m in
                                 zip(entry["weight_bins"], entry["lambda_mean_in_bin"])))
    return "\n".join(lines)
