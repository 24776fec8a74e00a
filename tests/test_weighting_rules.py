"""experiments.weighting_rules on the fake training: every method with its overrides and its choice on
validation, the mirrored controls, the two paired tables, the weights' AUROC and rank agreement against
hand-made weights, the JSON, the picture, and refusals in one line."""
import json
import re

import numpy as np
import pytest
from conftest import arrays, record, refusal, run_main

from influence_ssl.runs.config import value_of
from influence_ssl.studies import weighting_rules
from influence_ssl.studies.results import FORMAT

MODULE = "experiments.weighting_rules"
NAMES = ["base", "base_plus_val", "tuned_lambda", "ours", "reversed", "permuted", "softmatch", "freematch",
         "flexmatch", "uasd", "ours_softmatch"]
# The value each chosen method's validation loss favours, per seed (the grid's other values lose).
BEST = {0: {"weight_lr": 0.01, "weight_init": 0.3, "confidence": 0.9, "uasd_threshold": 0.9, "weighting_ema": 0.99},
        1: {"weight_lr": 0.1, "weight_init": 3.0, "confidence": 0.95, "uasd_threshold": 0.7, "weighting_ema": 0.999}}
TRAINED = re.compile(r"seed \d+: \d+ methods, (\d+) run\(s\) trained")


def method_of(config):
    """Which row a configuration belongs to, from its fields."""
    v = lambda name: value_of(config, name)  # noqa: E731
    rule = v("weighting_rule")
    if v("weighting") == "per_example":
        if rule == "softmatch":
            return "ours_softmatch"
        return "reversed" if v("reverse_hypergradient") else "permuted" if v("permute_weights") else "ours"
    if rule != "none":
        return rule
    if v("validation_labeled"):
        return "base_plus_val"
    return "base" if v("weight_init") == 1.0 else "tuned_lambda"


def fake_weights(name, seed):
    """Per-example arrays whose rule weights are known detectors: SoftMatch's weight is ours' λ itself (ρ = 1),
    FreeMatch's its negative (ρ = -1), FlexMatch's 0 exactly on the wrong pseudo-labels (AUROC 1), UASD's 1
    exactly there (AUROC 0); the fixed mask keeps every example (weight 1)."""
    a = arrays(seed)
    a["rule_weight"] = {"softmatch": a["lambda"], "freematch": -a["lambda"], "flexmatch": (~a["wrong"]) * 1.0,
                        "uasd": a["wrong"] * 1.0}.get(name, np.ones(len(a["lambda"])))
    return a


def fake_rule(config):
    """Accuracy 0.5 + 0.01 · the row's index + 0.002 · seed; validation loss lowest at BEST[seed] (the tuned λ's
    1.0 is the base run itself, scored alike); ours_softmatch's η and SoftMatch's m both count."""
    name = method_of(config)
    flags = [weighting_rules.CHOSEN.get("tuned_lambda" if name == "base" else name)]
    flags += ["weighting_ema"] if name == "ours_softmatch" else []
    loss = sum(abs(value_of(config, f) - BEST[config.seed][f]) for f in flags if f)
    return record(loss, 0.5 + 0.01 * NAMES.index(name) + 0.002 * config.seed), fake_weights(name, config.seed)


@pytest.fixture()
def study(tmp_path, fake_training):
    fake = fake_training(fake_rule)
    stdout = run_main(MODULE, ["--dataset=digits", "--num_labeled=20", "--seeds=2", "--first_seed=0",
                               f"--json_out={tmp_path}/w.json", f"--plot_dir={tmp_path}/plots",
                               f"--run_cache={tmp_path}/cache"])
    return stdout, json.loads((tmp_path / "w.json").read_text()), fake, tmp_path


def test_every_method_runs_with_its_overrides_and_its_choice_on_validation(study):
    stdout, data, fake, _ = study
    methods = data["methods"]
    assert list(methods) == NAMES
    for config in fake.trained:
        assert (config.algorithm.algorithm, config.data.dataset, config.data.num_labeled) == ("fixmatch", "digits", 20)
    # base, base_plus_val, tuned λ ×3 (1.0 is base's run), ours ×3, 2 mirrors, softmatch, freematch and
    # flexmatch ×2, uasd ×3, ours_softmatch ×3
    assert TRAINED.findall(stdout) == ["22", "22"]
    none = {"weighting": "none"}
    for i, seed in enumerate((0, 1)):
        best = BEST[seed]
        chosen = {name: methods[name]["chosen"][i] for name in NAMES}
        assert chosen["base"] == none
        assert chosen["base_plus_val"] == {**none, "validation_labeled": True}
        assert chosen["tuned_lambda"] == {**none, "weight_init": best["weight_init"]}
        assert chosen["ours"] == {"weighting": "per_example", "weight_lr": best["weight_lr"]}
        assert chosen["reversed"] == {**chosen["ours"], "reverse_hypergradient": True}
        assert chosen["permuted"] == {**chosen["ours"], "permute_weights": True}
        assert chosen["softmatch"] == {**none, "weighting_rule": "softmatch", "weighting_ema": best["weighting_ema"]}
        assert chosen["freematch"] == {**none, "weighting_rule": "freematch", "weighting_ema": best["weighting_ema"]}
        assert chosen["flexmatch"] == {**none, "weighting_rule": "flexmatch", "confidence": best["confidence"]}
        assert chosen["uasd"] == {**none, "weighting_rule": "uasd", "uasd_threshold": best["uasd_threshold"]}
        # at SoftMatch's chosen m
        assert chosen["ours_softmatch"] == {"weighting": "per_example", "weighting_rule": "softmatch",
                                            "weighting_ema": best["weighting_ema"], "weight_lr": best["weight_lr"]}
    assert methods["uasd"]["uasd_threshold_per_seed"] == [0.9, 0.7]
    assert methods["freematch"]["weighting_ema_per_seed"] == [0.99, 0.999]
    assert methods["ours"]["weight_lr_per_seed"] == [0.01, 0.1]
    for j, name in enumerate(NAMES):
        assert methods[name]["values"] == pytest.approx([0.5 + 0.01 * j, 0.502 + 0.01 * j])


def test_the_paired_tables_the_json_and_the_picture(study):
    stdout, data, _, tmp_path = study
    assert (data["format"], data["study"], data["seeds"], data["ours_recipe"]) == (FORMAT, "weighting_rules", [0, 1],
                                                                                   "paper")
    assert {"provenance", "config", "grids", "weights", "scores", "paired_scores", "rank_agreement", "paired",
            "paired_vs_ours"} <= set(data)
    assert data["grids"] == {"weight_lr": [0.01, 0.04, 0.1], "weight_init": [0.1, 0.3, 1.0, 3.0],
                             "uasd_threshold": [0.7, 0.8, 0.9], "flexmatch_confidence": [0.9, 0.95],
                             "weighting_ema": [0.999, 0.99]}
    assert list(data["paired"]) == [f"{n} - base" for n in NAMES[1:]]
    assert list(data["paired_vs_ours"]) == [f"{n} - ours" for n in NAMES if n not in ("base", "ours")]
    assert data["paired"]["uasd - base"]["mean"] == pytest.approx(0.01 * NAMES.index("uasd"))
    assert data["paired_vs_ours"]["softmatch - ours"]["mean"] == pytest.approx(0.03)
    assert all("p_holm" in row and row["n"] == 2 for row in data["paired_vs_ours"].values())
    # λ on top of SoftMatch against SoftMatch alone (the fake accuracies step by 0.01 per row of NAMES).
    assert list(data["paired_on_rule"]) == ["ours_softmatch - softmatch"]
    on_rule = data["paired_on_rule"]["ours_softmatch - softmatch"]
    assert on_rule["mean"] == pytest.approx(0.01 * (NAMES.index("ours_softmatch") - NAMES.index("softmatch")))
    assert 0 <= data["weights"]["auroc_low_weight_vs_wrong"] <= 1
    assert "uasd - base: +9.00" in stdout and "softmatch - ours: +3.00" in stdout
    assert "ours_softmatch - softmatch: +" in stdout.split("against the rule alone")[1]
    assert (tmp_path / "plots" / "w.png").stat().st_size > 10_000  # named as its JSON


def test_the_weights_as_detectors_and_their_rank_agreement_with_ours(study):
    stdout, data, _, _ = study
    scores, ranks = data["scores"], data["rank_agreement"]
    assert list(scores) == ["ours λ", "reversed λ", "permuted λ", "ours_softmatch λ"] + [
        f"{n} w" for n in ("base", "softmatch", "freematch", "flexmatch", "uasd", "ours_softmatch")]
    assert scores["flexmatch w"]["auroc_wrong"] == [1.0, 1.0] and scores["uasd w"]["auroc_wrong"] == [0.0, 0.0]
    assert scores["base w"]["auroc_wrong"] == [0.5, 0.5]  # a weight shared by all ranks nothing
    a = arrays(0)
    wrong, lam = a["wrong"], a["lambda"]
    by_pairs = np.mean([[float(x < y) + 0.5 * (x == y) for y in lam[~wrong]] for x in lam[wrong]])
    assert scores["ours λ"]["auroc_wrong"][0] == pytest.approx(by_pairs)  # P(λ_wrong < λ_right), counted
    assert "auroc_ood" not in scores["ours λ"]  # no OOD rows in this setting
    table = data["paired_scores"]["auroc_wrong"]
    assert list(table) == [f"{n} w - ours λ" for n in ("base", "softmatch", "freematch", "flexmatch", "uasd")] + [
        f"{n} λ - ours λ" for n in ("reversed", "permuted", "ours_softmatch")]
    assert table["flexmatch w - ours λ"]["mean"] == pytest.approx(1.0 - np.mean(scores["ours λ"]["auroc_wrong"]))
    assert ranks["softmatch"]["spearman_per_seed"] == pytest.approx([1.0, 1.0])
    assert ranks["freematch"]["spearman_per_seed"] == pytest.approx([-1.0, -1.0])
    assert np.isnan(ranks["base"]["spearman_mean"])  # the mask kept everything: no ranking
    # UASD's 0/1 weight: two bins; ours' mean λ in each, pooled over both seeds, counted by hand.
    pooled = [arrays(s) for s in (0, 1)]
    lam, wrong = np.concatenate([p["lambda"] for p in pooled]), np.concatenate([p["wrong"] for p in pooled])
    assert ranks["uasd"]["weight_bins"] == [[0.0, 0.0], [1.0, 1.0]]
    assert ranks["uasd"]["count_in_bin"] == [int((~wrong).sum()), int(wrong.sum())]
    assert ranks["uasd"]["lambda_mean_in_bin"] == pytest.approx([lam[~wrong].mean(), lam[wrong].mean()])
    assert "flexmatch w" in stdout and "softmatch  ρ = +1.000" in stdout
    assert "learned λ (ours): wrong pseudo-labels" in stdout


def test_pseudo_label_is_a_base_the_rules_apply_to(tmp_path, fake_training):
    fake = fake_training(fake_rule)
    run_main(MODULE, ["--algorithm=pseudo_label", "--seeds=1", "--weight_lr_grid=0.01", "--tuned_lambda_grid=0.3",
                      "--uasd_threshold_grid=0.95", "--flexmatch_confidence_grid=0.9", "--weighting_ema_grid=0.99",
                      f"--json_out={tmp_path}/p.json",
                      "--plot_dir=", f"--run_cache={tmp_path}/cache"])
    assert {c.algorithm.algorithm for c in fake.trained} == {"pseudo_label"}
    assert len(fake.trained) == len(NAMES)  # one candidate per row
    assert not (tmp_path / "plots").exists()


@pytest.mark.parametrize("args, message", [
    (["--algorithm=uda"], "apply to FixMatch and Pseudo-Label on images, not --algorithm=uda"),
    (["--dataset=moons", "--algorithm=pseudo_label"], "on images, not --algorithm=pseudo_label on --dataset=moons"),
    (["--weighting_rule=softmatch"], "sets --weighting_rule per method"),
    (["--recipe=authors_code"], "leave --recipe at paper"),
    (["--uasd_threshold_grid=0.9,1.5"], "--uasd_threshold_grid must hold thresholds in [0, 1]"),
    (["--flexmatch_confidence_grid=x"], "--flexmatch_confidence_grid must be a list of numbers"),
    (["--weighting_ema_grid=0.99,1"], "--weighting_ema_grid must hold momenta in [0, 1), got 0.99,1."),
    (["--tuned_lambda_grid="], "Every grid needs a value"),
])
def test_a_bad_flag_is_refused_in_one_line(tmp_path, fake_training, args, message):
    fake = fake_training(fake_rule)
    assert message in refusal(MODULE, [*args, f"--json_out={tmp_path}/x.json", f"--run_cache={tmp_path}/c"])
    assert not fake.trained


def test_a_continuous_weight_is_binned_by_its_quantiles():
    weight = np.arange(100, dtype=float)
    lam = 2 * weight
    out = weighting_rules._binned(weight, lam)
    assert out["count_in_bin"] == [10] * 10
    assert out["weight_bins"][0] == pytest.approx([0.0, 9.9]) and out["weight_bins"][-1] == pytest.approx([89.1, 99.0])
    assert out["lambda_mean_in_bin"] == pytest.approx([2 * (10 * i + 4.5) for i in range(10)])
