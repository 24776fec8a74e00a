"""experiments.benchmarks.pergrad_speed writes its timings to a JSON with provenance (for experiments.report)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}


def test_tiny_model_timings_go_to_the_json(tmp_path):
    out = tmp_path / "speed.json"
    result = subprocess.run([sys.executable, "-m", "experiments.benchmarks.pergrad_speed", "--batches=2",
                             "--repeats=1", "--depth=10", "--width=1", "--methods=layerwise,loop", f"--json_out={out}"],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["format"] == "influence_ssl.pergrad_speed/1" and data["settings"]["depth"] == 10
    assert [b["batch"] for b in data["batches"]] == [2]
    for b in data["batches"]:
        methods = b["methods"]
        assert set(methods) == {"batched backward (sum loss)", "per-example layerwise (conv_impl=auto)",
                                "per-example loop"}
        assert methods["batched backward (sum loss)"]["vs_batched_backward"] == 1.0
        assert all(m["median_ms"] > 0 for m in methods.values())
        assert b["fast_picks"] == {}  # no "fast" asked for
    assert "pergrad_speed" in data["provenance"]["command"] and data["provenance"]["commit"]


def test_json_out_is_refused_where_it_is_not_written(tmp_path):
    result = subprocess.run([sys.executable, "-m", "experiments.benchmarks.pergrad_speed", "--mode=layers",
                             f"--json_out={tmp_path}/x.json"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        "error: --json_out applies to --mode=model only.")
    assert not (tmp_path / "x.json").exists()
