"""experiments.synthetic end to end on a tiny budget: the JSON's keys, the pictures, bad flags."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--seeds=2", "--steps=40", "--weight_warmup=10", "--inner_steps=5", "--unlabeled_rampup=10",
        "--num_unlabeled=100", "--unlabeled_batch=100", "--num_test=200", "--tuned_grid=0.3,1",
        "--plot_iterations=1,3"]


def run(args, timeout=300):
    return subprocess.run([sys.executable, "-m", "experiments.synthetic", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_json_has_the_documented_keys_and_pictures_are_written(tmp_path):
    out = tmp_path / "r.json"
    result = run([*TINY, "--dataset=circles", f"--json_out={out}", f"--plot_dir={tmp_path / 'plots'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["dataset"] == "circles" and data["seeds"] == [0, 1]
    assert set(data["methods"]) == {"supervised", "pseudo_label", "pseudo_label_tuned", "ours", "ours_reversed"}
    for summary in data["methods"].values():
        assert len(summary["test_accuracy"]) == 2
        assert summary["mean"] == pytest.approx(sum(summary["test_accuracy"]) / 2)
        assert summary["std"] >= 0
    assert set(data["weights"]) == {"wrong_pseudo_label_rate_all", "wrong_pseudo_label_rate_lowest_5pct",
                                    "auroc_low_weight_vs_wrong", "auroc_low_weight_vs_wrong_per_seed",
                                    "auroc_low_weight_vs_wrong_per_seed_mean", "auroc_low_weight_vs_wrong_per_seed_std"}
    assert len(data["weights"]["auroc_low_weight_vs_wrong_per_seed"]) == 2
    assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr  # TF's C++ start-up logs are hidden
    assert "paired differences" in result.stdout and "ours - pseudo_label" in result.stdout
    for name in ["circles_iterations.png", "circles_weight_vs_margin.png"]:
        assert (tmp_path / "plots" / name).stat().st_size > 10_000


@pytest.mark.parametrize("flag, message", [
    ("--unlabeled_batch=5000", "larger than the 1000 unlabeled"),
    ("--weight_lr=-1", "--weight_lr must be >= 0"),
    ("--num_labeled=0", "num_labeled must be >= 1"),
    ("--weight_lr=nan", "--weight_lr must be a finite number"),
    ("--lr=inf", "--lr must be a finite number"),
    ("--pl_threshold=1.5", "--pl_threshold must be in [0, 1]"),
    ("--tuned_grid=0.3,x", "--tuned_grid must be a list of numbers"),
    ("--runs_dir=/proc/version/runs", "Cannot write to --runs_dir"),
])
def test_bad_flags_exit_nonzero_with_a_clear_message(tmp_path, flag, message):
    result = run(["--seeds=1", flag, f"--json_out={tmp_path / 'r.json'}", "--plot_dir="])
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_dataset_is_an_absl_usage_error(tmp_path):
    result = run(["--dataset=spirals", f"--json_out={tmp_path / 'r.json'}"])
    assert result.returncode != 0 and "spirals" in result.stderr and "Traceback" not in result.stderr
