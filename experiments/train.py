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

from experiments import diagnostics, image_ssl, quiet_absl_info
from experiments.checks import run_main, writable_dir
from influence_ssl.data import DatasetNotFoundError, save_split
from influence_ssl.trainer import CheckpointError, TrainingDiverged

FLAGS = flags.FLAGS
flags.DEFINE_integer("seed", 1, "Seed of the split, the initialisation, the data order and augmentation.")
flags.DEFINE_string("train_dir", "runs/train", "Run directory (checkpoints, TensorBoard, results.json).")
flags.DEFINE_bool("reverse_hypergradient", False, "Control: flip the hypergradient's sign.")


def main(argv):
    del argv
    quiet_absl_info()
    settings = image_ssl.resolved()
    writable_dir(FLAGS.train_dir)
    data, split, metadata = image_ssl.load_data(settings, FLAGS.seed)
    print(data.summary(), flush=True)
    if split is not None:  # an out-of-distribution run is defined by its flags and seed instead
        save_split(os.path.join(FLAGS.train_dir, "split.json"), split, dataset=FLAGS.dataset)
    strategy = image_ssl.make_strategy()
    print(f"{strategy.num_replicas_in_sync} replica(s): {type(strategy).__name__}", flush=True)
    trainer = image_ssl.make_trainer(settings, data, FLAGS.seed, FLAGS.weighting, train_dir=FLAGS.train_dir,
                                     reverse=FLAGS.reverse_hypergradient, strategy=strategy)
    results = trainer.run()
    clean = trainer.source.scale(data.unlabeled_x)  # the un-augmented view, for the weight diagnostics
    diagnostics.save(os.path.join(FLAGS.train_dir, diagnostics.RECORD_NAME),
                     diagnostics.collect(trainer, data, FLAGS.seed, np.asarray(clean), kind="image",
                                         ood=data.unlabeled_ood))
    summary = {k: results[k] for k in ("test_accuracy", "median_last20_test_accuracy", "step") if k in results}
    print(json.dumps({**summary, "lambda": results["lambda"]}, indent=2))
    print(f"results: {os.path.join(FLAGS.train_dir, 'results.json')}")


def run():
    run_main(main, DatasetNotFoundError, CheckpointError, TrainingDiverged)


if __name__ == "__main__":
    run()
