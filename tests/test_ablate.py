"""experiments.ablate: every study on a tiny run, the run cache, the choice on validation, and the paper-scale
flag files (the report's tests are in test_report.py)."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest
from absl import flags

from experiments import ablate, image_ssl

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_2D = ["--dataset=moons", "--seeds=2", "--steps=40", "--weight_warmup=10", "--inner_steps=5", "--num_unlabeled=60",
           "--num_test=100", "--label_counts=4,6", "--validation_sizes=10,20",
           "--weight_lr_grids=madam:0.01/0.1,adam:0.01,sgd:1000"]


def run(module, args, timeout=600):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Every study on the tiny 2-D problem with one shared run cache: {study: (stdout, json)}, and the dir."""
    out = tmp_path_factory.mktemp("ablate")
    results = {}
    for study in ablate.STUDIES:
        r = run("experiments.ablate", [*TINY_2D, f"--study={study}", f"--json_out={out}/{study}.json",
                                       f"--plot_dir={out}/plots", f"--run_cache={out}/cache"])
        assert r.returncode == 0, r.stderr[-3000:]
        results[study] = (r.stdout, json.loads((out / f"{study}.json").read_text()))
    return results, out


def test_every_study_writes_per_seed_results_with_both_controls_and_a_picture(studies):
    results, out = studies
    for study, (_, data) in results.items():
        assert data["format"] == ablate.FORMAT and data["study"] == study and data["seeds"] == [0, 1]
        methods = data["methods"]
        assert any(n.startswith("base") for n in methods) and any(n.startswith("reversed") for n in methods)
        for name, entry in methods.items():
            assert len(entry["test_accuracy"]) == 2 and len(entry["validation_accuracy"]) == 2
            assert entry["mean"] == pytest.approx(sum(entry["test_accuracy"]) / 2)
            if not name.startswith("base"):
                assert entry["paired_vs_base"]["per_seed"] == pytest.approx(
                    [a - b for a, b in zip(entry["test_accuracy"], methods[
                        "base" + (f"@{entry['x']}" if "x" in entry else "")]["test_accuracy"])])
        assert (out / "plots" / f"ablate_{study}_moons.png").stat().st_size > 10_000
    influence = results["influence"][1]["methods"]
    assert set(influence) == {"base", "exact_head", "identity_last_block", "neumann_last_block", "cg_last_block",
                              "reversed"}
    curve = influence["exact_head"]["validation_error_curve"]
    assert curve["steps"] == [40] or curve["steps"][-1] == 40  # an evaluation at the end at least
    weighting = results["weighting"][1]["methods"]
    assert {f"{m}@{n}" for m in ("base", "single", "ours", "reversed") for n in (4, 6)} == set(weighting)
    assert set(results["validation_size"][1]["methods"]) == {f"{m}@{v}" for m in ("base", "ours", "reversed")
                                                             for v in (10, 20)}
    optimizer = results["optimizer"][1]["methods"]
    assert [c["weight_lr"] for c in optimizer["madam"]["chosen_per_seed"]] != [] and all(
        c["weight_lr"] in (0.01, 0.1) for c in optimizer["madam"]["chosen_per_seed"])
    sensitivity = results["sensitivity"][1]["methods"]
    assert sorted(tuple(e["paper_setting"]) for e in sensitivity.values() if "paper_setting" in e) == sorted(
        ablate.PAPER_SENSITIVITY_GRID)


def test_runs_are_shared_between_studies_and_restarts(studies):
    results, out = studies
    # sensitivity runs last, with one cache: base, the default (N, η) (= exact_head), reversed and η × 10
    # (= the optimizer study's M-Adam at η = 0.1) are reused; only the other three (N, η) are new, per seed.
    assert re.findall(r"\[(\d+) new runs", results["sensitivity"][0]) == ["3", "3"]
    r = run("experiments.ablate", [*TINY_2D, "--study=influence", f"--json_out={out}/again.json", "--plot_dir=",
                                   f"--run_cache={out}/cache"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.findall(r"\[(\d+) new runs", r.stdout) == ["0", "0"]
    assert json.loads((out / "again.json").read_text())["methods"] == results["influence"][1]["methods"]


class FakeCache:
    """Records chosen so that the lowest validation loss and the best test accuracy disagree."""

    def __init__(self):
        self.asked = []

    def get(self, seed, variant):
        self.asked.append(variant)
        lr = dict(variant.settings).get("weight_lr", 0.0)
        return {"validation_loss": abs(lr - 0.04), "test_accuracy": lr}, False


def test_a_grid_is_chosen_on_validation_loss_and_the_control_mirrors_the_choice():
    grid = ablate.Method("ours", "ours", [ablate.Variant.of(weight_lr=v) for v in (0.01, 0.04, 0.1)])
    control = ablate.Method("reversed", "reversed", mirror="ours")
    cache = FakeCache()
    out, fresh = ablate.run_seed([grid, control], seed=3, cache=cache)
    assert out["ours"][0]["test_accuracy"] == 0.04  # not 0.1, the best test accuracy
    assert out["reversed"][1] == ablate.Variant.of(reverse=True, weight_lr=0.04)
    assert fresh == 4


class DivergingDomain:
    """Runs whose λ step size 0.1 (or the only candidate of 'wild') stops on a NaN."""
    settings = {"weight_lr": 0.04}
    fingerprint = {"fake": 1}

    def __init__(self):
        self.calls = 0

    def run(self, seed, variant):
        self.calls += 1
        lr = dict(variant.settings).get("weight_lr", 0.04)
        if lr >= 0.1:
            raise ablate.TrainingDiverged("A loss or hypergradient became NaN/Inf at step 7.")
        return {"validation_loss": abs(lr - 0.01), "test_accuracy": 0.9, "validation_accuracy": 0.9,
                "curve_steps": [], "curve_validation_error": [], "lambda_mean": 1.0, "lambda_zero_fraction": 0.0,
                "lambda_step_abs_mean": 0.01, "seconds": 1.0}


def test_a_diverged_run_is_kept_never_chosen_and_reported(tmp_path):
    """One NaN run must not stop a study: it is cached as diverged, a grid skips it, and a method whose only
    candidate diverged gets NaN for that seed with the seed named."""
    domain = DivergingDomain()
    cache = ablate.RunCache(str(tmp_path), domain)
    grid = ablate.Method("ours", "ours", [ablate.Variant.of(weight_lr=v) for v in (0.1, 0.04)])
    wild = ablate.Method("wild", "wild", [ablate.Variant.of(weight_lr=0.3)])
    base = ablate.Method("base", "base", [ablate.Variant.of("none")])
    out, _ = ablate.run_seed([base, grid, wild], seed=0, cache=cache)
    assert dict(out["ours"][1].settings) == {"weight_lr": 0.04}
    calls = domain.calls
    again, fresh = ablate.run_seed([base, grid, wild], seed=0, cache=cache)
    assert fresh == 0 and domain.calls == calls  # the diverged runs were cached too
    block = ablate.summarize([base, grid, wild], [again], [0])
    assert block["wild"]["diverged_seeds"] == [0] and block["wild"]["test_accuracy"][0] != block["wild"][
        "test_accuracy"][0]  # NaN
    assert "diverged_seeds" not in block["ours"] and block["ours"]["test_accuracy"] == [0.9]
    assert "diverged on seeds [0]" in ablate.format_study(block, [0])


def test_the_sensitivity_grid_is_the_papers_relative_to_the_run_defaults():
    class Domain:
        settings = {"inner_steps": 10, "weight_lr": 0.04}
    methods = ablate.study_methods("sensitivity", Domain())
    settings = {m.paper: dict(m.candidates[0].settings) for m in methods if m.paper}
    assert settings[(30, 0.01)] == {"inner_steps": 3, "weight_lr": 0.04}
    assert settings[(300, 0.01)] == {"inner_steps": 30, "weight_lr": 0.04}
    assert settings[(100, 0.1)]["weight_lr"] == pytest.approx(0.4)
    assert settings[(100, 0.001)]["weight_lr"] == pytest.approx(0.004)
    assert methods[-1].mirror == "N=10,eta=0.04"


def test_a_digits_study_runs_end_to_end(tmp_path):
    r = run("experiments.ablate", ["--study=weighting", "--dataset=digits", "--seeds=1", "--steps=12",
                                   "--weight_warmup=4", "--inner_steps=4", "--eval_every=6", "--label_counts=20",
                                   f"--json_out={tmp_path}/w.json", "--plot_dir=", f"--run_cache={tmp_path}/c"])
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((tmp_path / "w.json").read_text())
    assert data["algorithm"] == "uda"  # Sec. 4.3's base algorithm is the default
    assert data["settings"]["batch"] == 32 and set(data["methods"]) == {"base@20", "single@20", "ours@20", "reversed@20"}


@pytest.mark.parametrize("args, message", [
    (["--label_counts=0"], "--label_counts must be integers >= 1"),
    (["--weight_lr_grids=rmsprop:0.1"], "--weight_lr_grids entries"),
    (["--seeds=0"], "--seeds must be >= 1"),
    (["--algorithm=fixmatch"], "runs Pseudo-Label (Sec. 4.1)"),
])
def test_bad_flags_get_one_line(tmp_path, args, message):
    study = "weighting" if "label" in args[0] else "optimizer"
    r = run("experiments.ablate", [*TINY_2D, f"--study={study}", *args, f"--json_out={tmp_path}/x.json",
                                   f"--run_cache={tmp_path}/c"], timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def parse_flags(args):
    FLAGS.unparse_flags()
    FLAGS(["test"] + args)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "experiments/configs/ablations/*.cfg"))),
                         ids=os.path.basename)
def test_ablation_flag_files_change_only_their_setting(path):
    name = os.path.basename(path)
    with open(path) as f:
        assert "Ren et al." in f.read()
    parse_flags([f"--flagfile={path}"])
    s = image_ssl.resolved()
    assert FLAGS.dataset == "cifar10" and s["arch"] == "wrn28_2"
    assert FLAGS.algorithm == ("fixmatch" if "fixmatch" in name else "uda")
    assert s["num_labeled"] == int(re.search(r"_(\d+)\.cfg$", name).group(1))
    if name.startswith("fig3_"):
        method = name.split("_")[1]
        assert FLAGS.influence == method and FLAGS.influence_scope == ("head" if method == "exact" else "last_block")
    elif name.startswith("table3_"):
        n, eta = re.match(r"table3_N(\d+)_eta([\d.]+)_", name).groups()
        assert (s["inner_steps"], s["weight_lr"]) == (int(n), float(eta))
    elif name.startswith("fig4c_"):
        assert FLAGS.weight_optimizer == name.split("_")[1]
    elif name.startswith("fig4l_"):
        assert FLAGS.weighting == "single"
    else:
        v = int(re.match(r"fig4r_val(\d+)_", name).group(1))
        assert s["num_validation"] == v and s["validation_batch"] == min(320, v)
    if not name.startswith("fig4l_"):
        assert FLAGS.weighting == "per_example"

