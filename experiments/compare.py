r"""Base algorithm vs learned per-example weights, paired over seeds (Sec. 4.2 at CPU scale).

For every seed, base (--weighting=none), ours (per_example) and ours_reversed (the hypergradient's
sign flipped, a control) share the split, the initialisation, the data order and the augmentations.
With --weight_lr_grid, ours is trained at every η of the grid and the η of the lowest final
VALIDATION loss is kept (per seed; never the test set); ours_reversed uses the same η.

The weight diagnostics split the unlabeled examples by how many Λ steps gave them a non-zero
hypergradient (an example below FixMatch's confidence mask gets 0 and keeps its initial λ).

  python -m experiments.compare --algorithm=fixmatch --dataset=digits --seeds=5 --first_seed=0 \
      --json_out=out/compare_fixmatch_digits.json
"""
import json
import math
import os
import time

import numpy as np
from absl import flags

from experiments import image_ssl, paired_flags, quiet_absl_info, text_ssl, variant_flags
from experiments.checks import run_main, writable_dir
from influence_ssl.data import DatasetNotFoundError
from influence_ssl.metrics import auroc, count_group_masks, softmax, weight_diagnostics
from influence_ssl.report import format_table, method_summary
from influence_ssl.trainer import ConfigError, TrainingDiverged

FORMAT = "influence_ssl.compare/1"  # read by experiments.report
FLAGS = flags.FLAGS
JSON_OUT = "out/compare_{algorithm}_{dataset}.json"  # the default of --json_out (experiments.paired_flags)
# Only metrics that involve no choice made on the test set (best_test_accuracy is the maximum over
# test evaluations: it stays in results.json under "test_selected", for comparison with UDA's reports).
flags.DEFINE_enum("metric", "test_accuracy", ["test_accuracy", "median_last20_test_accuracy"],
                  "Per-run number compared: the final test accuracy, or the median of the last 20 evaluations.")
flags.DEFINE_string("seed_dir", None, "Where each finished seed is saved (default: beside --json_out, "
                    "<json_out>_seeds/). A restarted comparison loads the seeds found there instead of "
                    "re-running them, so a long sweep spans sessions; a seed saved under other settings is refused.")
flags.DEFINE_list("tuned_lambda_grid", [], "Also run the base algorithm with one fixed λ for every unlabeled "
                  "example, chosen per seed from this grid by the final validation loss (e.g. 0.1,0.3,1,3): "
                  "the baseline as informed as ours. Empty: not run.")
flags.DEFINE_string("baselines_from", None, "A --seed_dir of the same comparison without the hypergradient variant "
                    "flags (image_ssl.VARIANT_FLAGS) and with the default --influence, --influence_scope: base and the "
                    "tuned single λ, which these do not change, are read "
                    "from its seed files instead of being trained again (a seed it lacks is trained in full).")
flags.DEFINE_list("weight_lr_grid", [], "Λ step sizes η to choose from per seed by the final validation loss: "
                  "numbers, or 'default' for DEFAULT_WEIGHT_LR_GRIDS[--weight_optimizer] (empty: --weight_lr only).")

METHODS = {"base": ("none", False), "ours": ("per_example", False), "ours_reversed": ("per_example", True)}
TUNED = "tuned_single_lambda"  # with --tuned_lambda_grid: one fixed λ for all, chosen on validation
# Step-size grids per Λ optimizer. Adam-type steps are ~η per visit whatever the gradient's scale; an SGD
# step is η·g, and the hypergradient carries the training loss's 1/|U'| (|g| ~ 1e-4 on digits, 96 rows),
# so SGD's grid is shifted by that scale: comparing optimizers at one η would compare scales.
DEFAULT_WEIGHT_LR_GRIDS = {"madam": (0.01, 0.04, 0.1), "adam": (0.01, 0.04, 0.1), "sgd": (30.0, 100.0, 300.0, 1000.0)}


def recipe():
    """The module that builds runs of --dataset: experiments.text_ssl for imdb, else experiments.image_ssl."""
    return text_ssl if FLAGS.dataset == "imdb" else image_ssl


def active_methods():
    return list(METHODS) + ([TUNED] if FLAGS.tuned_lambda_grid else [])


def tuned_lambda_grid():
    try:
        grid = [float(v) for v in FLAGS.tuned_lambda_grid]
    except ValueError:
        raise ConfigError(f"--tuned_lambda_grid must be a list of numbers, got {FLAGS.tuned_lambda_grid}.") from None
    if not all(math.isfinite(v) and v >= 0 for v in grid):
        raise ConfigError(f"--tuned_lambda_grid must hold finite values >= 0, got {grid}.")
    return grid


def weight_lr_grid(settings):
    """The η values to try: --weight_lr_grid, or the single --weight_lr."""
    if FLAGS.weight_lr_grid == ["default"]:
        return list(DEFAULT_WEIGHT_LR_GRIDS[FLAGS.weight_optimizer])
    try:
        grid = [float(v) for v in FLAGS.weight_lr_grid] or [settings["weight_lr"]]
    except ValueError:
        raise ConfigError(f"--weight_lr_grid must be a list of numbers, got {FLAGS.weight_lr_grid}.") from None
    if not all(math.isfinite(v) and v > 0 for v in grid):
        raise ConfigError(f"--weight_lr_grid must hold finite values > 0, got {grid}.")
    return grid


def choose_on_validation(candidates):
    """The candidate (settings, trainer, results) whose run ends with the lowest validation loss.
    The test set plays no part in the choice."""
    return min(candidates, key=lambda candidate: candidate[2]["validation_loss"])


def run_baselines(settings, data, seed, chosen_lr):
    """{base, tuned λ (with --tuned_lambda_grid): metric} of one seed; the tuned λ goes into chosen_lr."""
    accuracy = {}
    _, base_results = train(settings, data, seed, "none")
    accuracy["base"] = base_results[FLAGS.metric]
    if FLAGS.tuned_lambda_grid:
        candidates = []
        for value in tuned_lambda_grid():
            candidate = dict(settings, weight_init=value)
            # λ = the preset's λ is the base run itself (same seed, config and data order).
            candidates.append((candidate, None, base_results) if value == settings["weight_init"]
                              else (candidate, *train(candidate, data, seed, "none")))
        candidate, _, results = choose_on_validation(candidates)
        accuracy[TUNED], chosen_lr[TUNED] = results[FLAGS.metric], candidate["weight_init"]
    return accuracy


def train(settings, data, seed, weighting, reverse=False):
    trainer = recipe().make_trainer(settings, data, seed, weighting, reverse=reverse, verbose=False)
    return trainer, trainer.run()


def run_seed(settings, seed, baselines=None):
    """Every method on one seed: ({method: metric}, {method: η}, diagnostics of ours' weights). baselines:
    base's and the tuned λ's results of this seed from a comparison that differs only in the variant flags."""
    data, _, _ = recipe().load_data(settings, seed)
    accuracy, chosen_lr = {}, {}
    if baselines is not None:
        accuracy["base"] = baselines["base"]
        if FLAGS.tuned_lambda_grid:
            accuracy[TUNED], chosen_lr[TUNED] = baselines[TUNED], baselines["tuned_lambda"]
    else:
        accuracy.update(run_baselines(settings, data, seed, chosen_lr))
    # ours at every η, keeping the lowest final validation loss.
    candidates = []
    for weight_lr in weight_lr_grid(settings):
        candidate = dict(settings, weight_lr=weight_lr)
        candidates.append((candidate, *train(candidate, data, seed, "per_example")))
    candidate, trainer, results = choose_on_validation(candidates)
    accuracy["ours"], chosen_lr["ours"] = results[FLAGS.metric], candidate["weight_lr"]
    _, reversed_results = train(candidate, data, seed, "per_example", reverse=True)
    accuracy["ours_reversed"], chosen_lr["ours_reversed"] = reversed_results[FLAGS.metric], candidate["weight_lr"]
    probs = softmax(trainer.logits(np.asarray(trainer.source.scale(data.unlabeled_x))))
    ood = np.zeros(len(data.unlabeled_ids), bool) if data.unlabeled_ood is None else data.unlabeled_ood
    # IMDb's unsup reviews have no label (-1): left out of the diagnostics. OOD rows have -1 too but stay in:
    # they are what AUROC(-λ → OOD) is about, and they count as wrong pseudo-labels.
    known = (data.unlabeled_true_y >= 0) | ood
    diagnostics = {"lambda": trainer.weights.to_numpy()[data.unlabeled_ids][known],
                   "counts": trainer.weights.counts_numpy()[data.unlabeled_ids][known],
                   "wrong": (probs.argmax(1) != data.unlabeled_true_y)[known],
                   "ood": ood[known],
                   "lambda_step_abs_mean": results["lambda"]["lambda_step_abs_mean_over_run"]}
    return accuracy, chosen_lr, diagnostics


def seed_record_path(seed_dir, seed):
    return os.path.join(seed_dir, f"seed_{seed}.npz")


def seed_fingerprint(settings, variants=True):
    """Everything that decides a seed's result besides the seed itself (variants=False: as if no variant flag
    were set and --influence, --influence_scope were at their defaults, i.e. the fingerprint of the comparison
    whose baselines --baselines_from reads)."""
    run_flags = image_ssl.run_flag_values(recipe().RUN_FLAGS)
    if not variants:  # the baselines' fingerprint: the hypergradient as the paper's (their seed files saved it so)
        run_flags = {k: variant_flags.PAPER_HYPERGRADIENT.get(k, v) for k, v in run_flags.items()
                     if k not in image_ssl.VARIANT_FLAGS}
    return json.dumps({"settings": settings, "algorithm": FLAGS.algorithm, "dataset": FLAGS.dataset,
                       "metric": FLAGS.metric, "weight_lr_grid": weight_lr_grid(settings), "flags": run_flags,
                       "tuned_lambda_grid": tuned_lambda_grid()}, sort_keys=True)


def saved_baselines(settings, seed):
    """base's (and the tuned λ's) saved results of `seed` under --baselines_from, or None if it has none."""
    if not FLAGS.baselines_from:
        return None
    path = seed_record_path(FLAGS.baselines_from, seed)
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as f:
        if str(f["fingerprint"]) != seed_fingerprint(settings, variants=False):
            raise ConfigError(f"--baselines_from: {path} was saved under settings other than these without the "
                              "variant flags; point it at the same comparison run without them.")
        out = {"base": float(f["accuracy_base"])}
        if FLAGS.tuned_lambda_grid:
            out.update({TUNED: float(f[f"accuracy_{TUNED}"]), "tuned_lambda": float(f["tuned_lambda"])})
    return out


def run_or_load_seed(settings, seed, seed_dir, fingerprint):
    """run_seed, or its saved result from an earlier (interrupted) run of the same settings."""
    path = seed_record_path(seed_dir, seed)
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as f:
            if str(f["fingerprint"]) != fingerprint:
                raise ConfigError(f"{path} was saved under other settings; use another --seed_dir or remove it.")
            accuracy = {m: float(f[f"accuracy_{m}"]) for m in active_methods()}
            chosen_lr = {m: float(f[f"weight_lr_{m}"]) for m in ("ours", "ours_reversed")}
            if FLAGS.tuned_lambda_grid:
                chosen_lr[TUNED] = float(f["tuned_lambda"])
            diagnostics = {key: f[key] for key in ("lambda", "counts", "wrong", "ood")}
            if recipe() is image_ssl and image_ssl.ood_requested() and FLAGS.ood_fraction > 0 and \
                    not diagnostics["ood"].any():
                raise ConfigError(f"{path} has no OOD rows in its diagnostics: it was saved by a version that left "
                                  "them out (fixed 2026-11-29). Its accuracies are valid but AUROC(-λ → OOD) cannot "
                                  "be computed from it; move it away to run the seed again.")
            diagnostics["lambda_step_abs_mean"] = float(f["lambda_step_abs_mean"])
        return accuracy, chosen_lr, diagnostics, True
    accuracy, chosen_lr, diagnostics = run_seed(settings, seed, saved_baselines(settings, seed))
    np.savez(path + ".tmp.npz", fingerprint=np.str_(fingerprint),
             **{f"accuracy_{m}": accuracy[m] for m in active_methods()},
             **{f"weight_lr_{m}": chosen_lr[m] for m in ("ours", "ours_reversed")},
             **({"tuned_lambda": chosen_lr[TUNED]} if TUNED in chosen_lr else {}), **diagnostics)
    os.replace(path + ".tmp.npz", path)  # a seed is saved whole or not at all
    return accuracy, chosen_lr, diagnostics, False


def count_group_diagnostics(lam, counts, wrong, seeds):
    """weight_diagnostics within each hypergradient-count group (with its share of the examples)."""
    out = {}
    for name, inside in count_group_masks(counts).items():
        if inside.sum() >= 2:
            out[name] = {"fraction": float(inside.mean()),
                         **weight_diagnostics(lam[inside], wrong[inside], groups=seeds[inside])}
        else:
            out[name] = {"fraction": float(inside.mean())}
    return out


def main(argv):
    del argv
    quiet_absl_info()
    settings = recipe().resolved()
    weight_lr_grid(settings)  # refuse bad grids before any training
    tuned_lambda_grid()
    seeds = paired_flags.seed_list()
    json_out = paired_flags.json_out(JSON_OUT, algorithm=FLAGS.algorithm, dataset=FLAGS.dataset)
    writable_dir(os.path.dirname(os.path.abspath(json_out)), "--json_out")
    seed_dir = writable_dir(FLAGS.seed_dir or os.path.splitext(json_out)[0] + "_seeds", "--seed_dir")
    fingerprint = seed_fingerprint(settings)
    if FLAGS.baselines_from and not os.path.isdir(FLAGS.baselines_from):
        raise ConfigError(f"--baselines_from={FLAGS.baselines_from} is not a directory of seed files.")
    per_method = {m: [] for m in active_methods()}
    chosen = {m: [] for m in ("ours", "ours_reversed")}
    tuned = []  # the λ chosen on validation per seed, with --tuned_lambda_grid
    rows = {key: [] for key in ("lambda", "counts", "wrong", "ood", "seed")}
    movement = []
    start = time.time()
    for seed in seeds:
        accuracy, chosen_lr, diagnostics, loaded = run_or_load_seed(settings, seed, seed_dir, fingerprint)
        for m in per_method:
            per_method[m].append(accuracy[m])
        for m in chosen:
            chosen[m].append(chosen_lr[m])
        if TUNED in chosen_lr:
            tuned.append(chosen_lr[TUNED])
        for key in ("lambda", "counts", "wrong", "ood"):
            rows[key].append(diagnostics[key])
        rows["seed"].append(np.full(len(diagnostics["lambda"]), seed))
        movement.append(diagnostics["lambda_step_abs_mean"])
        print(f"seed {seed}: " + ", ".join(f"{m} {100 * accuracy[m]:.1f}" for m in per_method)
              + f" (η = {chosen_lr['ours']:g})" + (" [saved earlier]" if loaded else f" [{time.time() - start:.0f}s]"),
              flush=True)
    methods = {m: method_summary(per_method[m]) for m in per_method}
    for m in chosen:
        methods[m]["weight_lr_per_seed"] = chosen[m]
    if TUNED in methods:
        methods[TUNED]["lambda_per_seed"] = tuned
    methods["ours"]["lambda_step_abs_mean_per_seed"] = movement
    lam, counts, wrong, ood, seed_of_row = map(np.concatenate, (rows["lambda"], rows["counts"], rows["wrong"],
                                                                rows["ood"], rows["seed"]))
    results = {"format": FORMAT, "dataset": FLAGS.dataset, "algorithm": FLAGS.algorithm, "seeds": seeds,
               "metric": FLAGS.metric,
               "weight_lr_grid": weight_lr_grid(settings), "methods": methods,
               "weights": weight_diagnostics(lam, wrong, groups=seed_of_row),
               # An example whose hypergradient was always 0 (e.g. below the confidence mask at every Λ step
               # that sampled it) keeps its initial λ whatever its pseudo-label: diagnostics by that count.
               "weights_by_hypergradient_count": count_group_diagnostics(lam, counts, wrong, seed_of_row),
               "settings": settings, "flags": image_ssl.run_flag_values(recipe().RUN_FLAGS)}
    if recipe() is image_ssl and image_ssl.ood_requested():  # OOD rows count as wrong pseudo-labels
        results["ood_fraction"] = float(ood.mean())  # 0 with --ood_fraction=0: the in-distribution reference
    if ood.any():
        results["auroc_low_weight_vs_ood"] = auroc(-lam, ood)
        results["auroc_low_weight_vs_ood_per_seed"] = [auroc(-lam[seed_of_row == s], ood[seed_of_row == s])
                                                        for s in seeds]
    with open(json_out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\n{FLAGS.algorithm} on {FLAGS.dataset}, {len(seeds)} seeds, {FLAGS.metric}:")
    print(format_table(methods, seeds, "base", [m for m in methods if m != "base"]))
    groups = [("all unlabeled", results["weights"])] + [
        (f"{name} non-zero hypergradients, {100 * w['fraction']:.0f}% of examples", w)
        for name, w in results["weights_by_hypergradient_count"].items() if "auroc_low_weight_vs_wrong" in w]
    for label, w in groups:
        print(f"learned weights (ours, {label}): wrong pseudo-labels "
              f"{100 * w['wrong_pseudo_label_rate_all']:.1f}% overall vs "
              f"{100 * w['wrong_pseudo_label_rate_lowest_5pct']:.1f}% among the lowest 5% of λ; "
              f"AUROC of -λ {w['auroc_low_weight_vs_wrong']:.3f} pooled, "
              f"{w['auroc_low_weight_vs_wrong_per_seed_mean']:.3f} ± {w['auroc_low_weight_vs_wrong_per_seed_std']:.3f} per seed")
    if "auroc_low_weight_vs_ood" in results:
        print(f"out-of-distribution unlabeled: {100 * results['ood_fraction']:.0f}%; AUROC of -λ for OOD "
              f"{results['auroc_low_weight_vs_ood']:.3f} pooled, per seed "
              + ", ".join(f"{a:.3f}" for a in results["auroc_low_weight_vs_ood_per_seed"]))
    print(f"mean |Δλ| per Λ step (ours): {np.mean(movement):.4g}")
    print(f"results: {json_out}\ntotal time {time.time() - start:.0f}s")


def run():
    run_main(main, DatasetNotFoundError, TrainingDiverged, *text_ssl.ERRORS)


if __name__ == "__main__":
    run()
