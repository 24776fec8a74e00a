"""experiments.ablate and experiments.report: every study on a tiny run, the run cache, the choice on
validation, the paper-scale flag files, and the report reading (and refusing) result JSONs."""
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


# ----- the report

def test_report_reads_every_study_and_the_benchmark(studies, tmp_path):
    results, out = studies
    bench = run("experiments.benchmarks.sec44", ["--blocks=lambda_update,alg1_overhead", "--arch=small_cnn",
                                                 "--repeats=1", "--table_sizes=1000,10000", "--update_repeats=2",
                                                 "--inner_steps=2", "--overhead_batches=2,4,4",
                                                 f"--json_out={out}/sec44.json"])
    assert bench.returncode == 0, bench.stderr[-3000:]
    r = run("experiments.report", [str(out), f"--markdown={tmp_path}/md/report.md"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for title in ["Table 1", "Table 2", "Table 3", "Fig. 3", "Fig. 4 left", "Fig. 4 centre", "Fig. 4 right",
                  "Sec. 4.4"]:
        assert title in r.stdout
    # Table 3: the row standing for the paper's (100, 0.01) carries the paper's 3.42 and the measured value.
    sensitivity = results["sensitivity"][1]["methods"]
    default = next(n for n, e in sensitivity.items() if e.get("paper_setting") == [100, 0.01])
    measured = f"{100 * (1 - sensitivity[default]['validation_accuracy_mean']):.2f}"
    assert re.search(rf"{re.escape(default)}\s.*3\.42\s+{measured}", r.stdout)
    assert "Λ update time: |U| = 10000 over |U| = 1000" in r.stdout  # the tiny run's table sizes
    markdown = (tmp_path / "md" / "report.md").read_text()
    for study in ablate.STUDIES:
        assert f"(ablate_{study}_moons.png)" in markdown and (tmp_path / "md" / f"ablate_{study}_moons.png").exists()


@pytest.mark.parametrize("content, message", [
    ({"format": "influence_ssl.ablation/0", "methods": {}}, "does not read"),
    ({"methods": {"base": {}}}, "older format"),
])
def test_report_refuses_unknown_and_older_formats(tmp_path, content, message):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "config.json").write_text(json.dumps({"steps": 3}))  # not a result: skipped
    (tmp_path / "sub" / "r.json").write_text(json.dumps(content))
    r = run("experiments.report", [str(tmp_path)], timeout=120)
    assert r.returncode == 2 and message in r.stderr and "r.json" in r.stderr and "Traceback" not in r.stderr


def test_report_places_an_ood_comparison_at_fraction_zero_in_the_robustness_table(tmp_path):
    """A compare JSON of an OOD sweep at F = 0 (no OOD row, so no AUROC) is the sweep's reference, not a Table 1 row."""
    methods = {m: {"test_accuracy": [0.9, 0.8], "mean": 0.85, "std": 0.0707} for m in ("base", "ours")}
    (tmp_path / "ood_0.json").write_text(json.dumps({
        "format": "influence_ssl.compare/1", "dataset": "digits", "algorithm": "fixmatch", "seeds": [0, 1],
        "metric": "test_accuracy", "methods": methods, "settings": {"num_labeled": 50}, "ood_fraction": 0.0}))
    r = run("experiments.report", [str(tmp_path)], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    robustness = r.stdout.split("Beyond the paper")[1]
    assert "digits, 0% OOD unlabeled" in robustness and "AUROC" not in robustness
    assert "CPU digits" not in r.stdout.split("Table 2")[0]  # not in Table 1
    # Held-out classes and noise images at the same fraction are two settings, each named by its kind.
    for name, run_flags in [("ood_0.5", {"ood_classes": [6, 7, 8, 9], "ood_noise": False}),
                        ("ood_noise_0.5", {"ood_classes": [], "ood_noise": True})]:
        (tmp_path / f"{name}.json").write_text(json.dumps({
            "format": "influence_ssl.compare/1", "dataset": "digits", "algorithm": "fixmatch", "seeds": [0, 1],
            "metric": "test_accuracy", "methods": methods, "settings": {"num_labeled": 50}, "ood_fraction": 0.5,
            "flags": run_flags}))
    robustness = run("experiments.report", [str(tmp_path)], timeout=120).stdout.split("Beyond the paper")[1]
    assert "vs base +0.00 ± 0.00 pts (wins/ties/losses 0/2/0)" in robustness  # ours and base are equal here
    classes, noise = "digits, 50% OOD unlabeled (classes 6,7,8,9 held out)", "digits, 50% OOD unlabeled (noise images)"
    assert classes in robustness and noise in robustness
    assert robustness.index("digits, 0% OOD") < robustness.index(classes) < robustness.index(noise)


def test_report_pairs_ours_against_the_tuned_single_lambda_in_the_robustness_table(tmp_path):
    """The OOD table answers the issue's question directly: ours − the single λ tuned on validation, paired."""
    methods = {"base": {"test_accuracy": [0.8, 0.7], "mean": 0.75, "std": 0.0707},
               "ours": {"test_accuracy": [0.9, 0.8], "mean": 0.85, "std": 0.0707},
               "tuned_single_lambda": {"test_accuracy": [0.85, 0.75], "mean": 0.8, "std": 0.0707,
                                       "lambda_per_seed": [3.0, 0.3]}}
    (tmp_path / "ood_0.5.json").write_text(json.dumps({
        "format": "influence_ssl.compare/1", "dataset": "digits", "algorithm": "fixmatch", "seeds": [0, 1],
        "metric": "test_accuracy", "methods": methods, "settings": {"num_labeled": 50}, "ood_fraction": 0.5,
        "flags": {"ood_classes": [6, 7, 8, 9], "ood_noise": False}}))
    r = run("experiments.report", [str(tmp_path)], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    row = next(line for line in r.stdout.split("Beyond the paper")[1].splitlines() if line.startswith("ours − tuned λ"))
    assert "vs tuned λ +5.00 ± 0.00 pts (wins/ties/losses 2/0/0); λ chosen per seed 3, 0.3" in row


def test_report_names_each_ood_run_by_its_variant_flags_and_initial_lambda(tmp_path):
    """Variant and λ0 runs of one OOD setting are separate rows, each saying what it changed; the paper's method first."""
    methods = {m: {"test_accuracy": [0.9, 0.8], "mean": 0.85, "std": 0.0707} for m in ("base", "ours")}
    paper_flags = {"ood_classes": [6, 7, 8, 9], "ood_noise": False, "influence": "exact", "influence_scope": "head"}
    runs = {"z_paper": (paper_flags, {"weight_init": 1.0}),
            "a_weak": ({**paper_flags, "influence_view": "weak"}, {"weight_init": 1.0}),
            "b_cg": ({**paper_flags, "influence": "cg", "influence_scope": "last_block"}, {"weight_init": 1.0}),
            "c_lambda3": (paper_flags, {"weight_init": 3.0})}
    for name, (run_flags, settings) in runs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({
            "format": "influence_ssl.compare/1", "dataset": "digits", "algorithm": "fixmatch", "seeds": [0, 1],
            "metric": "test_accuracy", "methods": methods, "settings": settings, "ood_fraction": 0.5,
            "flags": run_flags}))
    r = run("experiments.report", [str(tmp_path)], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    robustness = r.stdout.split("Beyond the paper")[1]
    setting = "digits, 50% OOD unlabeled (classes 6,7,8,9 held out)"
    named = [f"{setting} [influence_view=weak]", f"{setting} [influence=cg, influence_scope=last_block]",
             f"{setting} [λ0=3]"]
    assert all(n in robustness for n in named), robustness
    rows = [line for line in robustness.splitlines() if setting in line]
    assert "[" not in rows[0] and len(rows) == 4 * 2  # the paper's method first; base and ours per run
