"""experiments.weighting_rules on the fake training: every method with its overrides and its choice on
validation, the mirrored controls, the two paired tables, the JSON, the picture, and refusals in one line."""
import json
import re

import pytest
from conftest import arrays, record, refusal, run_main

from influence_ssl.runs.config import value_of
from influence_ssl.studies import weighting_rules
from influence_ssl.studies.results import FORMAT

MODULE = "experiments.weighting_rules"
NAMES = ["base", "base_plus_val", "tuned_lambda", "ours", "reversed", "permuted", "softmatch", "freematch",
         "flexmatch", "uasd", "ours_softmatch"]
# The value each chosen method's validation loss favours, per seed (the grid's other values lose).
BEST = {0: {"weight_lr": 0.01, "weight_init": 0.3, "confidence": 0.9, "uasd_threshold": 0.95},
        1: {"weight_lr": 0.1, "weight_init": 3.0, "confidence": 0.95, "uasd_threshold": 0.8}}
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


def fake_rule(config):
    """Accuracy 0.5 + 0.01 · the row's index + 0.002 · seed; validation loss lowest at BEST[seed] (the tuned λ's
    1.0 is the base run itself, scored alike)."""
    name = method_of(config)
    flag = weighting_rules.CHOSEN.get("tuned_lambda" if name == "base" else name)
    loss = abs(value_of(config, flag) - BEST[config.seed][flag]) if flag else 0.0
    return record(loss, 0.5 + 0.01 * NAMES.index(name) + 0.002 * config.seed), arrays(config.seed)


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
    # base, base_plus_val, tuned λ ×3 (1.0 is base's run), ours ×3, 2 mirrors, 2 rules, flexmatch ×2, uasd ×3,
    # ours_softmatch ×3
    assert TRAINED.findall(stdout) == ["20", "20"]
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
        assert chosen["softmatch"] == {**none, "weighting_rule": "softmatch"}
        assert chosen["freematch"] == {**none, "weighting_rule": "freematch"}
        assert chosen["flexmatch"] == {**none, "weighting_rule": "flexmatch", "confidence": best["confidence"]}
        assert chosen["uasd"] == {**none, "weighting_rule": "uasd", "uasd_threshold": best["uasd_threshold"]}
        assert chosen["ours_softmatch"] == {"weighting": "per_example", "weighting_rule": "softmatch",
                                            "weight_lr": best["weight_lr"]}
    assert methods["uasd"]["uasd_threshold_per_seed"] == [0.95, 0.8]
    assert methods["ours"]["weight_lr_per_seed"] == [0.01, 0.1]
    for j, name in enumerate(NAMES):
        assert methods[name]["values"] == pytest.approx([0.5 + 0.01 * j, 0.502 + 0.01 * j])


def test_the_paired_tables_the_json_and_the_picture(study):
    stdout, data, _, tmp_path = study
    assert (data["format"], data["study"], data["seeds"], data["ours_recipe"]) == (FORMAT, "weighting_rules", [0, 1],
                                                                                   "paper")
    assert {"provenance", "config", "grids", "weights", "rule_weights_auroc", "paired", "paired_vs_ours"} <= set(data)
    assert data["grids"] == {"weight_lr": [0.01, 0.04, 0.1], "weight_init": [0.1, 0.3, 1.0, 3.0],
                             "uasd_threshold": [0.8, 0.9, 0.95], "flexmatch_confidence": [0.9, 0.95]}
    assert list(data["paired"]) == [f"{n} - base" for n in NAMES[1:]]
    assert list(data["paired_vs_ours"]) == [f"{n} - ours" for n in NAMES if n not in ("base", "ours")]
    assert data["paired"]["uasd - base"]["mean"] == pytest.approx(0.01 * NAMES.index("uasd"))
    assert data["paired_vs_ours"]["softmatch - ours"]["mean"] == pytest.approx(0.03)
    assert all("p_holm" in row and row["n"] == 2 for row in data["paired_vs_ours"].values())
    assert 0 <= data["weights"]["auroc_low_weight_vs_wrong"] <= 1
    assert "uasd - base: +9.00" in stdout and "softmatch - ours: +3.00" in stdout
    assert (tmp_path / "plots" / "weighting_rules_digits.png").stat().st_size > 10_000


def test_pseudo_label_is_a_base_the_rules_apply_to(tmp_path, fake_training):
    fake = fake_training(fake_rule)
    run_main(MODULE, ["--algorithm=pseudo_label", "--seeds=1", "--weight_lr_grid=0.01", "--tuned_lambda_grid=0.3",
                      "--uasd_threshold_grid=0.95", "--flexmatch_confidence_grid=0.9", f"--json_out={tmp_path}/p.json",
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
    (["--tuned_lambda_grid="], "Every grid needs a value"),
])
def test_a_bad_flag_is_refused_in_one_line(tmp_path, fake_training, args, message):
    fake = fake_training(fake_rule)
    assert message in refusal(MODULE, [*args, f"--json_out={tmp_path}/x.json", f"--run_cache={tmp_path}/c"])
    assert not fake.trained
