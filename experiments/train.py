r"""Train one UDA / FixMatch / Pseudo-Label run, with or without learned per-example weights.

CPU-scale default (sklearn digits, small CNN, a few minutes on 2 cores):
  python -m experiments.train --algorithm=fixmatch --train_dir=runs/digits_fixmatch
A Table 1 cell on a GPU (TFDS data prepared in --data_dir):
  python -m experiments.train --flagfile=experiments/configs/table1/fixmatch_cta_cifar10_4000.cfg \
      --data_dir=~/tensorflow_datasets --train_dir=runs/fixmatch_cifar10_4000_seed1 --seed=1

Writes TRAIN_DIR/results.json (final and median-of-last-20 test accuracy, λ statistics),
checkpoints (resumed automatically), TensorBoard events, the split, the learned weights and
unlabeled_diagnostics.npz (read by `python -m experiments.inspect_weights TRAIN_DIR`).
"""
import json
import os

import numpy as np
from absl import flags

from experiments import diagnostics, image_ssl, quiet_absl_info, text_ssl
from experiments.checks import run_main, writable_dir
from influence_ssl.data import DatasetNotFoundError, save_split
from influence_ssl.trainer import CheckpointError, TrainingDiverged
from influence_ssl.trainer.distribution import worker_role

FLAGS = flags.FLAGS
flags.DEFINE_integer("seed", 1, "Seed of the split, the initialisation, the data order and augmentation.")
flags.DEFINE_string("train_dir", "runs/train", "Run directory (checkpoints, TensorBoard, results.json).")
flags.DEFINE_bool("reverse_hypergradient", False, "Control: flip the hypergradient's sign.")


def main(argv):
    del argv
    quiet_absl_info()
    if FLAGS.dataset == "imdb":
        return train_imdb()
    settings = image_ssl.resolved()
    writable_dir(FLAGS.train_dir)
    strategy = image_ssl.make_strategy()  # before TensorFlow runs anything (data loading may)
    print(f"{strategy.num_replicas_in_sync} replica(s): {type(strategy).__name__}", flush=True)
    data, split, metadata = image_ssl.load_data(settings, FLAGS.seed)
    print(data.summary(), flush=True)
    is_chief = worker_role(strategy)[0]  # only the chief writes the run directory
    if split is not None and is_chief:  # an out-of-distribution run is defined by its flags and seed instead
        save_split(os.path.join(FLAGS.train_dir, "split.json"), split, dataset=FLAGS.dataset)
    trainer = image_ssl.make_trainer(settings, data, FLAGS.seed, FLAGS.weighting, train_dir=FLAGS.train_dir,
                                     reverse=FLAGS.reverse_hypergradient, strategy=strategy)
    results = trainer.run()
    if not is_chief:
        print(f"worker done: {json.dumps({'test_accuracy': results['test_accuracy'], 'step': results['step']})}")
        return
    describe_run(FLAGS.train_dir, settings, image_ssl.RUN_FLAGS)
    clean = trainer.source.scale(data.unlabeled_x)  # the un-augmented view, for the weight diagnostics
    diagnostics.save(os.path.join(FLAGS.train_dir, diagnostics.RECORD_NAME),
                     diagnostics.collect(trainer, data, FLAGS.seed, np.asarray(clean), kind="image",
                                         ood=data.unlabeled_ood))
    summary = {k: results[k] for k in ("test_accuracy", "median_last20_test_accuracy", "step") if k in results}
    print(json.dumps({**summary, "lambda": results["lambda"]}, indent=2))
    print(f"results: {os.path.join(FLAGS.train_dir, 'results.json')}")


def describe_run(train_dir, settings, run_flags):
    """Add what the run was (dataset, algorithm, sizes, the flags that change results) to results.json, so
    that experiments.report can place it in the paper's tables."""
    path = os.path.join(train_dir, "results.json")
    with open(path) as f:
        results = json.load(f)
    results["run"] = {"dataset": FLAGS.dataset, "algorithm": FLAGS.algorithm, "seed": FLAGS.seed,
                      "weighting": FLAGS.weighting, "reverse_hypergradient": FLAGS.reverse_hypergradient,
                      "settings": settings, "flags": image_ssl.run_flag_values(run_flags)}
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def train_imdb():
    """Table 2's text run (experiments.text_ssl); no weight diagnostics record (it holds images)."""
    out = text_ssl.train(FLAGS.seed, FLAGS.train_dir, FLAGS.weighting, FLAGS.reverse_hypergradient)
    if out is None:  # --export_unlabeled_text
        return
    trainer, results = out
    if trainer.is_chief:
        describe_run(FLAGS.train_dir, text_ssl.resolved(), text_ssl.RUN_FLAGS)
    summary = {k: results[k] for k in ("test_accuracy", "median_last20_test_accuracy", "step") if k in results}
    print(json.dumps({**summary, "test_selected": results.get("test_selected"), "lambda": results["lambda"]},
                     indent=2))
    if trainer.is_chief:
        print(f"results: {os.path.join(FLAGS.train_dir, 'results.json')}")


def run():
    run_main(main, DatasetNotFoundError, CheckpointError, TrainingDiverged, *text_ssl.ERRORS)


if __name__ == "__main__":
    run()
