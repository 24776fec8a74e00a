r"""Base algorithm vs learned per-example weights, paired over seeds (Sec. 4.2 at CPU scale).

For every seed, base (--weighting=none), ours (per_example) and ours_reversed (the hypergradient's
sign flipped, a control) share the split, the initialisation, the data order and the augmentations.

  python -m experiments.compare --algorithm=fixmatch --dataset=digits --seeds=5 --first_seed=0 \
      --json_out=out/compare_fixmatch_digits.json
"""
import json
import os
import sys
import time

import numpy as np
from absl import app, flags

from experiments import image_ssl
from influence_ssl.data import DatasetNotFoundError
from influence_ssl.metrics import softmax, weight_diagnostics
from influence_ssl.report import format_table, method_summary
from influence_ssl.trainer import ConfigError, TrainingDiverged

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 5, "Number of seeds.")
flags.DEFINE_integer("first_seed", 0, "First seed.")
flags.DEFINE_string("json_out", "out/compare_{algorithm}_{dataset}.json", "Where the results JSON goes.")
flags.DEFINE_string("metric", "test_accuracy",
                    "Per-run number compared: test_accuracy (final) or median_last20_test_accuracy.")

METHODS = {"base": ("none", False), "ours": ("per_example", False), "ours_reversed": ("per_example", True)}


def confidence_threshold(settings):
    """The algorithm's mask threshold: below it an example's ℓ_U, hence its hypergradient, is 0."""
    return settings["uda_confidence_thresh"] if FLAGS.algorithm == "uda" else settings["confidence"]


def run_seed(settings, seed):
    data, _, _ = image_ssl.load_data(settings, seed)
    accuracy, lam, wrong, confident = {}, None, None, None
    for method, (weighting, reverse) in METHODS.items():
        trainer = image_ssl.make_trainer(settings, data, seed, weighting, reverse=reverse, verbose=False)
        results = trainer.run()
        accuracy[method] = results[FLAGS.metric]
        if method == "ours":
            lam = trainer.weights.to_numpy()[data.unlabeled_ids]
            probs = softmax(trainer.logits(np.asarray(trainer.source.scale(data.unlabeled_x))))
            wrong = probs.argmax(1) != data.unlabeled_true_y
            confident = probs.max(1) >= confidence_threshold(settings)
    return accuracy, lam, wrong, confident


def main(argv):
    del argv
    settings = image_ssl.resolved()
    seeds = list(range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds))
    per_method = {m: [] for m in METHODS}
    lambdas, wrongs, confidents = [], [], []
    start = time.time()
    for seed in seeds:
        accuracy, lam, wrong, confident = run_seed(settings, seed)
        for m in METHODS:
            per_method[m].append(accuracy[m])
        lambdas.append(lam)
        wrongs.append(wrong)
        confidents.append(confident)
        print(f"seed {seed}: " + ", ".join(f"{m} {100 * accuracy[m]:.1f}" for m in METHODS)
              + f" [{time.time() - start:.0f}s]", flush=True)
    methods = {m: method_summary(per_method[m]) for m in METHODS}
    lam, wrong, confident = map(np.concatenate, (lambdas, wrongs, confidents))
    results = {"dataset": FLAGS.dataset, "algorithm": FLAGS.algorithm, "seeds": seeds, "metric": FLAGS.metric,
               "methods": methods,
               "weights": weight_diagnostics(lam, wrong),
               # Examples below the confidence mask never get a hypergradient, so their λ keeps its
               # initial value whatever their pseudo-label: the diagnostics among the others.
               "weights_confident": {"fraction": float(confident.mean()),
                                     **weight_diagnostics(lam[confident], wrong[confident])},
               "settings": settings}
    json_out = FLAGS.json_out.format(algorithm=FLAGS.algorithm, dataset=FLAGS.dataset)
    os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
    with open(json_out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\n{FLAGS.algorithm} on {FLAGS.dataset}, {len(seeds)} seeds, {FLAGS.metric}:")
    print(format_table(methods, seeds, "base", ["ours", "ours_reversed"]))
    for key, label in [("weights", "all unlabeled"), ("weights_confident", "above the confidence mask")]:
        w = results[key]
        print(f"learned weights (ours, pooled, {label}): wrong pseudo-labels "
              f"{100 * w['wrong_pseudo_label_rate_all']:.1f}% overall vs "
              f"{100 * w['wrong_pseudo_label_rate_lowest_5pct']:.1f}% among the lowest 5% of λ; "
              f"AUROC of -λ {w['auroc_low_weight_vs_wrong']:.3f}")
    print(f"results: {json_out}\ntotal time {time.time() - start:.0f}s")


def run():
    try:
        app.run(main)
    except (ConfigError, DatasetNotFoundError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
