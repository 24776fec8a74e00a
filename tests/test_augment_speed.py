"""experiments.benchmarks.augment_speed writes its timings to a JSON with provenance (for experiments.report), and
refuses a setting it cannot read in one line."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}


def run(*args):
    return subprocess.run([sys.executable, "-m", "experiments.benchmarks.augment_speed", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)


def test_timings_of_each_way_go_to_the_json(tmp_path):
    out = tmp_path / "speed.json"
    result = run("--settings=3x8x8x1", "--repeats=1", f"--json_out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["format"] == "influence_ssl.augment_speed/1" and data["settings"]["threads"] == 1
    [setting] = data["results"]
    assert setting["shape"] == [3, 8, 8, 1]
    assert set(setting["augmentations"]) == {"weak", "strong_fixmatch", "strong_uda"}
    for m in setting["augmentations"].values():
        assert m["per_image_over_batched"] == m["per_image"]["median_ms"] / m["batched"]["median_ms"] > 0
    assert "augment_speed" in data["provenance"]["command"] and data["provenance"]["commit"]


def test_a_setting_that_is_not_a_shape_is_refused(tmp_path):
    result = run("--settings=96x8x8", f"--json_out={tmp_path}/x.json")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        "error: --settings entry '96x8x8' is not BxHxWxC (e.g. 96x8x8x1).")
    assert not (tmp_path / "x.json").exists()


def test_an_unwritable_json_out_is_refused_before_any_timing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("--settings=3x8x8x1", "--repeats=1", f"--json_out={blocker}/x.json")
    assert result.returncode == 2 and "|" not in result.stdout  # no timing row printed
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: Cannot write to --json_out={str(blocker)!r}")
