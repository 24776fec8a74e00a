"""experiments.synthetic: end to end on a tiny budget (the JSON, the pictures, the run cache, hidden TF logs), and
bad flags refused in one line (in-process, and once through a real process)."""
import json
import re

import pytest
from absl import flags
from conftest import assert_one_line_error, parsed, refusal, run_module

MODULE = "experiments.synthetic"
TINY = ["--seeds=2", "--steps=40", "--weight_warmup=10", "--inner_steps=5", "--unlabeled_rampup=10",
        "--num_unlabeled=100", "--num_test=200", "--tuned_lambda_grid=0.3,1", "--plot_iterations=1,3"]
METHODS = {"supervised", "pseudo_label", "pseudo_label_tuned", "ours", "ours_reversed"}


def test_json_has_the_documented_keys_and_pictures_are_written(tmp_path):
    out = tmp_path / "r.json"
    result = run_module(MODULE, [*TINY, "--dataset=circles", f"--json_out={out}", f"--plot_dir={tmp_path / 'plots'}",
                                 f"--run_cache={tmp_path / 'cache'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert (data["format"], data["study"], data["seeds"]) == ("influence_ssl.study/1", "synthetic", [0, 1])
    assert data["config"]["data"]["dataset"] == "circles" and data["config"]["train"]["steps"] == 40
    assert data["config"]["train"]["unlabeled_batch"] == 100  # full batches
    assert set(data["methods"]) == METHODS
    for summary in data["methods"].values():
        assert len(summary["values"]) == 2 and len(summary["chosen"]) == 2
        assert summary["mean"] == pytest.approx(sum(summary["values"]) / 2)
        assert summary["std"] >= 0
    assert set(data["methods"]["pseudo_label_tuned"]["lambda_per_seed"]) <= {0.3, 1.0}
    assert set(data["weights"]) == {"wrong_pseudo_label_rate_all", "wrong_pseudo_label_rate_lowest_5pct",
                                    "auroc_low_weight_vs_wrong", "auroc_low_weight_vs_wrong_per_seed",
                                    "auroc_low_weight_vs_wrong_per_seed_mean", "auroc_low_weight_vs_wrong_per_seed_std"}
    assert len(data["weights"]["auroc_low_weight_vs_wrong_per_seed"]) == 2
    assert data["paired"]["ours - pseudo_label"]["n"] == 2
    assert "experiments.synthetic" in data["provenance"]["command"] and data["provenance"]["config"] == data["config"]
    assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr  # TF's C++ start-up logs are hidden
    assert "paired differences" in result.stdout and "ours - pseudo_label" in result.stdout
    # Five runs per seed: pseudo_label_tuned at λ = 1 is the pseudo_label run, trained once.
    assert re.findall(r"seed \d: 5 methods, (\d+) run\(s\) trained", result.stdout) == ["5", "5"]
    assert len(list((tmp_path / "cache").glob("*.json"))) == 10
    for name in ["circles_iterations.png", "circles_weight_vs_margin.png"]:
        assert (tmp_path / "plots" / name).stat().st_size > 10_000


@pytest.mark.parametrize("args, message", [
    (["--batch=100"], "--batch does not apply to --dataset=moons: remove it."),  # full batches, no μ·B
    (["--uratio=2"], "--uratio does not apply to --dataset=moons: remove it."),
    (["--weight_lr=-1"], "--weight_lr must be >= 0"),
    (["--num_labeled=0"], "--num_labeled must be >= 1"),
    (["--num_labeled=1"], "--num_labeled must be >= 2 (one example of each class)."),
    (["--num_unlabeled=0"], "--num_unlabeled must be >= 1"),
    (["--weight_lr=nan"], "--weight_lr must be a finite number"),
    (["--lr=inf"], "--lr must be a finite number"),
    (["--confidence=1.5"], "--confidence must be in [0, 1]"),
    (["--algorithm=fixmatch"], "--dataset=moons runs Pseudo-Label (Sec. 4.1), not --algorithm=fixmatch."),
    (["--dataset=digits"], "--dataset=digits is not a 2-D problem of Sec. 4.1"),
    (["--tuned_lambda_grid=0.3,x"], "--tuned_lambda_grid must be a list of numbers"),
    (["--tuned_lambda_grid="], "--tuned_lambda_grid must name at least one λ here"),
    (["--plot_iterations=1,x"], "--plot_iterations must be a list of numbers"),
    (["--seeds=0"], "--seeds must be >= 1"),
    (["--runs_dir=/proc/version/runs"], "Cannot write to --runs_dir"),
    (["--json_out=/proc/version/r.json"], "Cannot write to --json_out"),
])
def test_bad_flags_are_refused_in_one_line(tmp_path, args, message):
    common = ["--seeds=1", f"--json_out={tmp_path / 'r.json'}", "--plot_dir=", f"--run_cache={tmp_path / 'cache'}"]
    assert message in refusal(MODULE, common + args)
    assert not (tmp_path / "cache").exists()  # refused before any run


def test_a_bad_flag_ends_the_process_with_one_line_and_exit_code_2(tmp_path):
    result = run_module(MODULE, ["--seeds=1", "--confidence=1.5", f"--json_out={tmp_path / 'r.json'}", "--plot_dir=",
                                 f"--run_cache={tmp_path / 'cache'}"])
    assert_one_line_error(result, "--confidence must be in [0, 1]")


def test_unknown_dataset_is_an_absl_usage_error():
    with pytest.raises(flags.IllegalFlagValueError, match="spirals"):
        with parsed(MODULE, ["--dataset=spirals"]):
            pass
