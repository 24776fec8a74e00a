"""experiments.ablate: every study on a tiny run with one shared run cache (in-process), runs shared between
studies and restarts, the sensitivity grid, bad flags in one line, and the paper-scale flag files (the report's
tests are in test_report.py)."""
import glob
import json
import os
import re

import numpy as np
import pytest
from conftest import ROOT, arrays, assert_one_line_error, config_of, record, refusal, run_main, run_module

from influence_ssl.runs import presets
from influence_ssl.runs.config import leaves, value_of
from influence_ssl.studies import ablation as ablate  # the studies of experiments.ablate (STUDIES, their grids)
from influence_ssl.studies.results import FORMAT

MODULE = "experiments.ablate"
TINY_2D = ["--dataset=moons", "--seeds=1", "--steps=40", "--weight_warmup=10", "--inner_steps=5", "--num_unlabeled=60",
           "--num_test=100", "--label_counts=4,6", "--validation_sizes=10,20",
           "--weight_lr_grids=madam:0.01/0.1,adam:0.01,sgd:1000"]
TRAINED = re.compile(r"seed \d+: \d+ methods, (\d+) run\(s\) trained")


def run(module, args, timeout=600):
    return run_module(module, args, timeout=timeout)


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Every study on the tiny 2-D problem with one shared run cache, in-process: {study: (stdout, json)}, and
    the dir. One seed (CI time): several seeds are the study runner's (tests/test_studies.py). The recipe study
    runs on the fake training (test_the_recipe_study_...)."""
    out = tmp_path_factory.mktemp("ablate")
    results = {}
    for study in [s for s in ablate.STUDIES if s != "recipe"]:
        stdout = run_main(MODULE, [*TINY_2D, f"--study={study}", f"--json_out={out}/{study}.json",
                                   f"--plot_dir={out}/plots", f"--run_cache={out}/cache"])
        results[study] = (stdout, json.loads((out / f"{study}.json").read_text()))
    return results, out


def test_every_study_writes_per_seed_results_with_both_controls_and_a_picture(studies):
    results, out = studies
    for study, (_, data) in results.items():
        assert (data["format"], data["study"], data["ablation"], data["seeds"]) == (FORMAT, f"ablation_{study}",
                                                                                   study, [0])
        assert data["config"]["data"]["dataset"] == "moons" and data["config"]["train"]["eval_every"] == 50
        methods = data["methods"]
        assert any(n.startswith("base") for n in methods) and any(n.startswith("reversed") for n in methods)
        for name, entry in methods.items():
            assert len(entry["values"]) == 1 and len(entry["validation_accuracy"]) == 1
            assert len(entry["validation_loss"]) == 1 and len(entry["chosen"]) == 1
            assert entry["mean"] == pytest.approx(entry["values"][0]) and 0 <= entry["values"][0] <= 1
            if not name.startswith("base"):
                base = methods["base" + (f"@{entry['x']}" if "x" in entry else "")]["values"]
                paired = entry["paired_vs_base"]
                assert paired["n"] == 1 and paired["mean"] == pytest.approx(entry["values"][0] - base[0])
        assert (out / "plots" / f"{study}.png").stat().st_size > 10_000  # named as its JSON
    influence = results["influence"][1]["methods"]
    assert set(influence) == {"base", "exact_head", "identity_last_block", "neumann_last_block", "cg_last_block",
                              "reversed"}
    assert influence["cg_last_block"]["chosen"][0] == {"weighting": "per_example", "influence": "cg",
                                                       "influence_scope": "last_block"}
    assert influence["reversed"]["chosen"][0] == {**influence["exact_head"]["chosen"][0], "reverse_hypergradient": True}
    curve = influence["exact_head"]["validation_error_curve"]
    assert curve["steps"][-1] == 40 and len(curve["per_seed"]) == 1  # an evaluation at the end at least
    weighting = results["weighting"][1]["methods"]
    assert {f"{m}@{n}" for m in ("base", "single", "ours", "reversed") for n in (4, 6)} == set(weighting)
    assert weighting["single@4"]["chosen"][0] == {"weighting": "single", "num_labeled": 4}
    assert set(results["validation_size"][1]["methods"]) == {f"{m}@{v}" for m in ("base", "ours", "reversed")
                                                             for v in (10, 20)}
    optimizer = results["optimizer"][1]["methods"]
    assert set(optimizer) == {"base", "madam", "adam", "sgd", "reversed"}
    assert all(c["weight_lr"] in (0.01, 0.1) for c in optimizer["madam"]["chosen"])
    assert [c["weight_lr"] for c in optimizer["sgd"]["chosen"]] == [1000.0]
    mirrored = [{**c, "reverse_hypergradient": True} for c in optimizer["madam"]["chosen"]]
    assert optimizer["reversed"]["chosen"] == mirrored
    sensitivity = results["sensitivity"][1]["methods"]
    assert sorted(tuple(e["paper"]) for e in sensitivity.values() if "paper" in e) == sorted(
        ablate.PAPER_SENSITIVITY_GRID)


def test_weighting_optimizer_and_sensitivity_studies_pair_their_own_question_beside_the_controls(studies):
    """Fig. 4 left asks per-example against one shared λ, Fig. 4 centre M-Adam against each other optimizer, Table 3
    each (N, η) against the default: those pairs join the study's Holm family after the pairs against base; the
    other studies pair against base only."""
    results, _ = studies
    default = "N=5,eta=0.01"  # TINY_2D's inner_steps and the 2-D weight_lr: the paper's (100, 0.01)
    expected = {"weighting": ["ours@4 - single@4", "ours@6 - single@6"], "optimizer": ["madam - adam", "madam - sgd"],
                "sensitivity": [f"{n} - {default}" for n in ("N=2,eta=0.01", "N=15,eta=0.01", "N=5,eta=0.1",
                                                             "N=5,eta=0.001")]}
    for study, (_, data) in results.items():
        methods, paired = data["methods"], data["paired"]
        against_base = [k for k in paired if k.split(" - ")[1].startswith("base")]
        assert list(paired) == against_base + expected.get(study, []), (study, list(paired))
        for key in expected.get(study, []):
            a, b = key.split(" - ")
            assert paired[key]["n"] == 1
            assert paired[key]["mean"] == pytest.approx(methods[a]["values"][0] - methods[b]["values"][0])


def test_runs_are_shared_between_studies_and_restarts(studies):
    results, out = studies
    # sensitivity runs last, with one cache: base, the default (N, η) (= exact_head), reversed and η × 10
    # (= the optimizer study's M-Adam at η = 0.1) are reused; only the other three (N, η) are new.
    assert TRAINED.findall(results["sensitivity"][0]) == ["3"]
    stdout = run_main(MODULE, [*TINY_2D, "--study=influence", f"--json_out={out}/again.json", "--plot_dir=",
                               f"--run_cache={out}/cache"])
    assert TRAINED.findall(stdout) == ["0"]
    assert json.loads((out / "again.json").read_text())["methods"] == results["influence"][1]["methods"]


def test_the_sensitivity_grid_is_the_papers_relative_to_the_run_defaults():
    base = presets.resolve({"dataset": "digits", "algorithm": "uda", "inner_steps": 10, "weight_lr": 0.04})
    methods = ablate.methods("sensitivity", base)
    settings = {m.paper: m.candidates[0] for m in methods if m.paper}
    assert settings[(30, 0.01)] == {"weighting": "per_example", "inner_steps": 3, "weight_lr": 0.04}
    assert settings[(300, 0.01)] == {"weighting": "per_example", "inner_steps": 30, "weight_lr": 0.04}
    assert settings[(100, 0.1)]["weight_lr"] == pytest.approx(0.4)
    assert settings[(100, 0.001)]["weight_lr"] == pytest.approx(0.004)
    assert methods[0].name == "base" and methods[-1].mirror == "N=10,eta=0.04"


def test_a_smaller_labeled_set_keeps_the_batches_and_a_smaller_validation_set_shrinks_its_own():
    """The labeled set repeats within a batch where it is smaller (as FixMatch at 40 labels with batch 64), so
    only the label count changes; a Λ step's V' is drawn without replacement and must fit."""
    digits = presets.resolve({"dataset": "digits"})  # batch 32, μ·B = 96, validation batch 200
    assert ablate.sized(digits, num_labeled=20) == {"num_labeled": 20}
    assert ablate.sized(digits, num_labeled=100) == {"num_labeled": 100}
    assert ablate.sized(digits, num_validation=50) == {"num_validation": 50, "validation_batch": 50}
    moons = presets.resolve({"dataset": "moons"})  # full batches follow the sizes
    assert ablate.sized(moons, num_labeled=4, num_validation=10) == {"num_labeled": 4, "num_validation": 10}
    assert moons.replace(**ablate.sized(moons, num_labeled=4)).train.labeled_batch == 4


def test_a_digits_study_runs_uda_with_the_same_batches_at_every_label_count(tmp_path, fake_training):
    """Sec. 4.3 runs UDA on images ("All the experiments are conducted using ... the UDA baseline"); every label
    count keeps the batches (20 labels repeat within a labeled batch of 32). On a fake training (the image path
    trains for real in tests/test_image_cli.py): every run it would train passes the checks against the digits
    split."""
    from influence_ssl.runs import checks

    fake = fake_training()
    stdout = run_main(MODULE, ["--study=weighting", "--dataset=digits", "--seeds=1", "--label_counts=20,100",
                               f"--json_out={tmp_path}/w.json", "--plot_dir=", f"--run_cache={tmp_path}/c"])
    assert TRAINED.findall(stdout) == ["8"]
    data = json.loads((tmp_path / "w.json").read_text())
    assert data["config"]["algorithm"]["algorithm"] == "uda" and data["config"]["train"]["labeled_batch"] == 32
    assert set(data["methods"]) == {f"{m}@{n}" for m in ("base", "single", "ours", "reversed") for n in (20, 100)}
    assert data["methods"]["ours@20"]["chosen"] == [{"weighting": "per_example", "num_labeled": 20}]
    for config in fake.trained:
        assert config.algorithm.algorithm == "uda" and config.train.eval_every == 100
        checks.check(config)  # the batches fit the labeled, unlabeled and validation sets
        assert (config.train.labeled_batch, config.train.unlabeled_batch) == (32, 96)


def test_the_2d_problems_keep_pseudo_label_with_a_validation_point_every_50_steps(tmp_path, fake_training):
    fake = fake_training()
    run_main(MODULE, ["--study=influence", "--dataset=moons", "--seeds=1", f"--json_out={tmp_path}/i.json",
                      "--plot_dir=", f"--run_cache={tmp_path}/c"])
    assert {(c.algorithm.algorithm, c.train.eval_every) for c in fake.trained} == {("pseudo_label", 50)}


@pytest.mark.parametrize("args, message", [
    (["--label_counts=0"], "--label_counts must hold finite values >= 1"),
    (["--label_counts=2.5"], "--label_counts must be a list of numbers"),
    (["--validation_sizes=-3"], "--validation_sizes must hold finite values >= 1"),
    (["--weight_lr_grids=rmsprop:0.1"], "--weight_lr_grids entries"),
    (["--weight_lr_grids=madam:0"], "--weight_lr_grids entries"),
    (["--seeds=0"], "--seeds must be >= 1"),
    (["--algorithm=fixmatch"], "runs Pseudo-Label (Sec. 4.1)"),
    (["--uda_preset=current"], "--uda_preset does not apply to --dataset=moons: remove it."),
    (["--plot_dir=/proc/version/plots"], "Cannot write to --plot_dir"),
])
def test_bad_flags_get_one_line(tmp_path, args, message):
    study = "weighting" if "label" in args[0] else "optimizer"
    assert message in refusal(MODULE, [*TINY_2D, f"--study={study}", *args, f"--json_out={tmp_path}/x.json",
                                       f"--run_cache={tmp_path}/c"])
    assert not (tmp_path / "c").exists()


def test_a_bad_flag_ends_the_process_with_one_line_and_exit_code_2(tmp_path):
    r = run_module(MODULE, [*TINY_2D, "--study=weighting", "--label_counts=0", f"--json_out={tmp_path}/x.json",
                            f"--run_cache={tmp_path}/c"])
    assert_one_line_error(r, "--label_counts must hold finite values >= 1")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "experiments/configs/ablations/*.cfg"))),
                         ids=os.path.basename)
def test_ablation_flag_files_change_only_their_setting(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the files name the Table 1 files they start from by relative path
    name = os.path.basename(path)
    with open(path) as f:
        assert "Ren et al." in f.read()
    c = config_of([f"--flagfile={path}"])
    t = c.train
    assert c.data.dataset == "cifar10" and c.model.arch == "wrn28_2"
    assert c.algorithm.algorithm == ("fixmatch" if "fixmatch" in name else "uda")
    assert c.data.num_labeled == int(re.search(r"_(\d+)\.cfg$", name).group(1))
    if name.startswith("fig3_"):
        method = name.split("_")[1]
        assert t.influence == method and t.influence_scope == ("head" if method == "exact" else "last_block")
    elif name.startswith("table3_"):
        n, eta = re.match(r"table3_N(\d+)_eta([\d.]+)_", name).groups()
        assert (t.inner_steps, t.weight_lr) == (int(n), float(eta))
    elif name.startswith("fig4c_"):
        assert t.weight_optimizer == name.split("_")[1]
    elif name.startswith("fig4l_"):
        assert t.weighting == "single"
    else:
        v = int(re.match(r"fig4r_val(\d+)_", name).group(1))
        assert c.data.num_validation == v and t.validation_batch == min(320, v)
    if not name.startswith("fig4l_"):
        assert t.weighting == "per_example"
    # Everything else is the Table 1 run the file starts from (its first line).
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("--flagfile=experiments/configs/table1/")
    start = config_of([lines[0]])
    own = {line[2:].split("=")[0] for line in lines[1:]}
    changed = {name for name in leaves() if value_of(c, name) != value_of(start, name)}
    assert changed <= own, (changed, own)  # nothing, for the file of the Table 1 run itself (e.g. fig3_exact_head)


def test_the_recipe_study_runs_both_recipes_and_each_switch_alone_with_its_controls(fake_training, tmp_path):
    """--study=recipe: base, tuned λ, ours and reversed under the paper's recipe and the authors' code, then ours
    with each switch of the authors' code that applies, paired as the table says; λ's movement per method."""
    fake = fake_training(lambda config: (record(0.5, test_accuracy=0.5 + 0.01 * config.train.weight_max),
                                         arrays(config.seed)))
    out = tmp_path / "recipe.json"
    run_main(MODULE, ["--study=recipe", "--dataset=digits", "--algorithm=fixmatch", "--augment=cta", "--seeds=2",
                      f"--json_out={out}", "--plot_dir=", f"--run_cache={tmp_path}/cache"])
    data = json.loads(out.read_text())
    methods = data["methods"]
    switches = [n for n in methods if n.startswith("paper+")]
    assert switches == [f"paper+{name}" for name in presets.AUTHORS_SWITCHES]  # all apply to FixMatch-CTA on digits
    assert methods["paper+lambda_max"]["chosen"][0] == {"weighting": "per_example", "weight_max": 2.0}
    assert methods["paper+validation_draw"]["chosen"][0]["validation_batch"] == 32 * 3  # batch · uratio
    authors = methods["ours_authors"]["chosen"][0]
    assert authors["cta_frozen"] and authors["influence_rows"] == "raw_ce" and authors["weight_batch"] == "theta"
    assert methods["base_frozen_cta"]["chosen"][0] == {"weighting": "none", "cta_frozen": True}
    assert methods["reversed_authors"]["chosen"][0] == {**authors, "reverse_hypergradient": True}
    paired = data["paired"]
    assert paired["ours_authors - base_frozen_cta"]["mean"] == pytest.approx(0.02)  # the λ ≤ 2 switch, seen
    assert paired["paper+lambda_max - ours_paper"]["mean"] == pytest.approx(0.02)
    assert paired["paper+epsilon - ours_paper"]["mean"] == 0.0 and "ours_paper - tuned_lambda" in paired
    movement = methods["ours_paper"]
    lam = np.concatenate([arrays(s)["lambda"] for s in (0, 1)])
    assert movement["lambda_change_quantiles"]["0.5"] == pytest.approx(np.quantile(np.abs(lam - 1), 0.5))
    assert sum(movement["lambda_change_histogram"]["counts"]) == len(lam)
    assert "auroc_low_weight_vs_wrong" in movement["weights"] and "weights" not in methods["base"]
    # The weights' AUROC for wrong pseudo-labels, per seed and paired (the fake's λ ignore the switches: ties).
    auroc = data["paired_auroc"]
    assert {"ours_paper - reversed_paper", "ours_authors - ours_paper", "paper+kernel_only - ours_paper"} <= set(auroc)
    assert auroc["ours_authors - ours_paper"]["n"] == 2 and auroc["ours_authors - ours_paper"]["mean"] == 0.0
    # Moons has neither batch norm nor CTAugment: those switches are not rows there.
    fake.trained.clear()
    run_main(MODULE, ["--study=recipe", "--dataset=moons", "--seeds=1", f"--json_out={out}", "--plot_dir=",
                      f"--run_cache={tmp_path}/cache"])
    names = set(json.loads(out.read_text())["methods"])
    assert "paper+training_forwards" not in names and "paper+frozen_cta" not in names and "base_frozen_cta" not in names
    assert refusal(MODULE, ["--study=recipe", "--recipe=authors_code", "--dataset=moons"]) == (
        "--study=recipe compares both recipes from the paper's: leave --recipe at paper.")
