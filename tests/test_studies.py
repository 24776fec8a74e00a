"""influence_ssl.studies in-process, on a fake `execute.run` (milliseconds): the selection rule, mirrors, the run
cache, a configuration reached twice trained once, diverged runs, and the studies' results."""
import json
import math
import os

import numpy as np
import pytest
from conftest import arrays, record

from influence_ssl.runs import build, execute, presets
from influence_ssl.runs.config import config_hash
from influence_ssl.studies import compare, synthetic
from influence_ssl.studies import results as results_lib
from influence_ssl.studies.runner import Method, RunCache, check_methods, lowest_validation_loss, run_seed, run_study
from influence_ssl.trainer import TrainingDiverged

NAN, INF = float("nan"), float("inf")


def by_weight_lr(config):
    """Validation loss lowest at η = 0.04 while the test accuracy grows with η: the rule must not look at test."""
    t = config.train
    if t.weighting == "none":
        return record(0.5 + abs(t.weight_init - 1.0), test_accuracy=0.6), arrays(config.seed)
    return record(abs(t.weight_lr - 0.04), test_accuracy=t.weight_lr), arrays(config.seed)


MOONS = presets.resolve({"dataset": "moons", "steps": 20})


# ------------------------------------------------------------------------------------------- the selection rule
def candidate(name, loss, test=0.5):
    return ({"name": name}, record(loss, test), None)


def test_the_lowest_validation_loss_is_chosen_never_the_test_accuracy():
    candidates = [candidate("a", 0.40, 0.99), candidate("b", 0.30, 0.50), candidate("c", 0.35, 0.98)]
    assert lowest_validation_loss(candidates)[0]["name"] == "b"


def test_ties_go_to_the_first_candidate():
    assert lowest_validation_loss([candidate("a", 0.3), candidate("b", 0.3), candidate("c", 0.4)])[0]["name"] == "a"


@pytest.mark.parametrize("losses, chosen", [([INF, NAN, 2.0], 2), ([NAN, 1.0], 1), ([INF, INF], 0)])
def test_a_diverged_or_nan_run_is_never_chosen_over_a_finished_one(losses, chosen):
    candidates = [candidate(i, loss) for i, loss in enumerate(losses)]
    assert lowest_validation_loss(candidates)[0]["name"] == chosen


def test_a_grid_is_chosen_per_seed_and_the_control_mirrors_the_choice(fake_training, tmp_path):
    runs = fake_training(by_weight_lr)
    out, fresh = run_seed(MOONS, compare.methods([0.01, 0.04, 0.1]), seed=3, cache=RunCache(str(tmp_path)))
    assert out["ours"][0] == {"weighting": "per_example", "weight_lr": 0.04}
    assert out["ours"][1]["test_accuracy"] == 0.04  # not 0.1, the best test accuracy
    assert out["ours_reversed"][0] == {"weighting": "per_example", "weight_lr": 0.04, "reverse_hypergradient": True}
    reversed_run = runs.trained[-1]
    assert reversed_run.train.reverse_hypergradient and reversed_run.train.weight_lr == 0.04
    assert fresh == 5 and {c.seed for c in runs.trained} == {3}  # base, three η, the control
    assert len(runs.loaded) == 1  # one split per seed


def test_check_methods_refuses_a_repeated_name_or_a_mirror_of_a_later_method():
    with pytest.raises(ValueError, match="Two methods are named 'a'"):
        check_methods([Method("a"), Method("a")])
    with pytest.raises(ValueError, match="must come before it"):
        check_methods([Method("r", mirror="o"), Method("o")])


# ------------------------------------------------------------------------------------------------- the cache
def test_run_cache_saves_and_loads_a_run_by_its_configuration(tmp_path):
    cache = RunCache(str(tmp_path / "cache"))
    config = MOONS.replace(seed=2)
    assert cache.load(config) is None
    saved_arrays = arrays()
    cache.save(config, record(0.25), saved_arrays)
    assert sorted(os.listdir(tmp_path / "cache")) == [f"{config_hash(config)}.json", f"{config_hash(config)}.npz"]
    loaded, loaded_arrays = cache.load(config)
    assert loaded == record(0.25)
    for key, value in saved_arrays.items():
        np.testing.assert_array_equal(loaded_arrays[key], value)
    assert cache.load(config.replace(log_every=1)) is not None  # not part of the result
    assert cache.load(config.replace(seed=3)) is None and cache.load(config.replace(weight_lr=0.5)) is None
    with open(tmp_path / "cache" / f"{config_hash(config)}.json") as f:
        body = json.load(f)
    assert body["provenance"]["config"] == json.loads(config.dumps())


def test_run_cache_refuses_a_file_whose_key_is_not_the_configuration(tmp_path):
    cache = RunCache(str(tmp_path))
    config = MOONS
    cache.save(config, record(0.25), arrays())
    path = tmp_path / f"{config_hash(config)}.json"
    body = json.loads(path.read_text())
    body["key"]["steps"] = config.train.steps + 1  # a hand-edited file, or a hash collision
    path.write_text(json.dumps(body))
    assert cache.load(config) is None


def test_run_cache_keeps_a_diverged_run_with_its_infinite_loss(tmp_path):
    cache = RunCache(str(tmp_path))
    cache.save(MOONS, execute.diverged_record("NaN at step 7"), None)
    loaded, loaded_arrays = cache.load(MOONS)
    assert loaded["validation_loss"] == INF and loaded["diverged"] == "NaN at step 7" and loaded_arrays is None


@pytest.mark.parametrize("damage", ["no_arrays", "missing_key", "ragged", "ood_rows_dropped"])
def test_run_cache_trains_again_when_the_arrays_cannot_stand_for_the_run(tmp_path, damage):
    """A finished run's per-example arrays must be whole, and hold its out-of-distribution rows (a file without
    them once silently removed the OOD AUROC from a study)."""
    config = presets.resolve({"ood_classes": (6, 7, 8, 9), "ood_fraction": 0.5})
    cache = RunCache(str(tmp_path))
    good = arrays(ood=True)
    cache.save(config, record(0.2), good)
    assert cache.load(config) is not None
    damaged = {"no_arrays": None, "missing_key": {k: v for k, v in good.items() if k != "counts"},
               "ragged": {**good, "wrong": good["wrong"][:-1]},
               "ood_rows_dropped": {**good, "ood": np.zeros_like(good["ood"])}}[damage]
    os.remove(cache.paths(config)[1])
    cache.save(config, record(0.2), damaged)
    assert cache.load(config) is None


def test_the_same_configuration_reached_twice_is_trained_once(fake_training, tmp_path):
    """pseudo_label_tuned at λ = 1 is the pseudo_label run; a restart trains nothing."""
    runs = fake_training(by_weight_lr)
    cache = RunCache(str(tmp_path))
    methods = synthetic.methods(tuned_lambda_grid=(0.3, 1.0))
    out, fresh = run_seed(MOONS, methods, seed=0, cache=cache)
    assert fresh == 5 and len(runs.trained) == 5  # supervised, pseudo_label (= tuned @ 1), tuned @ 0.3, ours, reversed
    assert len({config_hash(c) for c in runs.trained}) == 5
    assert out["pseudo_label_tuned"][1] == out["pseudo_label"][1] and out["pseudo_label_tuned"][0]["weight_init"] == 1.0
    _, fresh = run_seed(MOONS, methods, seed=0, cache=cache)
    assert fresh == 0 and len(runs.trained) == 5


def test_a_hypergradient_variant_reads_the_base_runs_of_the_papers_method(fake_training, tmp_path):
    """base and the tuned λ never compute an influence: a variant's study trains ours and the control only."""
    runs = fake_training(by_weight_lr)
    cache = RunCache(str(tmp_path))
    methods = compare.methods([0.04], tuned_lambda_grid=(0.5, 1.0))
    run_seed(MOONS, methods, seed=0, cache=cache)
    trained = len(runs.trained)
    for variant in ({"hypergradient_normalization": "class"}, {"influence": "cg", "influence_scope": "last_block"}):
        _, fresh = run_seed(MOONS.replace(**variant), methods, seed=0, cache=cache)
        assert fresh == 2 and all(c.train.weighting == "per_example" for c in runs.trained[trained:])
        trained = len(runs.trained)


def test_each_seed_loads_each_split_once(fake_training, tmp_path):
    from influence_ssl.studies import ablation

    runs = fake_training(by_weight_lr)
    base = presets.resolve({"dataset": "moons"})
    run_study(base, ablation.methods("weighting", base, label_counts=(4, 6)), [0, 1], RunCache(str(tmp_path)),
              log=lambda line: None)
    assert [d.num_labeled for d in runs.loaded] == [4, 6, 4, 6]  # per seed: one load per label count


# ------------------------------------------------------------------------------------------------ divergence
def diverging(config):
    if config.train.weighting != "none" and config.train.weight_lr >= 0.1:
        return execute.diverged_record("A loss or hypergradient became NaN/Inf at step 7."), None
    return record(abs(config.train.weight_lr - 0.01), 0.9), arrays(config.seed)


def test_a_diverged_run_is_kept_never_chosen_and_reported(fake_training, tmp_path):
    """One NaN run must not stop a study: it is cached as diverged, a grid skips it, and a method whose only
    candidate diverged gets NaN for that seed with the seed named."""
    runs = fake_training(diverging)
    cache = RunCache(str(tmp_path))
    rows = [Method("base", candidates=({"weighting": "none"},)),
            Method("ours", candidates=tuple({"weighting": "per_example", "weight_lr": v} for v in (0.1, 0.04))),
            Method("wild", candidates=({"weighting": "per_example", "weight_lr": 0.3},))]
    lines = []
    per_seed = run_study(MOONS, rows, [0], cache, log=lines.append)
    assert per_seed[0]["ours"][0]["weight_lr"] == 0.04
    trained = len(runs.trained)
    again = run_study(MOONS, rows, [0], cache, log=lines.append)
    assert len(runs.trained) == trained and "0 run(s) trained" in lines[-1]  # the diverged runs were cached too
    summary = results_lib.summarize_methods(again, rows, [0], "test_accuracy")
    assert summary["wild"]["diverged_seeds"] == [0] and math.isnan(summary["wild"]["values"][0])
    assert "diverged_seeds" not in summary["ours"] and summary["ours"]["values"] == [0.9]
    assert "diverged on seeds [0]" in results_lib.format_methods(summary, [0], "test_accuracy")
    assert results_lib.pooled_weights(again, [0], "wild") is None


def test_execute_run_turns_a_divergence_into_a_record(monkeypatch):
    class Diverges:
        def run(self):
            raise TrainingDiverged("A loss became NaN at step 3.")

    monkeypatch.setattr(build, "make_trainer", lambda *args, **kwargs: Diverges())
    result, per_example = execute.run(MOONS, data=None)
    assert per_example is None and result["diverged"] == "A loss became NaN at step 3."
    assert result["validation_loss"] == INF and math.isnan(result["test_accuracy"])
    assert set(result) == set(execute.record_of({"test_accuracy": 0, "validation_accuracy": 0, "validation_loss": 0,
                                                 "history": [], "lambda": {"lambda_mean": 0, "lambda_zero_fraction": 0,
                                                                           "lambda_step_abs_mean_over_run": 0}},
                                                0)) | {"diverged"}  # a record like any other, and what happened


# ------------------------------------------------------------------------------------------ the studies' results
def test_compare_results_pair_every_method_with_base_and_ours_with_the_tuned_lambda(fake_training, tmp_path):
    fake_training(by_weight_lr)
    out = compare.run(MOONS, [0, 1, 2], RunCache(str(tmp_path)), [0.01, 0.04], tuned_lambda_grid=(0.5, 1.0),
                      log=lambda line: None)
    assert (out["format"], out["study"], out["seeds"]) == ("influence_ssl.study/1", "compare", [0, 1, 2])
    assert set(out["methods"]) == {"base", "ours", "ours_reversed", "tuned_single_lambda"}
    assert out["methods"]["ours"]["weight_lr_per_seed"] == [0.04] * 3
    assert out["methods"]["tuned_single_lambda"]["lambda_per_seed"] == [1.0] * 3  # loss 0.5 + |λ - 1|
    assert set(out["paired"]) == {"ours - base", "ours_reversed - base", "tuned_single_lambda - base",
                                  "ours - tuned_single_lambda"}
    row = out["paired"]["ours - base"]
    assert row["mean"] == pytest.approx(0.04 - 0.6) and (row["wins"], row["losses"]) == (0, 3) and "p_holm" in row
    assert len(out["weights"]["auroc_low_weight_vs_wrong_per_seed"]) == 3
    assert out["config"] == MOONS.to_dict()
    assert "ours - base" in compare.format_report(out)


def test_synthetic_results_pair_against_pseudo_label(fake_training, tmp_path):
    fake_training(by_weight_lr)
    out = synthetic.run(MOONS, [0, 1], RunCache(str(tmp_path)), (0.3, 1.0), log=lambda line: None)
    assert (out["study"], out["tuned_lambda_grid"]) == ("synthetic", [0.3, 1.0])
    assert set(out["methods"]) == {"supervised", "pseudo_label", "pseudo_label_tuned", "ours", "ours_reversed"}
    assert set(out["paired"]) == {"ours - pseudo_label", "ours_reversed - pseudo_label",
                                  "pseudo_label_tuned - pseudo_label", "supervised - pseudo_label",
                                  "ours - pseudo_label_tuned"}
    assert out["methods"]["pseudo_label_tuned"]["lambda_per_seed"] == [1.0, 1.0]
    assert "ours - pseudo_label" in synthetic.format_report(out)


def test_the_ood_share_among_the_lowest_weights_counts_ties_by_their_expected_share():
    """40 examples per seed, the lowest 5% = 2: four λ tie at 0 and one of them is OOD, so the expected OOD
    share is 1/4 whatever the rows' order (a pick by row order would say 0 or 1/2); AUROC and each
    hypergradient-count group's OOD share by hand."""
    lam = np.array([0.0] * 4 + [1.0] * 36)
    ood = np.zeros(40, bool)
    ood[[3, 10, 20]] = True  # one of the tied zeros, two among the ones
    pooled = {"lambda": np.tile(lam, 2), "wrong": np.tile(ood, 2), "counts": np.ones(80, int),
              "ood": np.tile(ood, 2), "seed": np.repeat([0, 1], 40)}
    out = results_lib.weight_report(pooled, [0, 1])
    assert out["ood_share_lowest_5pct_per_seed"] == pytest.approx([0.25, 0.25])
    # P(λ_ood < λ_in) + ½ P(tie) over the 3 × 37 pairs: the OOD example at 0 is below the 34 in-distribution
    # ones and ties the 3 zeros; each OOD example at 1 ties the 34 ones.
    expected = ((34 + 0.5 * 3) + 2 * (0.5 * 34)) / (3 * 37)
    assert out["auroc_low_weight_vs_ood_per_seed"] == pytest.approx([expected, expected])
    # Each hypergradient-count group's OOD share, by hand: rows 0, 3 and 10 of the first seed never get a
    # hypergradient (two of them OOD); the other 77 rows, 4 of them OOD, get one; no row gets three.
    pooled["counts"] = np.ones(80, int)
    pooled["counts"][[3, 10, 0]] = 0  # rows 3 and 10 are OOD, row 0 is not
    groups = results_lib.weight_report(pooled, [0, 1])["weights_by_hypergradient_count"]
    assert groups["never"]["ood_share"] == pytest.approx(2 / 3)
    assert groups["1-2"]["ood_share"] == pytest.approx((6 - 2) / 77)
    assert "ood_share" not in groups["3+"]  # an empty group has no share
