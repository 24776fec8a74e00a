"""influence_ssl.runs in-process: the presets, the configuration's hash and its normalisation, replace and the
derived batches, the saved form's round trip, the generated flags, and every check's one-line message."""
import ast
import dataclasses
import hashlib
import json
import os

import pytest
from conftest import ROOT, config_of, fresh_flags

from influence_ssl.runs import checks, presets
from influence_ssl.runs import flags as run_flags
from influence_ssl.runs.config import (
    CACHE_VERSION,
    LAMBDA_STEP_FIELDS,
    NOT_HASHED,
    RunConfig,
    config_hash,
    hashed_values,
    leaves,
)
from influence_ssl.trainer import ConfigError, TrainConfig


# ------------------------------------------------------------------------------------------------ presets
def test_digits_fixmatch_is_the_default_at_cpu_scale():
    c = presets.resolve()
    t = c.train
    assert (c.data.dataset, c.algorithm.algorithm, c.model.arch) == ("digits", "fixmatch", "small_cnn")
    assert (t.steps, t.labeled_batch, c.uratio, t.unlabeled_batch, t.lr) == (1000, 32, 3, 96, 0.03)
    assert (c.data.num_labeled, c.data.num_validation, t.validation_batch) == (50, 200, 200)
    assert (t.inner_steps, t.weight_lr, t.weight_warmup, t.weight_init) == (10, 0.04, 300, 1.0)
    # From FixMatch's preset, under the digits scale: its optimizer, decay and schedule.
    assert (t.optimizer, t.weight_decay, t.lr_schedule) == ("nesterov", 5e-4, "fixmatch_cosine")


@pytest.mark.parametrize("explicit, lr_warmup, rampup, ema", [
    ({"algorithm": "fixmatch"}, 0, 0, 0.99),
    ({"algorithm": "pseudo_label"}, 0, 400, 0.99),  # the ramp over the first 40% of 2^20 steps -> of 1000
    ({"algorithm": "uda"}, 50, 0, 0.0),  # 20k warm-up steps of 400k -> 50 of 1000; UDA's paper setup has no EMA
    ({"algorithm": "uda", "uda_preset": "current"}, 0, 0, 0.99),  # 0.9999 cannot follow 1000 steps
])
def test_digits_scales_each_algorithm_preset_to_its_length(explicit, lr_warmup, rampup, ema):
    t = presets.resolve({"dataset": "digits", **explicit}).train
    assert (t.steps, t.lr_warmup, t.unlabeled_rampup, t.ema_decay) == (1000, lr_warmup, rampup, ema)


@pytest.mark.parametrize("algorithm, steps, lr_warmup, rampup, ema", [
    ("fixmatch", 2**20, 0, 0, 0.999), ("pseudo_label", 2**20, 0, int(0.4 * 2**20), 0.999),
    ("uda", 400_000, 20_000, 0, 0.0)])
def test_paper_scale_presets_are_not_scaled(algorithm, steps, lr_warmup, rampup, ema):
    c = presets.resolve({"dataset": "cifar10", "algorithm": algorithm})
    t = c.train
    assert (t.steps, t.lr_warmup, t.unlabeled_rampup, t.ema_decay) == (steps, lr_warmup, rampup, ema)
    assert (c.model.arch, t.validation_batch, t.weight_warmup, t.weight_lr) == ("wrn28_2", 320, 20_000, 0.01)


def test_explicit_values_win_over_every_preset():
    t = presets.resolve({"algorithm": "uda", "lr_warmup": 7, "ema": 0.5, "steps": 20}).train
    assert (t.lr_warmup, t.ema_decay, t.steps) == (7, 0.5, 20)


@pytest.mark.parametrize("explicit, weight_init", [
    ({"algorithm": "uda", "dataset": "cifar10", "num_labeled": 250}, 5.0),  # App. D
    ({"algorithm": "uda", "dataset": "cifar10", "num_labeled": 250, "weight_init": 1.0}, 1.0),  # unless given
    ({"algorithm": "uda", "dataset": "cifar10", "num_labeled": 4000}, 1.0),
    ({"algorithm": "uda", "dataset": "svhn", "num_labeled": 250}, 1.0),
    ({"algorithm": "fixmatch", "dataset": "cifar10", "num_labeled": 250}, 1.0),
    ({"algorithm": "uda", "dataset": "digits", "num_labeled": 250}, 1.0),
])
def test_uda_on_cifar10_with_250_labels_starts_lambda_at_5_unless_given(explicit, weight_init):
    assert presets.resolve(explicit).train.weight_init == weight_init


@pytest.mark.parametrize("dataset", ["moons", "circles"])
def test_the_2d_problems_train_on_full_batches(dataset):
    c = presets.resolve({"dataset": dataset})
    t = c.train
    assert (c.algorithm.algorithm, c.algorithm.confidence, c.model.arch, t.optimizer) == ("pseudo_label", 0.0,
                                                                                          "mlp", "adam")
    assert (t.labeled_batch, t.unlabeled_batch, t.validation_batch) == (10, 1000, 30)  # Sec. 4.1's sizes
    smaller = presets.resolve({"dataset": dataset, "num_labeled": 4, "num_unlabeled": 60, "num_validation": 12})
    assert (smaller.train.labeled_batch, smaller.train.unlabeled_batch, smaller.train.validation_batch) == (4, 60, 12)


def test_imdb_preset_is_ren_et_als_text_setup():
    c = presets.resolve({"dataset": "imdb"})
    t = c.train
    assert (c.algorithm.algorithm, c.model.arch, c.algorithm.tsa, c.algorithm.uda_softmax_temp) == ("uda", "bert",
                                                                                                  "linear", 1.0)
    assert (t.steps, t.labeled_batch, t.unlabeled_batch, t.optimizer, t.lr, t.weight_decay, t.clip_norm) == (
        10_000, 8, 32, "adamw", 2e-5, 0.01, 1.0)
    assert (t.lr_schedule, t.lr_warmup, t.ema_decay, t.eval_every) == ("bert_linear", 1000, 0.0, 500)
    assert (t.inner_steps, t.weight_lr, t.weight_init, t.weight_warmup) == (5, 0.01, 1.0, 1000)
    assert (c.data.num_labeled, c.data.num_validation, t.validation_batch) == (20, 20, 20)


# ------------------------------------------------------------------------------------------- the hash
def test_config_hash_is_the_canonical_json_of_what_decides_the_result():
    c = presets.resolve()
    text = json.dumps({"version": CACHE_VERSION, "values": hashed_values(c)}, sort_keys=True)
    assert config_hash(c) == hashlib.sha256(text.encode()).hexdigest()[:20]
    # Pinned: a change here makes every run in every run cache train again. Change it on purpose only.
    assert config_hash(c) == GOLDEN_DIGITS_HASH


GOLDEN_DIGITS_HASH = "a0fe70e7b7c588767903"


def test_config_hash_does_not_depend_on_how_the_configuration_was_reached():
    c = presets.resolve({"dataset": "digits", "ood_classes": (6, 7, 8, 9), "ood_fraction": 0.5})
    assert config_hash(c.replace(weight_lr=0.1, seed=3)) == config_hash(c.replace(seed=3).replace(weight_lr=0.1))
    assert config_hash(c.replace(seed=3, weight_lr=0.1)) == config_hash(c.replace(weight_lr=0.1, seed=3))
    saved = json.loads(c.dumps())  # a list for ood_classes, as a cache file holds it
    assert config_hash(RunConfig.from_dict(saved)) == config_hash(c)
    assert config_hash(c.replace(seed=1)) != config_hash(c) != config_hash(c.replace(weight_lr=0.1))


OTHER_VALUES = {"inner_steps": 7, "weight_lr": 0.5, "weight_warmup": 3, "weight_optimizer": "sgd", "influence": "cg",
                "influence_scope": "last_block", "influence_damping": 0.123, "reverse_hypergradient": True,
                "binary_reparam": True, "hypergradient_normalization": "class",
                "weight_parametrization": "softplus", "influence_view": "weak", "influence_target_temperature": 2.0,
                "weight_batch": "theta", "validation_batch": 17, "weight_step_at_start": True,
                "validation_draw": "replacement", "madam_step_count": "per_example", "madam_epsilon": 1e-8,
                "madam_rows": "sampled", "weight_max": 2.0, "influence_rows": "raw_ce", "influence_kernel_only": True,
                "influence_hessian_l2": "unit", "influence_forward_mode": "training", "permute_weights": True}


@pytest.mark.parametrize("field", LAMBDA_STEP_FIELDS)
def test_a_run_without_learned_weights_hashes_its_lambda_step_fields_at_their_defaults(field):
    """The base run of a study of a hypergradient variant is the base run of the paper's method."""
    c = presets.resolve({"dataset": "digits"})  # not a 2-D problem, whose V' is always the whole set
    changed = {field: OTHER_VALUES[field]}
    assert config_hash(c.replace(weighting="none", **changed)) == config_hash(c.replace(weighting="none"))
    assert config_hash(c.replace(**changed)) != config_hash(c)  # ours reads them
    assert config_hash(c.replace(weighting="single", **changed)) != config_hash(c.replace(weighting="single"))


def test_every_lambda_step_field_has_another_value_here():
    assert set(OTHER_VALUES) == set(LAMBDA_STEP_FIELDS)
    defaults = TrainConfig()
    assert all(getattr(defaults, name) != value for name, value in OTHER_VALUES.items())


def test_what_does_not_change_a_result_does_not_change_the_hash():
    c = presets.resolve()
    for changed in ({"log_every": 1}, {"checkpoint_every": 7}):
        assert config_hash(c.replace(**changed)) == config_hash(c)
    imdb = presets.resolve({"dataset": "imdb"})
    assert config_hash(imdb.replace(text_cache_dir="/elsewhere")) == config_hash(imdb)
    assert {name for _, name in NOT_HASHED} == {"log_every", "checkpoint_every", "text_cache_dir", "recipe"}
    # What does: the evaluation points (the validation curve), λ of a fixed-λ run, the seed.
    none = c.replace(weighting="none")
    for changed in ({"eval_every": 7}, {"weight_init": 0.5}, {"seed": 1}):
        assert config_hash(none.replace(**changed)) != config_hash(none)


# ------------------------------------------------------------------------------- replace, derive, saved form
def test_replace_derives_the_unlabeled_batch():
    c = presets.resolve()
    assert c.replace(batch=10).train.unlabeled_batch == 30  # μ·B with μ = 3
    assert c.replace(uratio=5).train.unlabeled_batch == 160
    assert c.replace(batch=10, uratio=2).train.unlabeled_batch == 20
    assert c.train.unlabeled_batch == 96  # a copy: the original is unchanged
    moons = presets.resolve({"dataset": "moons"})
    assert moons.replace(num_unlabeled=60).train.unlabeled_batch == 60  # full batches follow the sizes


def test_replace_takes_flag_names_only():
    c = presets.resolve()
    assert c.replace(wd=0.1, ema=0.5, batch=8).train.weight_decay == 0.1
    with pytest.raises(ValueError, match="Not configuration fields: unlabeled_batch"):
        c.replace(unlabeled_batch=5)  # derived: set --batch and --uratio
    with pytest.raises(ValueError, match="Not configuration fields: weight_decay"):
        c.replace(weight_decay=0.1)


@pytest.mark.parametrize("explicit", [{}, {"dataset": "moons"}, {"dataset": "imdb", "text_cache_dir": "/c"},
                                      {"ood_classes": (6, 7), "ood_fraction": 0.5, "weighting": "single"}])
def test_from_dict_inverts_to_dict_also_through_json(explicit):
    c = presets.resolve(explicit).replace(seed=4)
    assert RunConfig.from_dict(c.to_dict()) == c
    assert RunConfig.from_dict(json.loads(c.dumps())) == c


def test_from_dict_fills_missing_fields_with_their_defaults():
    c = RunConfig.from_dict({"data": {"dataset": "moons"}, "train": {"steps": 5}})
    assert c.data == dataclasses.replace(RunConfig().data, dataset="moons")
    assert c.train == TrainConfig(steps=5) and c.algorithm == RunConfig().algorithm


# ------------------------------------------------------------------------------------------------ flags
def test_every_leaf_is_one_flag_defaulting_to_the_presets():
    fv = fresh_flags()
    names = set(leaves())
    assert {"batch", "wd", "ema", "uratio", "seed", "dataset", "confidence"} <= names
    assert not {"labeled_batch", "unlabeled_batch", "weight_decay", "ema_decay"} & names
    assert all(fv[name].value is None for name in names)
    run_flags.define(fv)  # again: nothing is redefined
    assert run_flags.explicit_values(fv) == {}


def test_explicit_flags_override_an_entry_points_defaults():
    fv = fresh_flags(["--ood_classes=6,7", "--steps=9"])
    assert run_flags.explicit_values(fv, defaults={"steps": 5, "dataset": "digits"}) == {
        "ood_classes": (6, 7), "steps": 9, "dataset": "digits"}
    assert config_of([], defaults={"dataset": "moons"}).data.dataset == "moons"
    assert config_of(["--dataset=circles"], defaults={"dataset": "moons"}).data.dataset == "circles"


# ------------------------------------------------------------------------------------------------ checks
# One case per message of influence_ssl/runs/checks.py (CHECKS), then the flags' and TrainConfig's.
CHECKS = [
    (["--uda_softmax_temp=0.5"], "--uda_softmax_temp does not apply to --algorithm=fixmatch: remove it."),
    (["--cta_frozen"], "--cta_frozen applies to --augment=cta, not --augment=ra."),
    (["--num_labeled=0"], "--num_labeled must be >= 1, got 0."),
    (["--weight_lr=nan"], "--weight_lr must be a finite number, got nan."),
    (["--confidence=1.5"], "--confidence must be in [0, 1], got 1.5."),
    (["--algorithm=uda", "--uda_confidence_thresh=1"], "--uda_confidence_thresh must be in [0, 1), got 1.0."),
    (["--algorithm=uda", "--uda_softmax_temp=0"], "--uda_softmax_temp must be > 0, got 0.0."),
    (["--weighting_rule=uasd", "--uasd_threshold=1.5"], "--uasd_threshold must be in [0, 1], got 1.5."),
    (["--weighting_rule=softmatch", "--weighting_ema=1"], "--weighting_ema must be in [0, 1), got 1.0."),
    (["--arch=mlp"], "--arch=mlp does not fit --dataset=digits (use wrn28_2 or small_cnn)."),
    (["--dataset=moons", "--algorithm=fixmatch"], "--dataset=moons runs Pseudo-Label (Sec. 4.1), not "
                                                  "--algorithm=fixmatch."),
    (["--dataset=moons", "--num_labeled=1"], "--num_labeled must be >= 2 (one example of each class)."),
    (["--dataset=imdb", "--algorithm=fixmatch"], "--dataset=imdb runs --algorithm=uda only, not fixmatch."),
    (["--with_extra"], "--with_extra applies to --dataset=svhn only, not digits."),
    (["--ood_fraction=1.5"], "--ood_fraction must be in [0, 1), got 1.5."),
    (["--ood_fraction=0.5"], "--ood_fraction needs --ood_classes or --ood_noise."),
    (["--binary_reparam"], "--binary_reparam needs two classes; digits has 10."),
    (["--dataset=imdb", "--max_seq_length=2"], "--max_seq_length must be in [3, 512], got 2."),
    (["--dataset=imdb"], "--aug=bt-0.9 needs --bt_file (UDA's back-translations), or use --aug=tf_idf-0.2."),
    (["--dataset=imdb", "--aug=tf_idf-1.5"], "--aug=tf_idf-1.5: the replacement rate must be in [0, 1]."),
    (["--dataset=imdb", "--aug=eda"], "--aug must be bt-<temperature> or tf_idf-<p>, got 'eda'."),
]
OTHERS = [
    (["--ood_classes=6,x"], "--ood_classes must be class numbers, got 6,x."),  # runs/flags.py
    (["--dataset=moons", "--batch=8"], "--batch does not apply to --dataset=moons: remove it."),
    # TrainConfig.validate, named by the flags (--batch, --wd, --ema), not the fields.
    (["--batch=0"], "--batch must be >= 1, got 0."),
    (["--wd=-1"], "--wd must be >= 0, got -1.0."),
    (["--ema=1"], "--ema must be in [0, 1), got 1.0."),
    (["--validation_batch=300"], "--validation_batch=300 is larger than the 200 validation examples."),
    (["--algorithm=uda", "--confidence=0.5"], "--confidence does not apply to --algorithm=uda: remove it."),
    (["--bert_dir=/b"], "--bert_dir does not apply to --dataset=digits: remove it."),
    (["--dataset=moons", "--augment=cta"], "--augment does not apply to --dataset=moons: remove it."),
    (["--lr=inf"], "--lr must be a finite number, got inf."),
    (["--uratio=0"], "--uratio must be >= 1, got 0."),
    # The switches of the authors' code: refused where they cannot apply.
    (["--dataset=moons", "--influence_forward_mode=training"],
     "--influence_forward_mode does not apply to --dataset=moons: remove it."),
    (["--algorithm=uda", "--cta_frozen"], "--cta_frozen does not apply to --algorithm=uda: remove it."),
    (["--influence_rows=raw_ce", "--influence_scope=last_block", "--influence=cg"],
     "--influence_rows=raw_ce is implemented for --influence_scope=head only."),
    (["--influence_rows=raw_ce", "--influence_view=weak"], "--influence_rows=raw_ce makes its own rows: it cannot be "
     "combined with --influence_view or --influence_target_temperature."),
    (["--dataset=moons", "--influence_kernel_only", "--binary_reparam"],
     "--influence_kernel_only and --binary_reparam cannot be combined."),
    (["--weight_max=0.5"], "--weight_max=0.5 is below --weight_init=1.0."),
    (["--weight_max=2", "--weight_parametrization=softplus"],
     "--weight_max bounds the projection; with --weight_parametrization=softplus it does not apply."),
    (["--madam_rows=sampled", "--weight_optimizer=adam"], "--madam_rows applies to --weight_optimizer=madam only."),
    (["--madam_epsilon=-1"], "--madam_epsilon must be >= 0, got -1.0."),
    # The weighting rules: FixMatch and Pseudo-Label on images only; a rule's own flag only with it.
    (["--algorithm=uda", "--weighting_rule=softmatch"],
     "--weighting_rule does not apply to --algorithm=uda: remove it."),
    (["--dataset=moons", "--weighting_rule=uasd", "--uasd_threshold=0.5"],
     "--uasd_threshold does not apply to --dataset=moons: remove it."),
    (["--dataset=imdb", "--weighting_rule=flexmatch"], "--weighting_rule does not apply to --dataset=imdb: remove it."),
    (["--weighting_rule=softmatch", "--confidence=0.9"],
     "--confidence does not apply to --weighting_rule=softmatch: remove it."),
    (["--uasd_threshold=0.5"], "--uasd_threshold does not apply to --weighting_rule=none: remove it."),
    (["--weighting_rule=flexmatch", "--weighting_ema=0.99"],
     "--weighting_ema does not apply to --weighting_rule=flexmatch: remove it."),
]


@pytest.mark.parametrize("args, message", CHECKS + OTHERS, ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_each_check_refuses_in_one_line(args, message):
    with pytest.raises(ConfigError) as caught:
        config_of(args)
    assert str(caught.value) == message


def test_every_message_of_the_checks_module_has_its_case():
    """A check added to influence_ssl/runs/checks.py needs its case in CHECKS (counted by raise statement)."""
    with open(os.path.join(ROOT, "influence_ssl", "runs", "checks.py")) as f:
        tree = ast.parse(f.read())
    raises = [node for node in ast.walk(tree) if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
              and getattr(node.exc.func, "id", None) == "ConfigError"]
    assert len(raises) == len(CHECKS)


def test_a_flag_given_at_the_default_value_is_not_refused():
    """Flag files may spell out defaults: an ignored flag at RunConfig's default passes."""
    assert config_of(["--uda_softmax_temp=1.0", "--tsa=none"]).algorithm.algorithm == "fixmatch"
    assert config_of(["--dataset=moons", "--with_extra=false"]).data.dataset == "moons"


def test_check_takes_the_explicit_values_as_given():
    c = presets.resolve({"dataset": "moons"})
    checks.check(c)  # without explicit values nothing is "ignored"
    with pytest.raises(ConfigError, match="--uratio does not apply to --dataset=moons"):
        checks.check(c, {"uratio": 5})
