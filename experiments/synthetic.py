r"""The synthetic experiments of Sec. 4.1 (Fig. 1 and 2): Pseudo-Label with learned per-example weights.

For every seed, on the same data, initialisation and data order, it trains:
  supervised          λ = 0
  pseudo_label        one fixed λ (--weight_init), the paper's baseline
  pseudo_label_tuned  one fixed λ chosen per seed on the VALIDATION set from --tuned_grid
  ours                learned per-example weights (Alg. 1, exact last-layer influence, M-Adam)
  ours_reversed       the same with the hypergradient's sign flipped (a control)
and reports test accuracy per method, paired differences against pseudo_label, and how the
learned weights relate to wrong pseudo-labels.

  python -m experiments.synthetic --dataset=moons --seeds=10 --first_seed=0 \
      --json_out=out/synthetic_moons.json --plot_dir=out/plots
"""
import json
import math
import os
import sys
import time

import numpy as np
from absl import flags

from experiments import diagnostics, quiet_absl_info, synthetic_recipe, variant_flags
from experiments.checks import run_main, writable_dir
from influence_ssl.data import SYNTHETIC_DATASETS
from influence_ssl.metrics import weight_diagnostics
from influence_ssl.report import format_table, method_summary
from influence_ssl.trainer import ConfigError
from influence_ssl.trainer.config import INFLUENCE_METHODS, INFLUENCE_SCOPES, WEIGHT_OPTIMIZERS

FORMAT = "influence_ssl.synthetic/1"  # read by experiments.report
FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "moons", SYNTHETIC_DATASETS, "Synthetic dataset (Sec. 4.1).")
flags.DEFINE_integer("seeds", 10, "Number of seeds.")
flags.DEFINE_integer("first_seed", 0, "First seed; seeds are first_seed .. first_seed + seeds - 1.")
flags.DEFINE_string("json_out", "out/synthetic_{dataset}.json", "Where the results JSON goes.")
flags.DEFINE_string("plot_dir", "out/plots", "Where the Fig. 1/2 pictures go ('' for none).")
flags.DEFINE_string("runs_dir", "", "If set, ours' per-example record of every seed goes to RUNS_DIR/seed_<s>/ "
                    "(read by experiments.inspect_weights).")
D = synthetic_recipe.DEFAULTS
# Data (Sec. 4.1: 10 labeled, 30 validation, 1000 unlabeled).
flags.DEFINE_integer("num_labeled", D["num_labeled"], "Labeled training examples.")
flags.DEFINE_integer("num_validation", D["num_validation"], "Validation examples.")
flags.DEFINE_integer("num_unlabeled", D["num_unlabeled"], "Unlabeled training examples.")
flags.DEFINE_integer("num_test", D["num_test"], "Test examples (ground truth for accuracy).")
# θ training (Adam, as in the paper; values chosen for a fast CPU run).
flags.DEFINE_integer("steps", D["steps"], "θ steps per run.")
flags.DEFINE_float("lr", D["lr"], "Adam learning rate of θ.")
flags.DEFINE_float("weight_decay", D["weight_decay"], "L2 coefficient on kernels (also the influence's l2).")
flags.DEFINE_integer("unlabeled_batch", D["unlabeled_batch"], "Unlabeled batch |U'| (default: all of U, a full batch).")
flags.DEFINE_integer("unlabeled_rampup", D["unlabeled_rampup"], "Steps over which the unsupervised term ramps up.")
flags.DEFINE_float("pl_threshold", D["pl_threshold"], "Pseudo-Label confidence threshold (0: all examples).")
# Alg. 1.
flags.DEFINE_integer("inner_steps", D["inner_steps"], "θ steps between Λ steps [N].")
flags.DEFINE_float("weight_lr", D["weight_lr"], "M-Adam step size of Λ [η] (paper: 0.01).")
flags.DEFINE_float("weight_init", D["weight_init"], "Initial λ_u, and the fixed λ of pseudo_label (paper: 1).")
flags.DEFINE_integer("weight_warmup", D["weight_warmup"], "θ steps before the first Λ step.")
flags.DEFINE_enum("weight_optimizer", D["weight_optimizer"], WEIGHT_OPTIMIZERS, "Optimizer of Λ.")
flags.DEFINE_enum("influence", D["influence"], INFLUENCE_METHODS, "Inverse-Hessian method.")
flags.DEFINE_enum("influence_scope", D["influence_scope"], INFLUENCE_SCOPES,
                  "head (the paper's) or last_block (the last hidden layer + head, by HVPs: Sec. 4.3 baselines).")
flags.DEFINE_float("influence_damping", D["influence_damping"],
                   "Damping of the last-layer Hessian, relative to mean(diag H).")
flags.DEFINE_bool("binary_reparam", D["binary_reparam"], "Influence on one logit f with logits (f, -f) (App. D; "
                  "the paper uses it for IMDb, not for Sec. 4.1).")
# Pseudo-Label has one view, so --influence_view has nothing to choose here.
variant_flags.define(("hypergradient_normalization", "weight_parametrization", "influence_target_temperature"))
flags.DEFINE_list("tuned_grid", ["0.1", "0.3", "1", "3"], "λ grid of pseudo_label_tuned.")
flags.DEFINE_list("plot_iterations", ["1", "10", "30"], "Λ iterations drawn in Fig. 1/2 (plus final).")

METHODS = ("supervised", "pseudo_label", "pseudo_label_tuned", "ours", "ours_reversed")


def settings():
    """The recipe's settings from the flags (a variant only when set away from the paper's method)."""
    return {**{name: FLAGS[name].value for name in synthetic_recipe.DEFAULTS}, **variant_flags.set_away_from_paper()}


def base_config(seed, **overrides):
    return synthetic_recipe.train_config(settings(), seed, **overrides)


def train(data, config, callbacks=()):
    """One run; the model's initialisation and the data order depend only on the seed."""
    trainer = synthetic_recipe.make_trainer(settings(), data, config, callbacks)
    return trainer, trainer.run()


class Snapshots:
    """Callback: λ and the model's class-1 probability on a grid at chosen Λ iterations."""

    def __init__(self, iterations, grid):
        self.iterations, self.grid, self.frames = set(iterations), grid, {}

    def __call__(self, trainer, k):
        if k in self.iterations:
            self.frames[k] = self.capture(trainer)

    def capture(self, trainer):
        logits = trainer.logits(self.grid)
        return {"lambda": trainer.weights.to_numpy().copy(),
                "grid_prob": 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1])),
                "unlabeled_pred": trainer.predict(trainer.source.data.unlabeled_x)}


def run_seed(data, seed, snapshots=None):
    """All methods on one seed. Returns ({method: test accuracy}, extras)."""
    accuracy, extras = {}, {}
    _, r = train(data, base_config(seed, weight_init=0.0))
    accuracy["supervised"] = r["test_accuracy"]
    pseudo_label = train(data, base_config(seed))
    accuracy["pseudo_label"] = pseudo_label[1]["test_accuracy"]

    # Fixed λ tuned on the validation set (accuracy, then loss): a baseline as informed as ours.
    best = None
    for value in sorted(float(v) for v in FLAGS.tuned_grid):
        if value == FLAGS.weight_init:
            r = pseudo_label[1]  # the same run: same seed, config and data order
        else:
            r = train(data, base_config(seed, weight_init=value))[1]
        key = (r["validation_accuracy"], -r["validation_loss"])
        if best is None or key > best[0]:
            best = (key, value, r["test_accuracy"])
    accuracy["pseudo_label_tuned"] = best[2]
    extras["tuned_lambda"] = best[1]

    callbacks = [snapshots] if snapshots else []
    trainer, r = train(data, base_config(seed, weighting="per_example"), callbacks)
    accuracy["ours"] = r["test_accuracy"]
    extras["lambda"] = trainer.weights.to_numpy()
    if FLAGS.runs_dir:
        run_dir = os.path.join(FLAGS.runs_dir, f"seed_{seed}")
        os.makedirs(run_dir, exist_ok=True)
        diagnostics.save(os.path.join(run_dir, diagnostics.RECORD_NAME),
                         diagnostics.collect(trainer, data, seed, data.unlabeled_x, kind="points"))
    extras["final_pred"] = trainer.predict(data.unlabeled_x)
    extras["logits"] = trainer.logits(data.unlabeled_x)
    if snapshots:
        snapshots.frames["final"] = snapshots.capture(trainer)
    _, r = train(data, base_config(seed, weighting="per_example", reverse_hypergradient=True))
    accuracy["ours_reversed"] = r["test_accuracy"]
    return accuracy, extras


def check_flags():
    """Refuse flag values that cannot run, before any data or model is built."""
    for name in ["seeds", "num_labeled", "num_validation", "num_unlabeled", "num_test"]:
        if FLAGS[name].value < 1:
            raise ConfigError(f"--{name} must be >= 1, got {FLAGS[name].value}.")
    if FLAGS.num_labeled < 2:
        raise ConfigError("--num_labeled must be >= 2 (one example of each class).")
    if not 0.0 <= FLAGS.pl_threshold <= 1.0:  # also refuses nan
        raise ConfigError(f"--pl_threshold must be in [0, 1], got {FLAGS.pl_threshold}.")
    try:
        grid = [float(v) for v in FLAGS.tuned_grid]
    except ValueError:
        raise ConfigError(f"--tuned_grid must be a list of numbers, got {FLAGS.tuned_grid}.") from None
    if not grid or not all(math.isfinite(v) and v >= 0 for v in grid):
        raise ConfigError(f"--tuned_grid must be finite values >= 0, got {FLAGS.tuned_grid}.")
    try:
        [int(k) for k in FLAGS.plot_iterations]
    except ValueError:
        raise ConfigError(f"--plot_iterations must be integers, got {FLAGS.plot_iterations}.") from None
    base_config(FLAGS.first_seed).validate(FLAGS.num_labeled, FLAGS.num_unlabeled, FLAGS.num_validation)
    writable_dir(os.path.dirname(os.path.abspath(FLAGS.json_out.format(dataset=FLAGS.dataset))), "--json_out")
    for name in ("plot_dir", "runs_dir"):
        if FLAGS[name].value:
            writable_dir(FLAGS[name].value, f"--{name}")


def main(argv):
    del argv
    quiet_absl_info()
    check_flags()
    seeds = list(range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds))
    json_out = FLAGS.json_out.format(dataset=FLAGS.dataset)
    per_method = {m: [] for m in METHODS}
    lambdas, wrong, tuned, seed_of_row = [], [], [], []
    figure_data = None
    start = time.time()
    for i, seed in enumerate(seeds):
        data = synthetic_recipe.load_data(FLAGS.dataset, settings(), seed)
        snapshots = None
        if i == 0 and FLAGS.plot_dir:
            from experiments import synthetic_plots
            snapshots = Snapshots([int(k) for k in FLAGS.plot_iterations], synthetic_plots.grid_points(data))
        accuracy, extras = run_seed(data, seed, snapshots)
        for m in METHODS:
            per_method[m].append(accuracy[m])
        lambdas.append(extras["lambda"])
        wrong.append(extras["final_pred"] != data.unlabeled_true_y)
        seed_of_row.append(np.full(len(extras["lambda"]), seed))
        tuned.append(extras["tuned_lambda"])
        if snapshots:
            figure_data = (data, snapshots, extras)
        print(f"seed {seed}: " + ", ".join(f"{m} {100 * accuracy[m]:.1f}" for m in METHODS)
              + f" (tuned λ={extras['tuned_lambda']:g}) [{time.time() - start:.0f}s]", flush=True)

    methods = {m: method_summary(per_method[m]) for m in METHODS}
    results = {
        "format": FORMAT,
        "dataset": FLAGS.dataset,
        "seeds": seeds,
        "methods": methods,
        "weights": weight_diagnostics(np.concatenate(lambdas), np.concatenate(wrong),
                                      groups=np.concatenate(seed_of_row)),
        "tuned_lambda_per_seed": tuned,
        "flags": {**{f.name: f.value for f in FLAGS.get_flags_for_module(sys.modules[__name__])},
                  **{name: FLAGS[name].value for name in variant_flags.PAPER_METHOD if name in FLAGS}},
    }
    os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
    with open(json_out, "w") as f:
        json.dump(results, f, indent=2)
    print()
    print(f"Synthetic '{FLAGS.dataset}', {len(seeds)} seeds, test accuracy:")
    print(format_table(methods, seeds, "pseudo_label", ["ours", "ours_reversed", "pseudo_label_tuned"]))
    w = results["weights"]
    print(f"\nlearned weights (ours, pooled over seeds): wrong pseudo-labels {100 * w['wrong_pseudo_label_rate_all']:.1f}% "
          f"overall vs {100 * w['wrong_pseudo_label_rate_lowest_5pct']:.1f}% among the lowest 5% of λ (ties by "
          f"expected share); AUROC of -λ for wrong pseudo-labels {w['auroc_low_weight_vs_wrong']:.3f} pooled, "
          f"{w['auroc_low_weight_vs_wrong_per_seed_mean']:.3f} ± {w['auroc_low_weight_vs_wrong_per_seed_std']:.3f} "
          f"per seed")
    print(f"\nresults: {json_out}")
    if figure_data:
        from experiments import synthetic_plots
        paths = synthetic_plots.draw_all(*figure_data, FLAGS.plot_dir)
        print("pictures: " + ", ".join(paths))
    print(f"total time {time.time() - start:.0f}s")


def run():
    run_main(main)


if __name__ == "__main__":
    run()
