"""Train one RunConfig and keep what a study needs of it: a small record and per-example arrays."""
import time

import numpy as np
import tensorflow as tf

from influence_ssl.metrics import softmax
from influence_ssl.runs import build
from influence_ssl.trainer import TrainingDiverged


def clean_unlabeled(trainer, data):
    """The model's input for every unlabeled example, un-augmented (numpy [N, ...])."""
    scale = getattr(trainer.source, "scale", None)
    return np.asarray(scale(data.unlabeled_x) if scale else data.unlabeled_x)


def weight_arrays(trainer, data):
    """Per unlabeled example (rows of data.unlabeled_ids, those with a known label or out of distribution):
    final λ, the number of Λ steps with a non-zero hypergradient, whether the final model's pseudo-label is
    wrong, and whether it is out of distribution; the final model's confidence max p, and the weight its
    algorithm's mask or weighting rule gives the example now ("rule_weight", the state as the run left it).
    IMDb's unsup reviews have no label (-1) and are left out; OOD rows (-1 too) stay, and count as wrong
    pseudo-labels."""
    ids = np.asarray(data.unlabeled_ids)
    true_y = np.asarray(data.unlabeled_true_y)
    ood = np.zeros(len(ids), bool) if data.unlabeled_ood is None else np.asarray(data.unlabeled_ood, bool)
    known = (true_y >= 0) | ood
    logits = trainer.logits(clean_unlabeled(trainer, data))
    probs = softmax(logits)
    rule_weight = trainer.algorithm.example_weights(tf.constant(logits, tf.float32), tf.constant(ids))
    table = trainer.weights.to_numpy()
    per_example = trainer.weights.num_examples > 1
    lam = table[ids] if per_example else np.full(len(ids), table[0])
    counts = trainer.weights.counts_numpy()[ids] if per_example else np.zeros(len(ids), np.int64)
    return {"lambda": lam[known], "counts": counts[known], "wrong": (probs.argmax(1) != true_y)[known],
            "ood": ood[known], "confidence": probs.max(1)[known],
            "rule_weight": np.full(len(ids), np.nan)[known] if rule_weight is None else rule_weight.numpy()[known]}


def record_of(results, seconds):
    """What a study keeps of one run's results.json."""
    history = [(h["step"], 1.0 - h["validation"]) for h in results["history"] if "validation" in h]
    record = {"test_accuracy": results["test_accuracy"], "validation_accuracy": results["validation_accuracy"],
              "validation_loss": results["validation_loss"],
              "curve_steps": [s for s, _ in history], "curve_validation_error": [e for _, e in history],
              "lambda_mean": results["lambda"]["lambda_mean"],
              "lambda_zero_fraction": results["lambda"]["lambda_zero_fraction"],
              "lambda_step_abs_mean": results["lambda"]["lambda_step_abs_mean_over_run"], "seconds": seconds}
    if "median_last20_test_accuracy" in results:
        record["median_last20_test_accuracy"] = results["median_last20_test_accuracy"]
    return record


def diverged_record(message):
    """The record of a run that stopped on a NaN/Inf: no accuracy, and a validation loss no choice picks."""
    nan = float("nan")
    return {"diverged": message, "test_accuracy": nan, "validation_accuracy": nan, "validation_loss": float("inf"),
            "curve_steps": [], "curve_validation_error": [], "lambda_mean": nan, "lambda_zero_fraction": nan,
            "lambda_step_abs_mean": nan, "seconds": nan}


def run(config, data, callbacks=()):
    """Train `config` on `data` (its seed's split): (record, per-example arrays or None if it diverged).
    A divergence is a result too (its record says so), so that a restarted study does not train it again."""
    start = time.time()
    trainer = build.make_trainer(config, data, verbose=False, callbacks=callbacks)
    try:
        results = trainer.run()
    except TrainingDiverged as e:
        return diverged_record(str(e)), None
    return record_of(results, time.time() - start), weight_arrays(trainer, data)
