"""experiments.inspect_weights on tiny synthetic and image runs (in-process), and metrics.weights_report by hand."""
import json

import numpy as np
import pytest
from conftest import refusal, run_main
from scipy.stats import spearmanr

from influence_ssl.metrics import spearman, weights_report

KEYS = {"auroc_low_weight_vs_wrong", "wrong_rate_all", "wrong_rate_lowest_5pct", "lambda_histogram",
        "spearman_lambda_vs_confidence", "spearman_lambda_vs_margin", "per_class", "by_hypergradient_count"}


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 200), rng.normal(size=200)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_weights_report_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    wrong = np.array([False, True, False, True])
    report = weights_report([1.0, 0.0, 2.0, 0.5], wrong, probs, counts=[3, 0, 1, 5], ood=[False, False, True, True],
                            bins=4)
    assert report["per_class"] == {0: {"n": 2, "lambda_mean": 0.5, "wrong_rate": 0.5},
                                   1: {"n": 2, "lambda_mean": 1.25, "wrong_rate": 0.5}}
    assert report["lambda_histogram"]["counts"] == [1, 1, 1, 1] and report["lambda_histogram"]["edges"][-1] == 2.0
    assert report["auroc_low_weight_vs_wrong"] == 1.0  # both wrong ones have the two lowest λ
    # -λ ranks the OOD pair (λ 2.0, 0.5) above the others in 1 of 4 pairs.
    assert report["auroc_low_weight_vs_ood"] == 0.25
    never = report["by_hypergradient_count"]["never"]  # one example (wrong): AUROC undefined
    assert never["fraction"] == 0.25 and never["wrong_rate"] == 1.0 and np.isnan(never["auroc_low_weight_vs_wrong"])
    assert report["wrong_rate_lowest_5pct"] == 1.0  # k = 1: the λ = 0 example, wrong


def test_inspect_weights_on_synthetic_and_image_runs(tmp_path):
    tiny = ["--seeds=2", "--steps=40", "--weight_warmup=10", "--inner_steps=5", "--unlabeled_rampup=10",
            "--num_unlabeled=100", "--num_test=200", "--tuned_lambda_grid=1", "--plot_dir=",
            f"--run_cache={tmp_path / 'cache'}"]
    run_main("experiments.synthetic", [*tiny, f"--runs_dir={tmp_path / 'syn'}", f"--json_out={tmp_path / 's.json'}"])
    seeds = [str(tmp_path / "syn" / f"seed_{s}") for s in (0, 1)]
    stdout = run_main("experiments.inspect_weights", [*seeds, f"--out_dir={tmp_path / 'syn_report'}"])
    assert "2 run(s), 200 unlabeled examples" in stdout
    report = json.loads((tmp_path / "syn_report" / "weights_report.json").read_text())
    assert KEYS <= set(report) and len(report["auroc_low_weight_vs_wrong_per_seed"]) == 2
    synthetic = json.loads((tmp_path / "s.json").read_text())["weights"]  # the same numbers, another path
    assert report["wrong_rate_lowest_5pct"] == pytest.approx(synthetic["wrong_pseudo_label_rate_lowest_5pct"])
    assert report["auroc_low_weight_vs_wrong"] == pytest.approx(synthetic["auroc_low_weight_vs_wrong"])
    for name in ["lambda_histogram", "lambda_vs_confidence", "lambda_vs_margin", "lambda_per_class", "lambda_points"]:
        assert (tmp_path / "syn_report" / f"{name}.png").stat().st_size > 5_000

    train_dir = tmp_path / "digits"
    run_main("experiments.train", ["--steps=40", "--weight_warmup=20", "--inner_steps=10", "--log_every=40",
                                   "--eval_every=40", "--checkpoint_every=40", f"--train_dir={train_dir}"])
    run_main("experiments.inspect_weights", [str(train_dir)])
    report = json.loads((train_dir / "weights_report.json").read_text())
    assert KEYS <= set(report) and report["num_examples"] == 1097
    assert (train_dir / "lambda_extremes.png").stat().st_size > 10_000


def test_inspect_weights_without_a_record_is_one_line(tmp_path):
    assert "holds no unlabeled_diagnostics.npz" in refusal("experiments.inspect_weights", [str(tmp_path)])
    assert "Give at least one run directory" in refusal("experiments.inspect_weights", [])
