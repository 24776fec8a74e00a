"""Checks of a RunConfig before any data is read or model built: each failure is one ConfigError line.

The sizes that depend on the data are checked when the split is made, Alg. 1's fields by TrainConfig.validate.
A flag that the configured path would ignore is refused when it is given with a value other than its default.
"""
import math
import re

from influence_ssl.runs.config import RunConfig, leaves, value_of
from influence_ssl.trainer.config import ConfigError

AUG_PATTERN = re.compile(r"^(bt|tf_idf)-([0-9]*\.?[0-9]+)$")
MAX_POSITIONS = 512  # BERT's position embeddings

# Flags each path does not read.
_TEXT_FLAGS = {"bert_dir", "imdb_dir", "max_seq_length", "aug", "bt_file", "aug_seed", "text_cache_dir"}
# influence_forward_mode: only the image networks have batch norm.
_IMAGE_ONLY = {"with_extra", "ood_classes", "ood_fraction", "ood_noise", "augment", "cta_frozen",
               "influence_forward_mode"}
# The weighting rules are built for the image runs' FixMatch and Pseudo-Label (not UDA's soft targets).
_RULE_FLAGS = {"weighting_rule", "uasd_threshold", "weighting_ema"}
IGNORED_BY_FAMILY = {
    "image": _TEXT_FLAGS | {"num_unlabeled", "num_test"},
    "2d": _TEXT_FLAGS | _IMAGE_ONLY | _RULE_FLAGS | {"data_dir", "batch", "uratio", "validation_batch", "uda_preset"},
    "text": _IMAGE_ONLY | _RULE_FLAGS | {"num_unlabeled", "num_test"},
}
IGNORED_BY_ALGORITHM = {
    "fixmatch": {"uda_softmax_temp", "uda_confidence_thresh", "tsa", "uda_preset"},
    "pseudo_label": {"uda_softmax_temp", "uda_confidence_thresh", "tsa", "uda_preset", "augment", "cta_frozen"},
    "uda": {"confidence", "augment", "cta_frozen"} | _RULE_FLAGS,
}
# A rule replaces the fixed mask: --confidence stays only as FlexMatch's τ.
IGNORED_BY_RULE = {
    "none": {"uasd_threshold", "weighting_ema"},
    "softmatch": {"confidence", "uasd_threshold"},
    "freematch": {"confidence", "uasd_threshold"},
    "flexmatch": {"uasd_threshold", "weighting_ema"},
    "uasd": {"confidence", "weighting_ema"},
}


def aug_spec(aug):
    """("bt" | "tf_idf", number) of an --aug value; ConfigError if malformed."""
    match = AUG_PATTERN.match(aug or "")
    if not match:
        raise ConfigError(f"--aug must be bt-<temperature> or tf_idf-<p>, got {aug!r}.")
    return match.group(1), float(match.group(2))


def check_ignored(config, explicit):
    """ConfigError for an explicit flag, away from its default, that this configuration's path does not read."""
    a = config.algorithm
    reasons = [(IGNORED_BY_FAMILY[config.family], f"--dataset={config.data.dataset}"),
               (IGNORED_BY_ALGORITHM[a.algorithm], f"--algorithm={a.algorithm}")]
    # A rule that is itself refused above leaves the other flags as without a rule.
    rule = "none" if any("weighting_rule" in ignored for ignored, _ in reasons) else a.weighting_rule
    reasons.append((IGNORED_BY_RULE[rule], f"--weighting_rule={rule}"))
    default = RunConfig()
    for name in sorted(set(explicit) & set().union(*(ignored for ignored, _ in reasons))):
        if explicit[name] != value_of(default, name):
            what = next(what for ignored, what in reasons if name in ignored)
            raise ConfigError(f"--{name} does not apply to {what}: remove it.")


def check_numbers(config):
    """Sizes >= 1 and finite floats, for every leaf."""
    for name in ("num_labeled", "num_validation", "num_unlabeled", "num_test", "uratio"):
        if value_of(config, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {value_of(config, name)}.")
    for name, (_, field) in leaves().items():
        value = value_of(config, name)
        if field.type is float and not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ConfigError(f"--{name} must be a finite number, got {value!r}.")


def check_algorithm(config):
    a = config.algorithm
    if not 0 <= a.confidence <= 1:
        raise ConfigError(f"--confidence must be in [0, 1], got {a.confidence}.")
    if a.cta_frozen and a.augment != "cta":
        raise ConfigError(f"--cta_frozen applies to --augment=cta, not --augment={a.augment}.")
    if not 0 <= a.uda_confidence_thresh < 1:
        raise ConfigError(f"--uda_confidence_thresh must be in [0, 1), got {a.uda_confidence_thresh}.")
    if a.uda_softmax_temp <= 0:
        raise ConfigError(f"--uda_softmax_temp must be > 0, got {a.uda_softmax_temp}.")
    if not 0 <= a.uasd_threshold <= 1:
        raise ConfigError(f"--uasd_threshold must be in [0, 1], got {a.uasd_threshold}.")
    if not 0 <= a.weighting_ema < 1:
        raise ConfigError(f"--weighting_ema must be in [0, 1), got {a.weighting_ema}.")


def check_family(config):
    d, kind, arch = config.data, config.family, config.model.arch
    expected = {"2d": ("mlp",), "text": ("bert",), "image": ("wrn28_2", "small_cnn")}[kind]
    if arch not in expected:
        raise ConfigError(f"--arch={arch} does not fit --dataset={d.dataset} (use {' or '.join(expected)}).")
    if kind == "2d" and config.algorithm.algorithm != "pseudo_label":
        raise ConfigError(f"--dataset={d.dataset} runs Pseudo-Label (Sec. 4.1), not "
                          f"--algorithm={config.algorithm.algorithm}.")
    if kind == "2d" and d.num_labeled < 2:
        raise ConfigError("--num_labeled must be >= 2 (one example of each class).")
    if kind == "text" and config.algorithm.algorithm != "uda":
        raise ConfigError(f"--dataset=imdb runs --algorithm=uda only, not {config.algorithm.algorithm}.")
    if d.with_extra and d.dataset != "svhn":
        raise ConfigError(f"--with_extra applies to --dataset=svhn only, not {d.dataset}.")
    if not 0 <= d.ood_fraction < 1:
        raise ConfigError(f"--ood_fraction must be in [0, 1), got {d.ood_fraction}.")
    if d.ood_fraction > 0 and not d.ood:
        raise ConfigError("--ood_fraction needs --ood_classes or --ood_noise.")
    if config.train.binary_reparam and kind == "image":
        raise ConfigError(f"--binary_reparam needs two classes; {d.dataset} has 10.")


def check_text(config):
    t = config.text
    if not 3 <= t.max_seq_length <= MAX_POSITIONS:
        raise ConfigError(f"--max_seq_length must be in [3, {MAX_POSITIONS}], got {t.max_seq_length}.")
    kind, value = aug_spec(t.aug)
    if kind == "bt" and not t.bt_file:
        raise ConfigError(f"--aug={t.aug} needs --bt_file (UDA's back-translations), or use --aug=tf_idf-0.2.")
    if kind == "tf_idf" and not 0 <= value <= 1:
        raise ConfigError(f"--aug={t.aug}: the replacement rate must be in [0, 1].")


def check(config, explicit=None):
    """ConfigError for a configuration that cannot run (before anything is read or built)."""
    check_ignored(config, explicit or {})
    check_numbers(config)
    check_algorithm(config)
    check_family(config)
    if config.family == "text":
        check_text(config)
    num_unlabeled = config.data.num_unlabeled if config.family == "2d" else math.inf
    config.train.validate(config.data.num_labeled, num_unlabeled, config.data.num_validation)
