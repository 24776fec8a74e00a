"""What a run reports: results.json (final and median-of-last-20 accuracies, λ statistics, history, config),
the learned weights and their hypergradient counts."""
import json
import os

import numpy as np

# results.json's format; experiments.report refuses files of another (or no) format.
RESULTS_FORMAT = "influence_ssl.run/1"


def final_results(trainer):
    """The results dict of a trainer that has finished its steps (evaluated once more if its history does
    not end at the current step)."""
    step = int(trainer.step.numpy())
    history = trainer.history
    final = history[-1] if history and history[-1]["step"] == step else None
    if final is None or trainer.validation_loss is None:  # e.g. resumed at the last step
        final = {"step": step, **trainer.evaluate()}
    results = {f"{name}_accuracy": acc for name, acc in final.items() if name != "step"}
    tests = [h["test"] for h in history if "test" in h]
    if tests:
        # FixMatch's protocol: the median of the last 20 evaluations.
        results["median_last20_test_accuracy"] = float(np.median(tests[-20:]))
        # UDA reports the best test accuracy over training: a choice made on the test set, kept
        # apart so that it is never mistaken for (or compared as) a model-selection metric.
        results["test_selected"] = {"best_test_accuracy": float(np.max(tests)), "evaluations": len(tests),
                                    "note": "maximum over test evaluations (UDA's reporting); test-selected"}
    # What a Λ step size is chosen on (never the test set).
    results.update({"format": RESULTS_FORMAT, "step": final["step"], "validation_loss": trainer.validation_loss,
                    "lambda": trainer.weight_stats(), "history": history, "config": trainer.config.to_dict()})
    return results


def save_results(train_dir, results, weights):
    """results.json, weights.npy (λ by unlabeled id) and hypergradient_counts.npy in train_dir."""
    with open(os.path.join(train_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    weights.export(os.path.join(train_dir, "weights.npy"))
    np.save(os.path.join(train_dir, "hypergradient_counts.npy"), weights.counts_numpy())
