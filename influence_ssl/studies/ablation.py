"""The ablations of Sec. 4.3, each a study with the base algorithm and the reversed control on the same seeds.

  influence        Fig. 3: the exact last-layer influence (ours) vs the identity (Luketina et al.), Neumann
                   (Lorraine et al.) and CG (Koh & Liang) over the last block plus the classifier.
  weighting        Fig. 4 left: per-example λ vs one shared λ learned by the same hypergradient vs the fixed
                   λ of the base algorithm, at several label counts.
  optimizer        Fig. 4 centre: M-Adam vs Adam vs SGD for Λ, each at the step size of its grid chosen on validation.
  validation_size  Fig. 4 right: the validation set's size.
  sensitivity      Table 3: the paper's (N, η) grid relative to its default (100, 0.01), i.e. N × {0.3, 1, 3} and
                   η × {0.1, 1, 10} applied to this run's defaults (so the paper-scale run gets the paper's values).
  recipe           the paper's Alg. 1 against the authors' code (--recipe=authors_code), then each of the authors'
                   switches alone on top of the paper's recipe: which difference matters for accuracy and for
                   AUROC(-λ -> wrong pseudo-label); with a single λ tuned on validation, and λ's movement.
"""
import numpy as np

from influence_ssl.runs.presets import authors_switches
from influence_ssl.studies import results as results_lib
from influence_ssl.studies.protocol import DEFAULT_TUNED_LAMBDA_GRID, DEFAULT_WEIGHT_LR_GRIDS
from influence_ssl.studies.runner import Method, check_methods, run_study
from influence_ssl.trainer.config import ConfigError

STUDIES = ("influence", "weighting", "optimizer", "validation_size", "sensitivity", "recipe")
DEFAULT_LABEL_COUNTS = {"image": (20, 50, 100), "2d": (4, 10, 30)}
DEFAULT_VALIDATION_SIZES = {"image": (20, 50, 100, 200, 400), "2d": (10, 30, 100, 300)}
# Table 3 relative to the paper's default (N, η) = (100, 0.01).
PAPER_DEFAULT_N, PAPER_DEFAULT_ETA = 100, 0.01
PAPER_SENSITIVITY_GRID = ((30, 0.01), (300, 0.01), (100, 0.01), (100, 0.1), (100, 0.001))
OURS = {"weighting": "per_example"}


def sized(base, num_labeled=None, num_validation=None):
    """Overrides for a labeled / validation size. The batches stay (a labeled set smaller than its batch repeats
    within it, as FixMatch's at 40 labels does), so that only the size changes; on images a validation batch
    shrinks to fit (a Λ step draws V' without replacement). The 2-D problems train on full batches anyway."""
    out = {}
    if num_labeled is not None:
        out["num_labeled"] = num_labeled
    if num_validation is not None:
        out["num_validation"] = num_validation
        if base.family != "2d":
            out["validation_batch"] = min(base.train.validation_batch, num_validation)
    return out


def with_controls(rows, mirror, x=None, suffix="", size=None):
    """[base] + rows + [reversed `mirror`]: the controls every study runs on the same seeds (and split)."""
    return ([Method("base" + suffix, "base (fixed λ, no weights)", ({"weighting": "none", **(size or {})},), x=x)]
            + rows + [Method("reversed" + suffix, "ours, hypergradient reversed (control)", mirror=mirror,
                             overrides={"reverse_hypergradient": True}, x=x)])


def recipe_rows(base, tuned_lambda_grid=None):
    """Base, a tuned single λ, ours and its reversed control under each recipe, then ours (paper) with each switch
    of the authors' code that applies. Frozen CTA rates change the base algorithm: its own base then."""
    if base.recipe != "paper":
        raise ConfigError("--study=recipe compares both recipes from the paper's: leave --recipe at paper.")
    switches = authors_switches({"dataset": base.data.dataset, "algorithm": base.algorithm.algorithm,
                                 "augment": base.algorithm.augment, "batch": base.train.labeled_batch,
                                 "uratio": base.uratio})
    authors = {flag: value for fields in switches.values() for flag, value in fields.items()}
    reverse = {"reverse_hypergradient": True}
    grid = tuned_lambda_grid or DEFAULT_TUNED_LAMBDA_GRID
    rows = [Method("base", "base (fixed λ = 1)", ({"weighting": "none"},)),
            Method("tuned_lambda", "one fixed λ chosen on validation",
                   tuple({"weighting": "none", "weight_init": v} for v in grid)),
            Method("ours_paper", "ours, the paper's recipe", (OURS,)),
            Method("reversed_paper", "ours (paper), hypergradient reversed", mirror="ours_paper", overrides=reverse),
            Method("ours_authors", "ours, the authors' code", ({**OURS, **authors},)),
            Method("reversed_authors", "ours (authors' code), hypergradient reversed", mirror="ours_authors",
                   overrides=reverse)]
    if "frozen_cta" in switches:
        rows.insert(1, Method("base_frozen_cta", "base with CTA's rates frozen (the authors' code)",
                              ({"weighting": "none", **switches["frozen_cta"]},)))
    rows += [Method(f"paper+{name}", f"ours (paper) with the authors' {name}", ({**OURS, **fields},))
             for name, fields in switches.items()]
    return rows


def recipe_pairs(rows):
    """Each row against its base (the frozen-CTA base for the authors' code), and the authors' code and each
    switch against the paper's recipe."""
    names = [m.name for m in rows]
    authors_base = "base_frozen_cta" if "base_frozen_cta" in names else "base"
    pairs = [("tuned_lambda", "base"), ("ours_paper", "base"), ("reversed_paper", "base"),
             ("ours_authors", authors_base), ("reversed_authors", authors_base), ("ours_paper", "tuned_lambda"),
             ("ours_authors", "ours_paper")]
    return pairs + [(name, "ours_paper") for name in names if name.startswith("paper+")]


def methods(study, base, *, label_counts=None, validation_sizes=None, weight_lr_grids=None, tuned_lambda_grid=None):
    """The rows of `study` over the base configuration `base`, in table order."""
    t = base.train
    if study == "influence":
        rows = [Method("exact_head", "ours: exact inverse Hessian, last layer",
                       ({**OURS, "influence": "exact", "influence_scope": "head"},))]
        for name, who in [("identity", "Luketina et al."), ("neumann", "Lorraine et al."), ("cg", "Koh & Liang")]:
            rows.append(Method(f"{name}_last_block", f"{name} ({who}), last block + classifier",
                               ({**OURS, "influence": name, "influence_scope": "last_block"},)))
        rows = with_controls(rows, "exact_head")
    elif study == "optimizer":
        grids = {**DEFAULT_WEIGHT_LR_GRIDS[base.family], **(weight_lr_grids or {})}
        labels = {"madam": "M-Adam (App. C)", "adam": "Adam (every λ's moments decay)", "sgd": "SGD"}
        rows = with_controls([Method(name, labels[name], tuple({**OURS, "weight_optimizer": name, "weight_lr": eta}
                                                               for eta in grid)) for name, grid in grids.items()],
                             "madam")
    elif study == "sensitivity":
        rows = []
        for n, eta in PAPER_SENSITIVITY_GRID:
            inner = max(1, round(t.inner_steps * n / PAPER_DEFAULT_N))
            lr = t.weight_lr * eta / PAPER_DEFAULT_ETA
            rows.append(Method(f"N={inner},eta={lr:g}", f"ours, N={inner}, η={lr:g} (paper: N={n}, η={eta:g})",
                               ({**OURS, "inner_steps": inner, "weight_lr": lr},), paper=(n, eta)))
        rows = with_controls(rows, f"N={t.inner_steps},eta={t.weight_lr:g}")
    elif study == "weighting":
        rows = []
        for n in label_counts or DEFAULT_LABEL_COUNTS[base.family]:
            size = sized(base, num_labeled=n)
            rows += with_controls([Method(f"single@{n}", "one shared λ, learned", ({"weighting": "single", **size},),
                                          x=n),
                                   Method(f"ours@{n}", "per-example λ (ours)", ({**OURS, **size},), x=n)],
                                  f"ours@{n}", x=n, suffix=f"@{n}", size=size)
    elif study == "validation_size":
        rows = []
        for v in validation_sizes or DEFAULT_VALIDATION_SIZES[base.family]:
            size = sized(base, num_validation=v)
            rows += with_controls([Method(f"ours@{v}", "per-example λ (ours)", ({**OURS, **size},), x=v)],
                                  f"ours@{v}", x=v, suffix=f"@{v}", size=size)
    elif study == "recipe":
        rows = recipe_rows(base, tuned_lambda_grid)
    else:
        raise ValueError(f"Unknown study {study!r}.")
    check_methods(rows)
    return rows


def curve(records):
    """Validation error over training, mean ± std over seeds (None where the seeds' steps differ)."""
    steps = records[0]["curve_steps"]
    if not steps or any(r["curve_steps"] != steps for r in records):
        return None
    curves = np.array([r["curve_validation_error"] for r in records])
    std = curves.std(0, ddof=1) if len(records) > 1 else np.zeros(len(steps))
    return {"steps": steps, "mean": curves.mean(0).tolist(), "std": std.tolist(), "per_seed": curves.tolist()}


def run(study, base, seeds, cache, log=print, **options):
    rows = methods(study, base, **options)
    per_seed = run_study(base, rows, seeds, cache, log=log)
    summary = results_lib.summarize_methods(per_seed, rows, seeds, "test_accuracy")
    for m in rows:
        records = [per_seed[s][m.name][1] for s in seeds]
        entry = summary[m.name]
        entry["validation_accuracy"] = [r["validation_accuracy"] for r in records]
        entry["validation_loss"] = [r["validation_loss"] for r in records]
        entry["lambda_step_abs_mean"] = [r["lambda_step_abs_mean"] for r in records]
        entry["seconds"] = [r["seconds"] for r in records]
        entry["validation_error_curve"] = curve(records)
        finite = [v for v in entry["validation_accuracy"] if np.isfinite(v)]
        entry["validation_accuracy_mean"] = float(np.mean(finite)) if finite else float("nan")
    out = {"format": results_lib.FORMAT, "study": f"ablation_{study}", "ablation": study, "seeds": list(seeds),
           "metric": "test_accuracy", "methods": summary, "config": base.to_dict()}
    if study == "recipe":
        add_weight_diagnostics(summary, rows, per_seed, seeds)
        out["paired"] = results_lib.paired_table(summary, recipe_pairs(rows))
        out["paired_auroc"] = recipe_auroc_table(summary)
        return out
    # Each row paired against the base run of the same axis value (the same split), then the study's own question.
    pairs = [(m.name, next(b.name for b in rows if b.name.startswith("base") and b.x == m.x))
             for m in rows if not m.name.startswith("base")]
    out["paired"] = paired = results_lib.paired_table(summary, pairs + question_pairs(study, rows))
    for a, b in pairs:
        if f"{a} - {b}" in paired:
            summary[a]["paired_vs_base"] = paired[f"{a} - {b}"]
    return out


def question_pairs(study, rows):
    """The comparisons a study's figure makes beyond its controls: per-example against one shared λ at each label
    count (Fig. 4 left), M-Adam against each other optimizer (Fig. 4 centre), each (N, η) against the default
    (Table 3's bold column)."""
    if study == "weighting":
        return [(f"ours@{m.x}", m.name) for m in rows if m.name.startswith("single@")]
    if study == "optimizer":  # its rows are always madam, adam and sgd (a grid flag changes their η only)
        return [("madam", "adam"), ("madam", "sgd")]
    if study == "sensitivity":
        default = next(m.name for m in rows if m.paper == (PAPER_DEFAULT_N, PAPER_DEFAULT_ETA))
        return [(m.name, default) for m in rows if m.paper and m.name != default]
    return []


def add_weight_diagnostics(summary, rows, per_seed, seeds):
    """Per method: how far λ moved, and for learned weights their diagnostics (the recipe study's)."""
    for m in rows:
        entry = summary[m.name]
        entry.update(results_lib.lambda_movement([per_seed[s][m.name][2] for s in seeds]))
        pooled = results_lib.pooled_weights(per_seed, seeds, m.name)
        if pooled is not None and (m.mirror or m.candidates[0].get("weighting") != "none"):
            entry["weights"] = results_lib.weight_report(pooled, seeds)["weights"]


def recipe_auroc_table(summary):
    """AUROC(-λ -> wrong pseudo-label) per seed, paired: each recipe against its reversed control, the authors'
    code and each switch against the paper's recipe (Holm across these rows)."""
    aurocs = {name: {"values": entry["weights"]["auroc_low_weight_vs_wrong_per_seed"]}
              for name, entry in summary.items() if "weights" in entry}
    pairs = [("ours_paper", "reversed_paper"), ("ours_authors", "reversed_authors"), ("ours_authors", "ours_paper")]
    pairs += [(name, "ours_paper") for name in aurocs if name.startswith("paper+")]
    return results_lib.paired_table(aurocs, [(a, b) for a, b in pairs if a in aurocs and b in aurocs])


def format_report(results):
    lines = [results_lib.format_methods(results["methods"], results["seeds"], "test_accuracy"), "",
             "paired: each row against the base run of the same setting, then the study's own question "
             "(accuracy points; Holm across these rows):",
             results_lib.format_paired(results["paired"])]
    if "paired_auroc" in results:
        lines += ["", "AUROC of -λ for wrong pseudo-labels, per seed, paired (Holm across these rows):",
                  results_lib.format_paired(results["paired_auroc"], scale=1.0)]
    return "\n".join(lines)
