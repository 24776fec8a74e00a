r"""Train one run (UDA, FixMatch or Pseudo-Label, with or without learned per-example weights).

CPU-scale default (scikit-learn digits, small CNN, about a minute on 2 cores):
  python -m experiments.train --algorithm=fixmatch --train_dir=runs/digits_fixmatch
A Table 1 cell on a GPU (TFDS data prepared in --data_dir):
  python -m experiments.train --flagfile=experiments/configs/table1/fixmatch_cta_cifar10_4000.cfg \
      --data_dir=~/tensorflow_datasets --train_dir=runs/fixmatch_cifar10_4000_seed1 --seed=1

Writes TRAIN_DIR/results.json (final and median-of-last-20 test accuracy, λ statistics, the run's whole
configuration and provenance), checkpoints (resumed automatically), TensorBoard events, the split, the
learned weights and unlabeled_diagnostics.npz (read by `python -m experiments.inspect_weights TRAIN_DIR`).
"""
import json
import os

from absl import flags

from experiments import diagnostics, quiet_absl_info
from experiments.checks import run_main, writable_dir
from influence_ssl.data import save_split
from influence_ssl.runs import build, distribute, execute, text
from influence_ssl.runs import flags as run_flags
from influence_ssl.runs.provenance import provenance
from influence_ssl.trainer import CheckpointError, ConfigError, TrainingDiverged
from influence_ssl.trainer.distribution import worker_role

FLAGS = flags.FLAGS
run_flags.define()
distribute.define_flags()
flags.DEFINE_string("train_dir", "runs/train", "Run directory (checkpoints, TensorBoard, results.json).")
flags.DEFINE_string("export_unlabeled_text", None, "IMDb: write the unlabeled reviews, cleaned, one per line in the "
                    "unlabeled order (the input of a back-translation; --aug=bt-* reads one only in UDA's "
                    "train_id_list.txt order), to this file and stop.")


def main(argv):
    del argv
    quiet_absl_info()
    config = run_flags.from_flags()
    build.check_inputs(config)
    writable_dir(FLAGS.train_dir)
    if FLAGS.export_unlabeled_text:
        if config.family != "text":
            raise ConfigError("--export_unlabeled_text applies to --dataset=imdb only.")
        return text.export_unlabeled_text(text.read_corpus(config), FLAGS.export_unlabeled_text)
    strategy = distribute.make_strategy()  # before TensorFlow runs anything (data loading may)
    print(f"{strategy.num_replicas_in_sync} replica(s): {type(strategy).__name__}", flush=True)
    data, split, metadata = build.load_data(config)
    print(data.summary(), flush=True)
    is_chief = worker_role(strategy)[0]  # only the chief writes the run directory
    if split is not None and is_chief:  # an out-of-distribution or 2-D run is defined by its config and seed
        save_split_of(config, split, metadata)
    trainer = build.make_trainer(config, data, train_dir=FLAGS.train_dir, strategy=strategy)
    results = trainer.run()
    # Every worker takes part in every collective up to the last write (reading a mirrored variable is one).
    record = None
    if config.family != "text":  # a text run's diagnostics would hold no pictures
        kind = "points" if config.family == "2d" else "image"
        record = diagnostics.collect(trainer, data, config.seed, execute.clean_unlabeled(trainer, data), kind=kind,
                                     ood=data.unlabeled_ood)
    if not is_chief:
        print(f"worker done: {json.dumps({'test_accuracy': results['test_accuracy'], 'step': results['step']})}")
        return
    if record is not None:
        diagnostics.save(os.path.join(FLAGS.train_dir, diagnostics.RECORD_NAME), record)
    data_record = text.augmentation_summary(config, metadata) if config.family == "text" else None
    describe_run(FLAGS.train_dir, config, data_record)
    summary = {k: results[k] for k in ("test_accuracy", "median_last20_test_accuracy", "step") if k in results}
    if "test_selected" in results:
        summary["test_selected"] = results["test_selected"]
    if data_record:
        summary["augmentation"] = data_record
    print(json.dumps({**summary, "lambda": results["lambda"]}, indent=2))
    print(f"results: {os.path.join(FLAGS.train_dir, 'results.json')}")


def save_split_of(config, split, metadata):
    path = os.path.join(FLAGS.train_dir, "split.json")
    if config.family == "text":
        with open(path, "w") as f:
            json.dump({"labeled": split.labeled.tolist(), "validation": split.validation.tolist(),
                       "labeled_source": split.labeled_source, "metadata": metadata}, f, indent=1)
    else:
        save_split(path, split, dataset=config.data.dataset)


def describe_run(train_dir, config, augmentation=None):
    """Add the run's whole configuration and its provenance to results.json (experiments.report places the
    run in the paper's tables by them), and a text run's `augmentation` (text.augmentation_summary)."""
    path = os.path.join(train_dir, "results.json")
    with open(path) as f:
        results = json.load(f)
    if augmentation:
        results["augmentation"] = augmentation
    results["run_config"] = json.loads(config.dumps())
    results["provenance"] = provenance(config=results["run_config"])
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def run():
    run_main(main, CheckpointError, TrainingDiverged, *text.ERRORS)


if __name__ == "__main__":
    run()
