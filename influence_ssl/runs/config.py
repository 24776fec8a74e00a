"""The configuration of one run: data, model, SSL algorithm and Alg. 1's TrainConfig, as one dataclass tree.

Every leaf field is a command-line flag of the same name (or the name its metadata gives: FixMatch's
--batch, --wd, --ema), defined once by `influence_ssl.runs.flags`. A RunConfig is resolved from presets
(`influence_ssl.runs.presets`) and explicit values, checked by `influence_ssl.runs.checks`, and hashed
(`config_hash`) to name its result: the hash of the configuration, not of the code, is the one cache key.
"""
import dataclasses
import hashlib
import json

from influence_ssl.data.images import IMAGE_DATASETS
from influence_ssl.data.synthetic import SYNTHETIC_DATASETS
from influence_ssl.fields import option
from influence_ssl.ssl.tsa import TSA_SCHEDULES
from influence_ssl.ssl.weighting import WEIGHTING_RULES
from influence_ssl.trainer.config import TrainConfig

TEXT_DATASETS = ("imdb",)
DATASETS = IMAGE_DATASETS + SYNTHETIC_DATASETS + TEXT_DATASETS
ALGORITHMS = ("fixmatch", "uda", "pseudo_label")
ARCHS = ("wrn28_2", "small_cnn", "mlp", "bert")
UDA_PRESETS = ("paper", "current")
RECIPES = ("paper", "authors_code")
AUGMENTS = ("ra", "cta")


def family(dataset):
    """'image', '2d' or 'text': which recipe builds runs of `dataset`."""
    if dataset in SYNTHETIC_DATASETS:
        return "2d"
    return "text" if dataset in TEXT_DATASETS else "image"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = option("digits", "Dataset: digits (scikit-learn, offline), cifar10 / svhn (TFDS, --data_dir), "
                          "the 2-D problems of Sec. 4.1, or imdb (BERT, Table 2).", choices=DATASETS)
    data_dir: str = option(None, "TFDS data directory holding prepared cifar10 / svhn_cropped / imdb_reviews.")
    with_extra: bool = option(False, "SVHN: add the 531,131 'extra' images to the unlabeled set.")
    num_labeled: int = option(4000, "Labeled examples (class-balanced, seeded).")
    num_validation: int = option(1024, "Validation examples, disjoint from the labeled set (paper: 1024).")
    num_unlabeled: int = option(1000, "2-D problems: unlabeled examples (Sec. 4.1: 1000).")
    num_test: int = option(10_000, "2-D problems: test examples.")
    ood_classes: tuple = option((), "Classes held out of labeled, validation and test; their images go into the "
                                "unlabeled set as out-of-distribution examples (e.g. 6,7,8,9 on digits).")
    ood_fraction: float = option(0.0, "Share of the unlabeled set that is out of distribution, in [0, 1).")
    ood_noise: bool = option(False, "The out-of-distribution unlabeled examples are uniform-noise images.")
    validation_labeled: bool = option(False, "Control (base_plus_val): the validation examples are labeled training "
                                      "examples too, the labels a learned λ uses given to the base algorithm.")

    @property
    def ood(self):
        return bool(self.ood_classes) or self.ood_noise


@dataclasses.dataclass(frozen=True)
class TextConfig:
    bert_dir: str = option(None, "IMDb: BERT folder, Google's uncased_L-12_H-768_A-12 (bert_config.json, "
                           "bert_model.ckpt.*, vocab.txt) or a transformers one (config.json, tf_model.h5, vocab.txt).")
    imdb_dir: str = option(None, "IMDb: the raw aclImdb folder (train/{pos,neg,unsup}, test/{pos,neg}); or give "
                           "--data_dir holding TFDS imdb_reviews.")
    max_seq_length: int = option(128, "IMDb: WordPiece tokens per review incl. [CLS] and [SEP] (the tail is kept); "
                                 "the paper's 128, up to 512.")
    aug: str = option("bt-0.9", "IMDb: augmentation of the unlabeled reviews, made once before training: "
                      "bt-<temperature> (paraphrases from --bt_file) or tf_idf-<p> (UDA's TF-IDF word replacement).")
    bt_file: str = option(None, "IMDb, --aug=bt-*: back-translations, one line per unlabeled review in the "
                          "unlabeled order (UDA's imdb_back_trans/unsup_in/sample_0.9/para/para_0.txt with its "
                          "train_id_list.txt order).")
    aug_seed: int = option(0, "IMDb, --aug=tf_idf-*: seed of the word replacement (one copy for all runs).")
    # Where the cache lives does not change a result: not part of the configuration's hash (see `config_hash`).
    text_cache_dir: str = option(None, "IMDb: where the token ids are cached (default $XDG_CACHE_HOME/influence_ssl "
                                 "or ~/.cache/influence_ssl).")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    arch: str = option("small_cnn", "Network: wrn28_2 (CIFAR-10, SVHN), small_cnn (digits), mlp (2-D), bert (IMDb).",
                       choices=ARCHS)


@dataclasses.dataclass(frozen=True)
class AlgorithmConfig:
    algorithm: str = option("fixmatch", "SSL algorithm.", choices=ALGORITHMS)
    confidence: float = option(0.95, "FixMatch / Pseudo-Label confidence threshold τ (>=; Sec. 4.1: 0).")
    uda_softmax_temp: float = option(1.0, "UDA target temperature T.")
    uda_confidence_thresh: float = option(0.0, "UDA confidence mask β (>, 0 = no mask).")
    tsa: str = option("none", "UDA training signal annealing.", choices=TSA_SCHEDULES)
    uda_preset: str = option("paper", "UDA setup: 'paper' = the 2019 GPU setup Ren et al. used, 'current' = UDA "
                             "HEAD.", choices=UDA_PRESETS)
    augment: str = option("ra", "FixMatch strong augmentation: RandAugment or CTAugment.", choices=AUGMENTS)
    cta_frozen: bool = option(False, "--augment=cta: the rates stay uniform, never learned from probes (the authors' "
                              "code).")
    weighting_rule: str = option("none", "FixMatch / Pseudo-Label: a per-example weighting rule in place of the "
                                 "fixed confidence mask, at its paper's defaults (influence_ssl/ssl/weighting.py): "
                                 "SoftMatch's truncated Gaussian, FreeMatch's self-adaptive thresholds, FlexMatch's "
                                 "class-wise thresholds (τ = --confidence), UASD's filter on each example's running "
                                 "mean prediction. Its statistics move in θ steps only.", choices=WEIGHTING_RULES)
    uasd_threshold: float = option(0.9, "--weighting_rule=uasd: an unlabeled example counts while the max of its "
                                   "running mean prediction is >= this.")
    weighting_ema: float = option(0.999, "--weighting_rule=softmatch|freematch: momentum m of the rule's running "
                                  "statistics (USB's --ema_p; their papers' 0.999).")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One run. `uratio` gives the unlabeled batch μ·B of image and text runs (train.unlabeled_batch)."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = dataclasses.field(default_factory=AlgorithmConfig)
    uratio: int = option(7, "Unlabeled ratio μ: unlabeled batch = μ·B (2-D problems: full batches instead).")
    recipe: str = option("paper", "paper (Alg. 1 and 2 as the paper writes them) or authors_code (as the authors' "
                         "code jason718/semi-sup runs them: every switch of docs/deviations.md that applies).",
                         choices=RECIPES)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    @property
    def family(self):
        return family(self.data.dataset)

    @property
    def seed(self):
        return self.train.seed

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """The inverse of to_dict (a saved configuration); missing fields take their defaults."""
        kwargs = {}
        for name, value in values.items():
            if name in SECTIONS:
                value = dict(value)
                if "ood_classes" in value:
                    value["ood_classes"] = tuple(value["ood_classes"])
                value = SECTIONS[name](**value)
            kwargs[name] = value
        return cls(**kwargs)

    def replace(self, **overrides):
        """A copy with leaf fields replaced by their flag names (e.g. replace(weight_lr=0.04, num_labeled=20)),
        the derived batch sizes following (`derive`)."""
        return derive(with_values(self, overrides))

    def dumps(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


SECTIONS = {"data": DataConfig, "text": TextConfig, "model": ModelConfig, "algorithm": AlgorithmConfig,
            "train": TrainConfig}
# Fields that do not change a run's result: left out of its hash.
# The recipe is a preset: its fields are in the configuration.
NOT_HASHED = {("text", "text_cache_dir"), ("train", "log_every"), ("train", "checkpoint_every"), (None, "recipe")}
# Fields that only shape the Λ step: a run without learned weights (weighting=none) never reads them.
LAMBDA_STEP_FIELDS = ("inner_steps", "weight_lr", "weight_warmup", "weight_optimizer", "influence", "influence_scope",
                      "influence_damping", "reverse_hypergradient", "binary_reparam", "hypergradient_normalization",
                      "weight_parametrization", "influence_view", "influence_target_temperature", "weight_batch",
                      "validation_batch",
                      "weight_step_at_start", "validation_draw", "madam_step_count", "madam_epsilon", "madam_rows",
                      "weight_max", "influence_rows", "influence_kernel_only", "influence_hessian_l2",
                      "influence_forward_mode", "permute_weights")


# Part of every hash: raise it when a change of the code changes what an existing configuration computes, so
# that cached runs of the old code are not read as runs of the new.
CACHE_VERSION = 2  # 2: RandAugment and weak augmentation draw a batch's numbers at once


def config_hash(config):
    """A short stable name of everything that decides a run's result (the cache key)."""
    text = json.dumps({"version": CACHE_VERSION, "values": hashed_values(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def hashed_values(config):
    """{flag: value} of the leaves that decide the run's result and differ from RunConfig's defaults (a field
    added later at a default that keeps the old behaviour leaves every hash as it was). A run without learned
    weights has its Λ-step fields at their defaults: the base run of a study of a hypergradient variant is the
    base run of the paper's method."""
    default = RunConfig()
    values = {}
    for name, (section, field) in leaves().items():
        if (section, field.name) in NOT_HASHED:
            continue
        if config.train.weighting == "none" and section == "train" and field.name in LAMBDA_STEP_FIELDS:
            continue
        value = value_of(config, name)
        if value != value_of(default, name):
            values[name] = list(value) if isinstance(value, tuple) else value
    values["unlabeled_batch"] = config.train.unlabeled_batch  # derived, no flag of its own
    return values


def leaves():
    """{flag name: (section or None, field)} of every leaf of RunConfig that has a flag."""
    from influence_ssl.fields import DERIVED, flag_name

    out = {}
    for top in dataclasses.fields(RunConfig):
        if top.name in SECTIONS:
            for field in dataclasses.fields(SECTIONS[top.name]):
                name = flag_name(field)
                if name != DERIVED:
                    assert name not in out, f"two configuration fields share the flag --{name}"
                    out[name] = (top.name, field)
        else:
            out[flag_name(top)] = (None, top)
    return out


def with_values(config, values):
    """`config` with the leaves named by flag in `values` replaced (ValueError for an unknown name)."""
    known = leaves()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"Not configuration fields: {', '.join(unknown)}.")
    by_section = {}
    for name, value in values.items():
        section, field = known[name]
        by_section.setdefault(section, {})[field.name] = value
    top = by_section.pop(None, {})
    sections = {s: dataclasses.replace(getattr(config, s), **v) for s, v in by_section.items()}
    return dataclasses.replace(config, **sections, **top)


def derive(config):
    """`config` with its derived batch sizes: the unlabeled batch is μ·B; the 2-D problems train on full
    batches (every labeled, unlabeled and validation example each step)."""
    train = config.train
    if config.family == "2d":
        train = dataclasses.replace(train, labeled_batch=config.data.num_labeled,
                                    validation_batch=config.data.num_validation,
                                    unlabeled_batch=config.data.num_unlabeled)
    else:
        train = dataclasses.replace(train, unlabeled_batch=config.uratio * train.labeled_batch)
    return dataclasses.replace(config, train=train)


def value_of(config, name):
    """The leaf named by flag `name`."""
    section, field = leaves()[name]
    return getattr(getattr(config, section) if section else config, field.name)
