"""experiments.benchmarks.sec44 end to end on a tiny configuration: the JSON's keys, positive times, bad flags."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from influence_ssl.trainer import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--arch=small_cnn", "--batch=2", "--repeats=1", "--table_sizes=1000,10000", "--update_repeats=2",
        "--inner_steps=2", "--lambda_batches=2,4,4", "--overhead_batches=2,4,4"]


def run(args, timeout=300):
    return subprocess.run([sys.executable, "-m", "experiments.benchmarks.sec44", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def positive(value):
    return isinstance(value, float) and value > 0


def test_tiny_run_writes_every_block_with_positive_times(tmp_path):
    """Every block, without the child processes of the CPU memory figures (each imports TensorFlow and traces
    again: a minute here); one child is test_a_child_process_reports_the_peak_memory_of_one_method's."""
    out = tmp_path / "sec44.json"
    result = run([*TINY, "--cpu_memory=none", f"--json_out={out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert set(data) == {"format", "per_example_gradients", "lambda_step", "lambda_update", "alg1_overhead",
                         "memory", "settings", "provenance"}
    assert data["format"] == "influence_ssl.sec44/1"
    assert "experiments.benchmarks.sec44" in data["provenance"]["command"] and data["provenance"]["versions"]

    pergrad = data["per_example_gradients"]
    for method in ("fast", "vmap", "loop", "batched_backward"):
        assert positive(pergrad[method]), method
    for method in ("fast", "vmap", "loop"):
        assert pergrad[f"{method}_vs_batched_backward"] == pytest.approx(pergrad[method] / pergrad["batched_backward"])
    assert pergrad["loop_vs_fast"] == pytest.approx(pergrad["loop"] / pergrad["fast"])
    assert pergrad["setup"]["batch"] == 2

    scope = "last_block" if "influence_scope" in {f.name for f in dataclasses.fields(TrainConfig)} else "head"
    lam = data["lambda_step"]
    entries = ["exact", "identity", f"neumann_{scope}", f"cg_{scope}"]
    assert list(lam["setup"]["entries"]) == entries
    for name in entries:
        assert positive(lam[name]), name
    assert lam[f"neumann_{scope}_vs_exact"] == pytest.approx(lam[f"neumann_{scope}"] / lam["exact"])
    assert lam["setup"]["batches"] == {"labeled": 2, "unlabeled": 4, "validation": 4}

    update = data["lambda_update"]
    assert positive(update["1000"]) and positive(update["10000"])
    assert update["largest_over_smallest"] == pytest.approx(update["10000"] / update["1000"])

    overhead = data["alg1_overhead"]
    assert positive(overhead["base_step"]) and positive(overhead["weighted_step"])
    assert overhead["ratio"] == pytest.approx(overhead["weighted_step"] / overhead["base_step"])
    assert positive(overhead["keras_step"])
    assert overhead["base_vs_keras"] == pytest.approx(overhead["base_step"] / overhead["keras_step"])

    # On a CPU the memory figures come from child processes, here none: each block says why it has none.
    memory = data["memory"]
    assert memory["per_example_gradients"]["value"] is None and "--cpu_memory" in memory["per_example_gradients"][
        "reason"]
    assert memory["lambda_step"]["exact"] is None and "reason" in memory["lambda_step"]

    settings = data["settings"]
    assert settings["repeats"] == 1 and settings["paper_sizes"] is False and settings["tf_version"]
    assert "CPU" in settings["device"] or "GPU" in settings["device"]
    assert "cuInit" not in result.stderr  # TF's C++ start-up logs are hidden
    for heading in ("per_example_gradients:", "lambda_step:", "lambda_update:", "alg1_overhead:"):
        assert heading in result.stdout


def test_a_child_process_reports_the_peak_memory_of_one_method(monkeypatch):
    """The CPU memory figure of a method: the peak RSS of a child process that runs only it (sec44 --_only)."""
    from experiments.benchmarks.sec44_blocks import child_peak_rss

    monkeypatch.chdir(ROOT)
    settings = {"seed": 0, "arch": {"per_example_gradients": "small_cnn"},
                "lambda_batches": {"labeled": 2, "unlabeled": 4, "validation": 4}}
    peak = child_peak_rss("per_example_gradients", "fast", settings, batch=2)
    assert isinstance(peak, int) and peak > 100 * 2**20, peak  # TensorFlow alone takes more than 100 MiB


def test_blocks_flag_runs_only_those_blocks(tmp_path):
    out = tmp_path / "r.json"
    result = run([*TINY, "--blocks=lambda_update", f"--json_out={out}"])
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert set(data) == {"format", "lambda_update", "memory", "settings", "provenance"}


def test_a_bad_flag_gets_one_line_and_exit_code_2(tmp_path):
    """The benchmark's own checks; absl's parsing goes through experiments.checks.parse_flags, as in every entry
    point (tests/test_image_cli.py checks it)."""
    flag, message = "--table_sizes=1e4", "--table_sizes must be a list of integers"
    result = run([flag, f"--json_out={tmp_path / 'r.json'}"])
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr[-2000:]
    assert not (tmp_path / "r.json").exists()
