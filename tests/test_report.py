"""experiments.report and influence_ssl.studies.report on hand-made result JSONs: which JSONs are read or
refused, the run names, the comparison columns (one Holm family per table; a study's own rows only where a
table is exactly them) and the tables the report places each result in."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import refusal, run_main

from influence_ssl.runs.config import RunConfig
from influence_ssl.studies import report
from influence_ssl.studies import results as results_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Six seeds whose differences are all positive: the exact sign-flip p is 2 / 2^6 = 0.03125.
A6 = [0.80, 0.90, 0.70, 0.85, 0.75, 0.95]
B6 = [a - d for a, d in zip(A6, [0.01, 0.03, 0.02, 0.01, 0.02, 0.03])]


def study(kind, methods, pairs, config=None, **extra):
    """A study JSON as the runner writes it (stored paired rows by results.paired_table)."""
    n = len(next(iter(methods.values())))
    summary = {name: {"label": name, "values": list(v), "mean": float(np.mean(v)),
                      "std": float(np.std(v, ddof=1)), "chosen": [{}] * n} for name, v in methods.items()}
    return {"format": results_lib.FORMAT, "study": kind, "seeds": list(range(n)), "metric": "test_accuracy",
            "methods": summary, "paired": results_lib.paired_table(summary, pairs),
            "config": json.loads(RunConfig().replace(**(config or {})).dumps()), **extra}


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def test_describe_names_what_a_config_sets_away_from_the_papers_hypergradient():
    assert report.describe(RunConfig().to_dict()) == ""
    assert report.describe(RunConfig().replace(weight_init=3.0, dataset="moons").to_dict()) == ""
    changed = RunConfig().replace(influence="cg", influence_scope="last_block", hypergradient_normalization="class")
    assert report.describe(changed.to_dict()) == "hypergradient_normalization=class, influence=cg, " \
                                                 "influence_scope=last_block"


def test_comparison_columns_by_hand():
    t = report.table("t", ["row"], [["ours", report.Pair(A6, B6, "base")]])
    # Differences 1, 3, 2, 1, 2, 3 points: mean 2, sample std sqrt(4 / 5) = 0.89; 6 wins; alone in its table.
    vs, diff, p, wtl, verdict = t.rows[0][1:]
    assert (vs, diff, p, wtl) == ("base", "+2.00 ± 0.89", "0.0312", "6/0/0")
    assert verdict.startswith("beyond noise (+2.00, 95% CI [+") and verdict.endswith("p_holm = 0.03)")
    assert "Holm across this table's 1 comparisons" in t.notes[-1]
    # Two such comparisons in one table: Holm doubles the smaller p, 0.0625, no longer below 0.05.
    t = report.table("t", ["row"], [["a", report.Pair(A6, B6, "base")], ["b", report.Pair(A6, B6, "base")],
                                    ["no comparison", None]])
    assert [r[3] for r in t.rows[:2]] == ["0.0312"] * 2 and t.rows[2][1:] == [""] * 5
    for row in t.rows[:2]:
        assert row[5].startswith("no detectable difference (+2.00") and row[5].endswith("p_holm = 0.06)")
    nan = report.table("t", ["row"], [["x", report.Pair([float("nan")], [0.5], "base")]])
    assert nan.rows[0][1:3] == ["base", "—"]


def test_a_studys_own_rows_are_used_only_where_the_table_is_exactly_them():
    s = study("compare", {"base": B6, "ours": A6, "ours_reversed": B6}, [("ours", "base"), ("ours_reversed", "base")])
    s["paired"]["ours - base"] = {**s["paired"]["ours - base"], "p_perm": 0.25, "p_holm": 0.5}  # a sentinel
    both = [report.study_pair(s, "ours", "base"), report.study_pair(s, "ours_reversed", "base")]
    assert report.holm_family(both)[0]["p_holm"] == 0.5
    # One of the two rows only, or the same rows from two files: computed here, Holm over the table's rows.
    assert report.holm_family(both[:1])[0]["p_holm"] == pytest.approx(0.03125)
    other = study("compare", {"base": B6, "ours": A6}, [("ours", "base")])
    family = report.holm_family([both[0], report.study_pair(other, "ours", "base")])
    assert [r["p_perm"] for r in family] == pytest.approx([0.03125] * 2)
    assert [r["p_holm"] for r in family] == pytest.approx([0.0625] * 2)


def test_study_rows_pair_each_method_as_the_study_did_and_add_its_other_comparisons():
    s = study("compare", {"base": B6, "ours": A6, "tuned_single_lambda": B6},
              [("ours", "base"), ("tuned_single_lambda", "base"), ("ours", "tuned_single_lambda")])
    s["methods"]["tuned_single_lambda"]["lambda_per_seed"] = [3, 0.3, 1, 1, 3, 3]
    rows = report.study_rows(s, "digits", note="f.json")
    assert [r[0] for r in rows] == ["base", "ours", "tuned_single_lambda", "ours − tuned_single_lambda"]
    assert [r[-1].against if r[-1] else None for r in rows] == [None, "base", "base", "tuned_single_lambda"]
    assert rows[0][4] == "f.json" and rows[2][4] == "λ chosen per seed 3, 0.3, 1, 1, 3, 3"
    assert rows[1][2] == f"{100 * (1 - np.mean(A6)):.2f} ± {100 * np.std(A6, ddof=1):.2f}"


def test_which_jsons_are_read_skipped_or_refused(tmp_path):
    run = {"format": "influence_ssl.run/1", "test_accuracy": 0.9, "run_config": RunConfig().to_dict()}
    assert report.kind_of("r.json", run) == "run"
    assert report.kind_of("s.json", study("ablation_influence", {"base": B6}, [])) == "ablation"
    assert report.kind_of("w.json", study("weighting_rules", {"base": B6}, [])) == "weighting_rules"
    for skipped in [{"steps": 3}, {"key": {}, "record": {"test_accuracy": 0.9}}, [1, 2]]:  # config, run cache, list
        assert report.kind_of("x.json", skipped) is None
    refused = [({"format": "influence_ssl.compare/1", "methods": {}}, "does not read"),
               ({**study("compare", {"base": B6}, []), "study": "tuning"}, "study 'tuning'"),
               ({"format": "influence_ssl.run/1", "test_accuracy": 0.9, "run": {}}, "without run_config"),
               ({"methods": {"base": {}}}, "older format")]
    for data, message in refused:
        with pytest.raises(report.ResultsError, match=message):
            report.kind_of("x.json", data)
    write(tmp_path / "a" / "config.json", {"steps": 3})
    write(tmp_path / "b" / "results.json", run)
    assert list(report.collect(str(tmp_path))) == ["run"]


def run_report(args):
    return subprocess.run([sys.executable, "-m", "experiments.report", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("content, message", [
    ({"format": "influence_ssl.synthetic/1", "methods": {}}, "does not read"),
    ({"format": "influence_ssl.run/1", "test_accuracy": 0.9, "run": {}}, "without run_config"),
])
def test_the_report_stops_on_an_unknown_or_older_format_with_one_line(tmp_path, content, message):
    write(tmp_path / "sub" / "config.json", {"steps": 3})  # not a result: skipped
    write(tmp_path / "sub" / "r.json", content)
    refused = refusal("experiments.report", [str(tmp_path)], errors=(report.ResultsError,))
    assert message in refused and "r.json" in refused


def section(text, title, end=None):
    part = text.split(title, 1)[1]
    return part.split(end, 1)[0] if end else part


def test_the_report_places_every_result_in_its_table(tmp_path):
    ood = {"dataset": "digits", "algorithm": "fixmatch", "num_labeled": 50, "ood_classes": (6, 7, 8, 9)}
    for seed, accuracy in [(1, 0.95), (2, 0.96)]:  # two GPU runs of one Table 1 cell, and a reversed control
        write(tmp_path / f"gpu{seed}" / "results.json", {
            "format": "influence_ssl.run/1", "test_accuracy": accuracy, "run_config": RunConfig().replace(
                dataset="cifar10", algorithm="uda", weighting="per_example", num_labeled=4000, seed=seed).to_dict()})
    write(tmp_path / "gpu_rev" / "results.json", {
        "format": "influence_ssl.run/1", "test_accuracy": 0.5, "run_config": RunConfig().replace(
            dataset="cifar10", algorithm="uda", num_labeled=4000, reverse_hypergradient=True).to_dict()})
    write(tmp_path / "cpu.json", study("compare", {"base": B6, "ours": A6}, [("ours", "base")],
                                       {"dataset": "digits", "algorithm": "fixmatch", "num_labeled": 50}))
    write(tmp_path / "imdb.json", study("compare", {"base": B6, "ours": A6}, [("ours", "base")],
                                        {"dataset": "imdb", "algorithm": "uda", "max_seq_length": 32}))
    sensitivity = study("ablation_sensitivity", {"base": B6, "N=10,eta=0.04": A6}, [("N=10,eta=0.04", "base")],
                        {"dataset": "moons", "algorithm": "pseudo_label", "num_labeled": 10}, ablation="sensitivity")
    for name, entry in sensitivity["methods"].items():
        entry["validation_accuracy"] = [0.9, 0.8, 0.9, 0.8, 0.9, 0.8] if name == "base" else [0.97] * 6
        entry["validation_accuracy_mean"] = float(np.mean(entry["validation_accuracy"]))
    sensitivity["methods"]["N=10,eta=0.04"]["paper"] = [100, 0.01]
    write(tmp_path / "ablations" / "sensitivity.json", sensitivity)
    write(tmp_path / "ablations" / "weighting.json", study(
        "ablation_weighting", {"base@4": B6, "single@4": B6, "ours@4": A6},
        [("single@4", "base@4"), ("ours@4", "base@4"), ("ours@4", "single@4")],
        {"dataset": "moons", "algorithm": "pseudo_label", "num_labeled": 10}, ablation="weighting"))
    (tmp_path / "ablations" / "weighting.png").write_bytes(b"png")  # its own picture: linked, not drawn
    write(tmp_path / "moons.json", study("synthetic", {"pseudo_label": B6, "ours": A6}, [("ours", "pseudo_label")],
                                         {"dataset": "moons"}, weights={"auroc_low_weight_vs_wrong": 0.71}))
    shares = {"ood_fraction": 0.5, "ood_share_lowest_5pct_per_seed": [0.8, 0.9, 1.0, 0.8, 0.9, 1.0],
              "auroc_low_weight_vs_ood": 0.8, "auroc_low_weight_vs_ood_per_seed": [0.8] * 6}
    ood_runs = {"z_paper": ({"ood_fraction": 0.5}, shares), "a_weak": ({"ood_fraction": 0.5, "influence_view": "weak"},
                                                                     shares),
                "b_lambda3": ({"ood_fraction": 0.5, "weight_init": 3.0}, shares), "c_zero": ({"ood_fraction": 0.0}, {}),
                "d_noise": ({"ood_fraction": 0.5, "ood_classes": (), "ood_noise": True}, shares)}
    for name, (changes, extra) in ood_runs.items():
        write(tmp_path / "ood" / f"{name}.json", study(
            "compare", {"base": B6, "ours": A6, "tuned_single_lambda": B6, "ours_reversed": B6},
            [("ours", "base"), ("tuned_single_lambda", "base"), ("ours", "tuned_single_lambda")],
            {**ood, **changes}, **extra))
    write(tmp_path / "sec44.json", {"format": "influence_ssl.sec44/1", "settings": {"device": "cpu"},
                                    "per_example_gradients": {"loop_vs_fast": 12.5}})
    r = run_report([str(tmp_path), f"--markdown={tmp_path}/md/report.md"])
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    table1 = section(out, "Table 1", "Table 2")
    # The two GPU seeds in their paper cell (the reversed run left out): errors 5, 4 -> 4.50 ± 0.71.
    assert re.search(r"Ours \(UDA\)\s+cifar10, 4000 labels\s+4\.75 ± 0\.28\s+4\.50 ± 0\.71\s+2", table1)
    cpu = next(line for line in table1.splitlines() if line.startswith("ours (FixMatch)"))
    assert "CPU digits, 50 labels" in cpu and "6/0/0" in cpu and "beyond noise (+2.00" in cpu  # one comparison
    assert "imdb" not in table1.lower() and "OOD" not in table1
    assert "IMDb, 32 tokens (compare)" in section(out, "Table 2", "Table 3")
    table3 = section(out, "Table 3", "Fig. 3")
    assert re.search(r"N=10,eta=0\.04\s+moons, 10 labels \(pseudo_label\)\s+3\.42\s+3\.00 ± 0\.00", table3)
    weighting = section(out, "Fig. 4 left", "Fig. 4 centre")  # the label count is the row's, not the config's
    assert re.search(r"ours@4\s+moons, n labels \(pseudo_label\)\s+17\.50 ± 9\.35", weighting)
    assert re.search(r"ours@4 − single@4\s+moons, n labels \(pseudo_label\).*single@4\s+\+2\.00", weighting)
    assert "10 labels" not in weighting
    assert "12.50" in section(out, "Sec. 4.4")
    synthetic = section(out, "Sec. 4.1", "Beyond the paper")
    assert re.search(r"AUROC\(−λ → wrong pseudo-label\)\s+moons\s+0\.710", synthetic)
    assert "beyond noise (+2.00" in synthetic
    robustness = section(out, "Beyond the paper: out-of-distribution", "Beyond the paper: hypergradient variants")
    setting = "digits, 50% OOD unlabeled (classes 6,7,8,9 held out)"
    named = ["digits, 0% OOD unlabeled (classes 6,7,8,9 held out)", setting, f"{setting} [λ0=3]",
             "digits, 50% OOD unlabeled (noise images)"]
    assert [robustness.index(n + "  ") for n in named] == sorted(robustness.index(n + "  ") for n in named)
    assert "influence_view=weak" not in robustness  # a variant of the paper's method: its own table
    share = [line for line in robustness.splitlines() if line.startswith("OOD share among the lowest 5% of λ")]
    assert len(share) == 3 and all("90.0 ± 8.9% of the lowest 5% λ vs 50.0% of all" in line for line in share)
    assert "per seed 80%, 90%, 100%, 80%, 90%, 100%" in share[0]
    # 4 files x 3 comparisons in one Holm family: p = 0.0312 each, none beyond noise.
    compared = [line for line in robustness.splitlines() if "6/0/0" in line]
    assert len(compared) == 4 * 2 and all("0.0312" in line and "no detectable difference" in line
                                          for line in compared)
    assert "Holm across this table's 12 comparisons" in robustness
    # The weak-view variant against the paper's method in the same setting (not the 0%, λ0 = 3 or noise files):
    # the paper's 3 comparisons and the variant's 4 (no AUROC per seed here), in a family of their own.
    variants = section(out, "Beyond the paper: hypergradient variants", "Beyond the paper: base accuracy")
    assert "(digits, 50 labels (fixmatch, ra), 50% OOD unlabeled)" in variants
    assert "paper's method (z_paper.json)" in variants and "b_lambda3" not in variants
    assert re.search(r"influence_view=weak\s+ours − paper's ours .*paper's ours\s+\+0\.00 ± 0\.00", variants)
    assert "Holm across this table's 7 comparisons" in variants
    markdown = (tmp_path / "md" / "report.md").read_text()
    assert "(ablate_sensitivity_moons.png)" in markdown and (tmp_path / "md" / "ablate_sensitivity_moons.png").exists()
    assert "under `..`" in markdown and "experiments.report" in markdown  # where from, relative to the markdown
    # A study's own picture beside its JSON is linked, not drawn again.
    (tmp_path / "moons.png").write_bytes(b"png")
    assert run_report([str(tmp_path), f"--markdown={tmp_path}/md/report.md"]).returncode == 0
    assert "![moons.json](../moons.png)" in (tmp_path / "md" / "report.md").read_text()


def imdb_run(weighting, results):
    """A hand-made results.json of an IMDb run (128 tokens)."""
    config = RunConfig().replace(dataset="imdb", algorithm="uda", arch="bert", weighting=weighting, max_seq_length=128)
    return {"format": "influence_ssl.run/1", "run_config": config.to_dict(), **results}


def test_table2_gives_the_final_the_median_and_the_test_selected_best_of_each_row():
    import collections

    from experiments import report as report_cli

    ours = [imdb_run("per_example", {"test_accuracy": 0.86, "median_last20_test_accuracy": 0.86,
                                     "test_selected": {"best_test_accuracy": 0.90}}),
            imdb_run("per_example", {"test_accuracy": 0.84, "median_last20_test_accuracy": 0.86,
                                     "test_selected": {"best_test_accuracy": 0.92}})]
    uda = [imdb_run("none", {"test_accuracy": 0.80})]  # no evaluations in its history: final only
    found = collections.defaultdict(list, run=[(f"r{i}.json", r) for i, r in enumerate(ours + uda)])
    table = report_cli.table2(found, ".")
    assert table.columns[3:6] == ["final", "median of last 20 evals", "best eval (test-selected)"]
    rows = {row[0]: row for row in table.rows}
    # Ours: errors 14 and 16 (final), 14 and 14 (median), 10 and 8 (best); std over the two seeds, ddof 1.
    assert rows["Ours"][2:7] == ["8.51 ± 0.14", "15.00 ± 1.41", "14.00 ± 0.00", "9.00 ± 1.41", 2]
    assert rows["UDA"][2:7] == ["8.98 ± 0.26", "20.00 ± 0.00", "—", "—", 1]
    assert rows["Supervised"][3:7] == ["", "", "", ""]
    assert "test_selected" in table.notes[0]


def test_a_runs_results_keep_the_final_the_median_of_the_last_20_and_the_best_apart():
    from types import SimpleNamespace

    from influence_ssl.trainer.results import final_results

    tests = [0.1] + [0.5] * 10 + [0.9] * 10  # 21 evaluations; the last is the final one
    history = [{"step": 10 * (i + 1), "test": t, "validation": 0.5} for i, t in enumerate(tests)]
    trainer = SimpleNamespace(step=SimpleNamespace(numpy=lambda: 210), history=history, validation_loss=0.3,
                              weight_stats=lambda: {}, config=SimpleNamespace(to_dict=lambda: {}))
    results = final_results(trainer)
    assert results["test_accuracy"] == 0.9
    assert results["median_last20_test_accuracy"] == 0.7  # of 10 × 0.5 and 10 × 0.9 (the first left out)
    assert results["test_selected"]["best_test_accuracy"] == 0.9 and results["test_selected"]["evaluations"] == 21


def test_the_beyond_the_paper_studies_have_their_tables(tmp_path):
    """The recipe study (accuracy, λ's movement, AUROC paired as stored), the weighting rules (against base,
    against ours, low weights as detectors with the OOD share and Spearman's ρ), the label curve and the
    per-example gradient timings, each in its table with the JSON's own Holm families."""
    digits = {"dataset": "digits", "algorithm": "fixmatch", "num_labeled": 20}
    recipe = study("ablation_recipe", {"base": B6, "ours_paper": A6}, [("ours_paper", "base")], digits,
                   ablation="recipe")
    recipe["methods"]["ours_paper"].update(updates_per_example_mean=6.5, lambda_change_quantiles={
        "0.5": 0.02, "0.9": 0.1, "0.99": 0.2, "1.0": 0.3}, weights={"auroc_low_weight_vs_wrong_per_seed": A6})
    recipe["methods"]["base"]["weights"] = {"auroc_low_weight_vs_wrong_per_seed": B6}
    recipe["paired_auroc"] = results_lib.paired_table({"ours_paper": {"values": A6}, "base": {"values": B6}},
                                                      [("ours_paper", "base")])
    write(tmp_path / "recipes" / "recipe_digits.json", recipe)
    rules = study("weighting_rules", {"base": B6, "ours": A6, "softmatch": B6, "ours_softmatch": A6},
                  [("ours", "base"), ("softmatch", "base")],
                  {**digits, "ood_classes": (6, 7, 8, 9), "ood_fraction": 0.5})
    rules["paired_vs_ours"] = results_lib.paired_table(rules["methods"], [("softmatch", "ours")])
    rules["paired_on_rule"] = results_lib.paired_table(rules["methods"], [("ours_softmatch", "softmatch")])
    share = {"ood_share_lowest_5pct": [0.9] * 6, "ood_share": [0.4] * 6}
    rules["scores"] = {"ours λ": {"auroc_wrong": B6, "auroc_ood": B6, **share},
                       "softmatch w": {"auroc_wrong": A6, "auroc_ood": A6, **share}}
    rules["paired_scores"] = {kind: results_lib.paired_table({"softmatch w": {"values": A6}, "ours λ": {"values": B6}},
                                                             [("softmatch w", "ours λ")])
                              for kind in ("auroc_wrong", "auroc_ood")}
    rules["rank_agreement"] = {"softmatch": {"spearman_mean": 0.25}}
    write(tmp_path / "rules" / "w.json", rules)
    plain = study("weighting_rules", {"base": B6, "softmatch": B6, "ours_softmatch": A6}, [("softmatch", "base")],
                  {**digits, "num_labeled": 10})  # a second setting: its on-rule row joins the same family
    plain["paired_vs_ours"] = {}
    plain["paired_on_rule"] = results_lib.paired_table(plain["methods"], [("ours_softmatch", "softmatch")])
    write(tmp_path / "rules" / "w10.json", plain)
    write(tmp_path / "rules" / "curve.json", study("label_curve", {"base@10": B6, "base@20": A6},
                                                   [("base@20", "base@10")], {"dataset": "digits"}))
    write(tmp_path / "speed" / "pergrad.json", {
        "format": "influence_ssl.pergrad_speed/1", "settings": {"depth": 28, "width": 2},
        "batches": [{"batch": 16, "methods": {"per-example loop": {"median_ms": 250.0, "vs_batched_backward": 12.5}}}]})
    write(tmp_path / "speed" / "augment.json", {
        "format": "influence_ssl.augment_speed/1", "results": [{"shape": [96, 8, 8, 1], "augmentations": {
            "weak": {"per_image": {"median_ms": 6.0}, "batched": {"median_ms": 1.5}, "per_image_over_batched": 4.0}}}]})
    r = run_report([str(tmp_path)])
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    accuracy = section(out, "the authors' code (digits, 20 labels (fixmatch, ra)), test error", "AUROC")
    line = next(x for x in accuracy.splitlines() if x.startswith("ours_paper"))
    assert "Λ updates per example 6.5, |λ − 1| median 0.020, 90% 0.100, max 0.300" in line
    assert "p_holm = 0.03)" in line and "beyond noise" in line  # the study's own single row
    auroc = section(out, "AUROC(−λ → wrong pseudo-label) by recipe", "base accuracy")
    assert re.search(r"ours_paper .* base\s+\+0\.020 ± 0\.009\s+0\.0312\s+6/0/0\s+beyond noise", auroc)
    against_ours = section(out, "weighting rules (digits, 20 labels (fixmatch, ra), 50% OOD unlabeled), against "
                                "ours", "detector")
    assert re.search(r"softmatch .* ours\s+-2\.00 ± 0\.89\s+0\.0312\s+0/0/6\s+beyond noise", against_ours)
    # Both settings' on-rule rows in one Holm family: 2 × 0.0312 is not below 0.05.
    on_rule = section(out, "learned λ on top of a weighting rule, against the rule alone", "Beyond the paper")
    rows = [x for x in on_rule.splitlines() if x.startswith("ours_softmatch")]
    assert [("10 labels" in x, "50% OOD" in x) for x in rows] == [(True, False), (False, True)]
    assert all(re.search(r"softmatch\s+\+2\.00 ± 0\.89\s+0\.0312\s+6/0/0\s+no detectable difference .*"
                         r"p_holm = 0\.06\)", x) for x in rows)
    ood = section(out, "detector of a OOD example")
    assert "OOD share among the lowest 5%: 90.0% against 40.0% of all" in ood
    assert re.search(r"softmatch w .* ours λ\s+\+0\.020 ± 0\.009\s+0\.0312\s+6/0/0", ood)
    assert "Spearman ρ between ours' λ and each rule's weight (same seed), mean over seeds: softmatch +0.250" in out
    assert re.search(r"base@20\s+digits, n labels \(fixmatch, ra\)\s+17\.50 ± 9\.35\s+6 .* base@10\s+\+2\.00", out)
    assert re.search(r"per-example loop\s+WRN-28-2, batch 16\s+250\.0\s+12\.50", out)
    assert re.search(r"96×8×8×1\s+weak\s+6\.00\s+1\.50\s+4\.0", out)


def test_the_committed_report_is_current(tmp_path, monkeypatch):
    """results/REPORT.md is what experiments.report makes of the committed results (its tables; the header and
    the figure links name paths relative to the file)."""
    monkeypatch.chdir(ROOT)
    run_main("experiments.report", ["results", f"--markdown={tmp_path}/REPORT.md"])

    def tables(text):
        return text.split("\n## ", 1)[1].split("\n## Figures", 1)[0]

    with open(os.path.join(ROOT, "results", "REPORT.md"), encoding="utf-8") as f:
        committed = f.read()
    assert tables(committed) == tables((tmp_path / "REPORT.md").read_text()), (
        "results/REPORT.md is stale: python -m experiments.report results --markdown results/REPORT.md")


def test_markdown_escapes_a_bar_in_a_header_or_a_cell():
    t = report.Table("mean |g|", ["Λ steps", "mean |g|"], [["t = 1", "|x|"]], [])
    header, _, row = report.render_markdown(t).splitlines()[2:5]
    for line in (header, row):
        assert len(re.split(r"(?<!\\)\|", line)) == 4  # two cells between three unescaped bars
    assert "mean \\|g\\|" in header and "\\|x\\|" in row
