"""experiments.reproduce: the catalogue, the listing with each study's status, selection, and a quick run of
one study end to end (real training, 2 seeds, short runs) that a second call skips."""
import json
import os
import subprocess
import sys

import pytest

from influence_ssl.studies import reproduce
from influence_ssl.studies.results import FORMAT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_children(monkeypatch, fails=lambda argv: False):
    """subprocess.Popen replaced by children that print nothing and exit 1 where fails(argv), else 0; returns
    the list of (argv, env) of the children started, in order."""
    started = []

    class FakeChild:
        def __init__(self, argv, env, **kwargs):
            started.append((argv, env))
            self.code, self.stdout = int(fails(argv)), iter(())

        def wait(self):
            return self.code

    monkeypatch.setattr(subprocess, "Popen", FakeChild)
    return started


def test_the_catalogue_names_each_study_and_file_once_and_its_modules_exist():
    names = [e.name for e in reproduce.CATALOGUE]
    assert len(names) == len(set(names))
    paths = [e.json_path("results") for e in reproduce.CATALOGUE]
    assert len(paths) == len(set(paths))
    for e in reproduce.CATALOGUE:
        assert os.path.exists(os.path.join(ROOT, *e.module.split(".")) + ".py"), e.module
        assert e.kind in ("2d", "image", None) and e.minutes > 0
        assert not any(a.startswith(("--seeds", "--json_out", "--run_cache", "--plot_dir")) for a in e.args)
    assert set(reproduce.GROUPS) == {"synthetic", "compare", "ablations", "ood", "variants", "recipes",
                                     "weighting_rules", "speed", "text"}


def test_a_study_command_writes_its_json_pictures_and_runs_under_the_root():
    entry = next(e for e in reproduce.CATALOGUE if e.name == "ood_0.5")
    argv = entry.command("results", 10, quick=False)
    assert argv[1:3] == ["-m", "experiments.compare"]
    assert argv[-4:] == ["--seeds=10", "--json_out=results/ood/ood_0.5.json", "--plot_dir=results/ood",
                         "--run_cache=results/runs"]
    quick = entry.command("out/quick", 2, quick=True)
    assert "--steps=60" in quick and quick[-1] == "--run_cache=out/quick/runs"
    bench = next(e for e in reproduce.CATALOGUE if e.name == "sec44")
    assert bench.command("results", 10, quick=False)[-1] == "--json_out=results/speed/sec44.json"
    assert not any(a.startswith("--seeds") for a in bench.command("results", 10, quick=True))


def test_select_by_name_or_group_in_catalogue_order():
    assert [e.name for e in reproduce.select(["recipe_moons", "synthetic"])] == [
        "synthetic_moons", "synthetic_circles", "synthetic_linear", "recipe_moons"]
    assert len(reproduce.select([])) == len(reproduce.CATALOGUE)
    with pytest.raises(ValueError, match="unknown nope"):
        reproduce.select(["nope"])


def test_status_reads_the_json_format_provenance_and_seeds(tmp_path):
    entry = next(e for e in reproduce.CATALOGUE if e.name == "synthetic_moons")
    path = tmp_path / "synthetic" / "synthetic_moons.json"
    assert reproduce.status(entry, str(tmp_path), 10) == "to run"
    path.parent.mkdir()
    for body, expected in [({"format": "influence_ssl.compare/1", "seeds": list(range(10))}, "to run (older format)"),
                           ({"format": FORMAT, "seeds": list(range(10))}, "to run (older format)"),  # no provenance
                           ({"format": FORMAT, "seeds": [0, 1, 2], "provenance": {}}, "partial (3 of 10 seeds)"),
                           ({"format": FORMAT, "seeds": list(range(10)), "provenance": {}}, "done")]:
        path.write_text(json.dumps(body))
        assert reproduce.status(entry, str(tmp_path), 10) == expected
    path.write_text("{not json")
    assert reproduce.status(entry, str(tmp_path), 10) == "to run (unreadable)"


def test_quick_run_of_one_study_then_a_second_call_skips_it(tmp_path, monkeypatch):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    command = [sys.executable, "-m", "experiments.reproduce", "--quick", "--seeds=1", "--only=synthetic_linear",
               "--lanes=1"]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    written = json.loads((tmp_path / "out" / "quick" / "synthetic" / "synthetic_linear.json").read_text())
    assert written["format"] == FORMAT and written["seeds"] == [0]
    assert "experiments.synthetic" in written["provenance"]["command"]
    assert "--steps=100" in written["provenance"]["command"]
    assert "synthetic_linear: seed 0:" in first.stdout and "synthetic_linear: finished" in first.stdout
    assert any(p.endswith(".json") for p in os.listdir(tmp_path / "out" / "quick" / "runs"))
    # Again (in this process): the study is done and nothing is started.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "Popen", None)  # would fail if called
    lines = []
    codes = reproduce.run_all(reproduce.select(["synthetic_linear"]), reproduce.QUICK_DIR, 1, quick=True,
                              log=lines.append)
    assert codes == {} and lines == ["synthetic_linear: done, skipped"]


def test_the_listing_estimates_what_is_left(tmp_path):
    entries = reproduce.select(["recipes", "madam_epsilon"])
    text = reproduce.listing(entries, str(tmp_path), 10)
    # recipe_moons 3 + recipe_digits 45 minutes a seed, the benchmark 3 minutes in all
    assert "left: about 8.1 h of one core (4.0 h on 2 cores, two lanes)" in text
    quick = reproduce.listing(entries, str(tmp_path), 2, quick=True)
    assert "left: about 0.1 h of one core" in quick  # 2 + 2 + 1 minutes


def test_timing_benchmarks_run_alone_after_the_studies_on_every_thread(tmp_path, monkeypatch):
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.delenv(name, raising=False)
    children = fake_children(monkeypatch)
    entries = reproduce.select(["sec44", "synthetic_linear", "pergrad_speed", "synthetic_moons"])
    codes = reproduce.run_all(entries, str(tmp_path), 1, quick=True, lanes=2, log=lambda line: None,
                              logs_dir=str(tmp_path / "logs"))
    assert codes == {e.name: 0 for e in entries}
    started = [(argv[2], env) for argv, env in children]
    modules = [m for m, _ in started]
    assert sorted(modules[:2]) == ["experiments.synthetic"] * 2
    assert modules[2:] == ["experiments.benchmarks.sec44", "experiments.benchmarks.pergrad_speed"]
    for module, env in started:
        capped = env.get("TF_NUM_INTRAOP_THREADS") == "1" and env.get("TF_NUM_INTEROP_THREADS") == "1"
        assert capped == (module == "experiments.synthetic"), module


def test_a_study_of_many_seeds_runs_as_shards_then_writes_its_json_from_the_cache(tmp_path, monkeypatch):
    children = fake_children(monkeypatch, fails=lambda argv: "--dataset=circles" in argv and "--first_seed=5" in argv)
    monkeypatch.chdir(tmp_path)
    entries = reproduce.select(["synthetic_moons", "synthetic_circles"])
    codes = reproduce.run_all(entries, "results", 10, quick=False, lanes=2, log=lambda line: None)
    assert codes == {"synthetic_moons": 0, "synthetic_circles": 1}  # a failed shard fails its study
    started = [argv for argv, _ in children]
    moons = [a for a in started if "--dataset=moons" in a]
    shards, whole = moons[:2], moons[2:]
    assert sorted(a[a.index("--seeds=5") + 1] for a in shards) == ["--first_seed=0", "--first_seed=5"]
    for a in shards:
        assert a[-3].startswith(f"--json_out={os.path.join('out', 'shards', 'synthetic_moons.seeds_')}")
        assert a[-1] == f"--run_cache={os.path.join('results', 'runs')}"
    assert whole == [entries[0].command("results", 10, quick=False)]  # once, after both shards
    circles = [a for a in started if "--dataset=circles" in a]
    assert len(circles) == 2 and all("--seeds=5" in a for a in circles)  # no JSON from a failed study
