"""Flags and wiring shared by experiments.train and experiments.compare (image SSL, Sec. 4.2).

Flag names follow FixMatch's (--batch, --uratio, --lr, --wd, --ema, --confidence) and UDA's
(--uda_softmax_temp, --uda_confidence_thresh, --tsa) where they exist. A flag left unset takes the
value of the algorithm's preset below; the presets hold the original codebases' values and the
per-cell flag files in experiments/configs/table1/ hold the paper's.
"""
import dataclasses
import functools
import json
import math
import os

import tensorflow as tf
import tf_keras as keras
from absl import flags

from experiments import variant_flags
from influence_ssl import augment, models
from influence_ssl import data as data_lib
from influence_ssl.ssl import UDA, FixMatch, PseudoLabel
from influence_ssl.ssl.tsa import TSA_SCHEDULES
from influence_ssl.trainer import ConfigError, TrainConfig, Trainer
from influence_ssl.trainer.config import (
    HYPERGRADIENT_VARIANTS,
    INFLUENCE_METHODS,
    INFLUENCE_SCOPES,
    WEIGHT_OPTIMIZERS,
    WEIGHTING_MODES,
)
from influence_ssl.trainer.image_source import AugmentedImageSource

FLAGS = flags.FLAGS
flags.DEFINE_enum("algorithm", "fixmatch", ["fixmatch", "uda", "pseudo_label"], "SSL algorithm.")
flags.DEFINE_enum("dataset", "digits", data_lib.IMAGE_DATASETS + data_lib.SYNTHETIC_DATASETS + ("imdb",),
                  "Dataset (digits: sklearn, offline; imdb: experiments.text_ssl). The 2-D problems of Sec. 4.1 run in experiments.synthetic "
                  "and experiments.ablate only.")
flags.DEFINE_string("data_dir", None, "TFDS data directory holding prepared cifar10 / svhn_cropped.")
flags.DEFINE_bool("with_extra", False, "SVHN: add the 531,131 'extra' images to the unlabeled set.")
flags.DEFINE_integer("num_labeled", None, "Labeled examples (class-balanced, seeded).")
flags.DEFINE_integer("num_validation", None, "Validation examples, disjoint from the labeled set (paper: 1024).")
flags.DEFINE_enum("arch", None, ["wrn28_2", "small_cnn"], "Network (default: wrn28_2, small_cnn for digits).")
flags.DEFINE_enum("uda_preset", "paper", ["paper", "current"],
                  "UDA setup: 'paper' = the 2019 GPU setup Ren et al. used, 'current' = UDA HEAD.")
flags.DEFINE_enum("augment", "ra", ["ra", "cta"], "FixMatch strong augmentation: RandAugment or CTAugment.")
flags.DEFINE_integer("steps", None, "θ training steps (FixMatch: 2^20 = 1024 epochs of 1024 steps).")
flags.DEFINE_integer("batch", None, "Labeled batch B.")
flags.DEFINE_integer("uratio", None, "Unlabeled ratio μ: unlabeled batch = μ·B.")
flags.DEFINE_float("lr", None, "θ learning rate (SGD, Nesterov momentum 0.9).")
flags.DEFINE_float("wd", None, "L2 coefficient (FixMatch: kernels only; UDA: every variable).")
flags.DEFINE_float("ema", None, "EMA decay of the evaluated weights (0: none).")
flags.DEFINE_float("confidence", None, "FixMatch confidence threshold τ (>=).")
flags.DEFINE_float("uda_softmax_temp", None, "UDA target temperature T.")
flags.DEFINE_float("uda_confidence_thresh", None, "UDA confidence mask β (>, 0 = no mask).")
flags.DEFINE_enum("tsa", None, TSA_SCHEDULES, "UDA training signal annealing.")
flags.DEFINE_enum("weighting", "per_example", WEIGHTING_MODES,
                  "per_example (ours), single (one learned λ), none (the base algorithm).")
flags.DEFINE_integer("inner_steps", None, "θ steps per Λ step [N] (paper: 100 UDA, 512 FixMatch).")
flags.DEFINE_float("weight_lr", None, "M-Adam step size of Λ [η] (paper: 0.01).")
flags.DEFINE_float("weight_init", None, "Initial λ (paper: 5 for UDA, CIFAR-10, 250 labels; else 1).")
flags.DEFINE_integer("weight_warmup", None, "θ steps before the first Λ step (paper: 20k).")
flags.DEFINE_enum("weight_optimizer", "madam", WEIGHT_OPTIMIZERS, "Optimizer of Λ (Fig. 4 centre).")
flags.DEFINE_enum("influence", "exact", INFLUENCE_METHODS, "Inverse Hessian (Sec. 4.3).")
flags.DEFINE_enum("influence_scope", "head", INFLUENCE_SCOPES,
                  "head (the paper's method) or last_block (the last residual unit + final BN + head, by HVPs: "
                  "the Sec. 4.3 baselines; use with --influence=neumann|cg).")
flags.DEFINE_bool("binary_reparam", False, "Two classes only: influence on one logit f with logits (f, -f) (App. D).")
variant_flags.define()
flags.DEFINE_integer("validation_batch", None, "Validation batch V' of a Λ step (paper: 320).")
flags.DEFINE_integer("eval_every", None, "Evaluate every this many steps (FixMatch: 1024 = 64 kimg).")
flags.DEFINE_integer("log_every", None, "Progress line every this many steps.")
flags.DEFINE_integer("checkpoint_every", None, "Checkpoint every this many steps.")
flags.DEFINE_list("ood_classes", [], "Classes held out of labeled, validation and test; their images go into the "
                  "unlabeled set as out-of-distribution examples (e.g. 6,7,8,9 on digits).")
flags.DEFINE_float("ood_fraction", 0.0, "Share of the unlabeled set that is out of distribution, in [0, 1).")
flags.DEFINE_bool("ood_noise", False, "The out-of-distribution unlabeled examples are uniform-noise images.")
flags.DEFINE_bool("mixed_precision", False, "θ step in float16 with float32 variables and loss scaling (GPU).")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the θ update (loss, gradients, optimizer, EMA).")
flags.DEFINE_string("tpu", None, "TPU name or address: train with TPUStrategy (untested here: no TPU).")
flags.DEFINE_enum("strategy", "auto", ["auto", "multi_worker"],
                  "auto: TPUStrategy with --tpu, else MirroredStrategy over every visible GPU, else one device. "
                  "multi_worker: MultiWorkerMirroredStrategy over the cluster in the TF_CONFIG environment variable; "
                  "every worker runs the same command with the same --train_dir (shared), the chief writes it.")


# Flags that change a run's result but are not part of `resolved()` settings (those are the numbers).
RUN_FLAGS = ("uda_preset", "augment", "with_extra", "weight_optimizer", "influence", "influence_scope",
             "binary_reparam", "mixed_precision", "jit_compile", "ood_classes", "ood_fraction", "ood_noise")
VARIANT_FLAGS = HYPERGRADIENT_VARIANTS  # the hypergradient variants (experiments.variant_flags)


def run_flag_values(names=RUN_FLAGS):
    """{flag: value} of `names`, plus every VARIANT_FLAGS flag set away from its default: a run of the paper's
    method keeps the fingerprint (compare's seed files, ablate's run cache) it had before the variants."""
    return {**{name: FLAGS[name].value for name in names}, **variant_flags.set_away_from_paper()}


@dataclasses.dataclass
class Preset:
    steps: int
    batch: int
    uratio: int
    lr: float
    wd: float
    ema: float
    lr_schedule: str
    lr_warmup: int = 0
    min_lr_ratio: float = 0.0
    weight_decay_on: str = "kernels"
    ema_scope: str = "trainable"
    confidence: float = 0.95
    uda_softmax_temp: float = 1.0
    uda_confidence_thresh: float = 0.0
    tsa: str = "none"
    unlabeled_rampup: int = 0
    inner_steps: int = 512
    weight_lr: float = 0.01
    weight_warmup: int = 20_000
    num_labeled: int = 4000
    num_validation: int = 1024
    validation_batch: int = 320
    eval_every: int = 1024
    log_every: int = 1024
    checkpoint_every: int = 1024 * 16


# The original codebases' values (ref: shared/ref/ssl_anchors.md §2, §3; FixMatch's pseudo_label.py).
PRESETS = {
    # FixMatch's pseudo_label.py: μ = 1, threshold 0.95, the unsupervised term ramped up over the first
    # 40% of training (warmup_pos). The paper runs Pseudo-Label only on the synthetic data; N is FixMatch's.
    "pseudo_label": Preset(steps=2**20, batch=64, uratio=1, lr=0.03, wd=5e-4, ema=0.999,
                           lr_schedule="fixmatch_cosine", unlabeled_rampup=int(0.4 * 2**20), inner_steps=512),
    "fixmatch": Preset(steps=2**20, batch=64, uratio=7, lr=0.03, wd=5e-4, ema=0.999,
                       lr_schedule="fixmatch_cosine", inner_steps=512),
    "uda_paper": Preset(steps=400_000, batch=64, uratio=5, lr=0.03, wd=5e-4, ema=0.0, lr_schedule="uda_cosine",
                        lr_warmup=20_000, min_lr_ratio=0.004, weight_decay_on="all", inner_steps=100,
                        eval_every=10_000, log_every=1000, checkpoint_every=10_000),
    "uda_current": Preset(steps=500_000, batch=64, uratio=7, lr=0.03, wd=5e-4, ema=0.9999,
                          lr_schedule="uda_current", weight_decay_on="all", ema_scope="all",
                          uda_softmax_temp=0.4, uda_confidence_thresh=0.8, inner_steps=100,
                          eval_every=10_000, log_every=1000, checkpoint_every=10_000),
}
# CPU-scale default on sklearn digits (1,297 train / 500 test, 8x8): about half a minute a run on 2 cores.
# Λ: each unlabeled example is visited ~steps·|U'|/(N·|U|) ≈ 6 times here against ~25 in the paper's
# UDA runs (400k/100 · 320/50k), so η is raised to 0.04 to give λ a comparable total movement.
DIGITS = dict(steps=1000, batch=32, uratio=3, lr=0.03, num_labeled=50, num_validation=200, validation_batch=200,
              inner_steps=10, weight_lr=0.04, weight_warmup=300, eval_every=100, log_every=250,
              checkpoint_every=500)


def resolved():
    """The effective settings: explicit flags over the digits defaults over the algorithm's preset."""
    if FLAGS.dataset in data_lib.SYNTHETIC_DATASETS:
        raise ConfigError(f"--dataset={FLAGS.dataset} is a 2-D problem of Sec. 4.1: run it with "
                          "experiments.synthetic or experiments.ablate.")
    key = FLAGS.algorithm if FLAGS.algorithm != "uda" else f"uda_{FLAGS.uda_preset}"
    preset = PRESETS[key]
    values = dataclasses.asdict(preset)
    if FLAGS.dataset == "digits":
        values.update(DIGITS)
        # Keep the preset's shape at the shorter length: the same warm-up fractions, and an EMA
        # (if any) short enough to follow 1,000 steps.
        values["lr_warmup"] = round(preset.lr_warmup * DIGITS["steps"] / preset.steps)
        values["unlabeled_rampup"] = round(preset.unlabeled_rampup * DIGITS["steps"] / preset.steps)
        values["ema"] = 0.99 if preset.ema > 0 else 0.0
    for name in values:
        if name in FLAGS and FLAGS[name].value is not None:
            values[name] = FLAGS[name].value
    values["weight_init"] = FLAGS.weight_init if FLAGS.weight_init is not None else (
        5.0 if (FLAGS.algorithm == "uda" and FLAGS.dataset == "cifar10" and values["num_labeled"] == 250) else 1.0)
    values["arch"] = FLAGS.arch or ("small_cnn" if FLAGS.dataset == "digits" else "wrn28_2")
    check_settings(values)
    return values


def check_sizes_and_numbers(settings):
    """ConfigError for a size below 1 or a float that is not finite (shared with experiments.text_ssl)."""
    for name in ("num_labeled", "num_validation", "batch", "uratio"):
        if settings[name] < 1:
            raise ConfigError(f"--{name} must be >= 1, got {settings[name]}.")
    for name, value in settings.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{name} must be a finite number, got {value}.")


def check_settings(settings):
    """ConfigError for a value that cannot run, before any data is read or model built. The sizes
    that depend on the data are checked when the split is made, the rest by TrainConfig.validate."""
    check_sizes_and_numbers(settings)
    if not 0 <= settings["confidence"] <= 1:
        raise ConfigError(f"--confidence must be in [0, 1], got {settings['confidence']}.")
    if not 0 <= settings["uda_confidence_thresh"] < 1:
        raise ConfigError(f"--uda_confidence_thresh must be in [0, 1), got {settings['uda_confidence_thresh']}.")
    if settings["uda_softmax_temp"] <= 0:
        raise ConfigError(f"--uda_softmax_temp must be > 0, got {settings['uda_softmax_temp']}.")
    if FLAGS.with_extra and FLAGS.dataset != "svhn":
        raise ConfigError(f"--with_extra applies to --dataset=svhn only, not {FLAGS.dataset}.")
    try:
        [int(c) for c in FLAGS.ood_classes]
    except ValueError:
        raise ConfigError(f"--ood_classes must be class numbers, got {','.join(FLAGS.ood_classes)}.") from None
    if not 0 <= FLAGS.ood_fraction < 1:  # also refuses nan
        raise ConfigError(f"--ood_fraction must be in [0, 1), got {FLAGS.ood_fraction}.")
    if FLAGS.ood_fraction > 0 and not ood_requested():
        raise ConfigError("--ood_fraction needs --ood_classes or --ood_noise.")
    if FLAGS.binary_reparam and FLAGS.dataset in data_lib.IMAGE_DATASETS:
        raise ConfigError(f"--binary_reparam needs two classes; {FLAGS.dataset} has 10.")
    train_config(settings, 0, FLAGS.weighting).validate(settings["num_labeled"], math.inf, settings["num_validation"])


def ood_requested():
    return bool(FLAGS.ood_classes) or FLAGS.ood_noise


def load_data(settings, seed):
    """(SSLData, split, metadata) of the seeded split (split None with out-of-distribution unlabeled data);
    a missing TFDS dataset raises DatasetNotFoundError, sizes that do not fit the dataset ConfigError,
    before any model exists."""
    try:
        if ood_requested():
            dataset = data_lib.load_image_dataset(FLAGS.dataset, FLAGS.data_dir, with_extra=FLAGS.with_extra)
            data = data_lib.ood_ssl_data(dataset, settings["num_labeled"], settings["num_validation"], seed,
                                         ood_classes=[int(c) for c in FLAGS.ood_classes],
                                         ood_fraction=FLAGS.ood_fraction, noise=FLAGS.ood_noise)
            return data, None, dataset.metadata
        return data_lib.image_ssl_data(FLAGS.dataset, settings["num_labeled"], settings["num_validation"], seed,
                                       data_dir=FLAGS.data_dir, with_extra=FLAGS.with_extra, return_split=True)
    except data_lib.SplitSizeError as e:
        raise ConfigError(f"--num_labeled={settings['num_labeled']} with --num_validation="
                          f"{settings['num_validation']} does not fit {FLAGS.dataset}: {e}") from None


def make_algorithm(settings):
    if FLAGS.algorithm == "fixmatch":
        return FixMatch(settings["confidence"])
    if FLAGS.algorithm == "uda":
        return UDA(settings["uda_softmax_temp"], settings["uda_confidence_thresh"], settings["tsa"],
                   total_steps=settings["steps"])
    return PseudoLabel(settings["confidence"])  # the pseudo_label preset: FixMatch's pseudo_label.py


def make_augmentations():
    """(weak, strong, probe) for the source. Only datasets whose class survives a mirror are flipped
    (data.HORIZONTAL_FLIP: not SVHN, not digits). With CTAugment the strong view is CTA on top of the
    weak view, and CTA's rates learn from labeled probes."""
    flip = data_lib.flips_horizontally(FLAGS.dataset)
    weak = functools.partial(augment.weak_augment_batch, flip=flip)
    if FLAGS.algorithm == "uda":
        return weak, functools.partial(augment.strong_batch_uda, flip=flip), None
    if FLAGS.augment == "cta":
        cta = augment.CTAugment()

        def strong(images, seed):
            weak_seed, cta_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            return cta.augment_batch(weak(images, weak_seed), cta_seed)

        return weak, strong, cta
    return weak, functools.partial(augment.strong_batch_fixmatch, flip=flip), None


def make_model(settings, data, seed):
    """The network, built under the 'mixed_float16' policy with --mixed_precision (head in float32)."""
    if not FLAGS.mixed_precision:
        return _build_model(settings, data, seed)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return _build_model(settings, data, seed)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _build_model(settings, data, seed):
    shape = data.labeled_x.shape[1:]
    if settings["arch"] == "small_cnn":
        return models.small_cnn(data.num_classes, input_shape=shape, seed=seed)
    variant = "uda" if FLAGS.algorithm == "uda" else "fixmatch"
    return models.wide_resnet_28_2(data.num_classes, variant=variant, input_shape=shape, seed=seed)


def shared_config_fields(settings, seed, weighting, reverse=False):
    """The TrainConfig fields every recipe takes the same way from its settings and the shared flags (batches,
    Alg. 1's Λ step, θ's schedule, precision, logging); experiments.text_ssl uses them too. settings may
    override the flags of the Λ step (weight_optimizer, influence): the ablations vary them in one process."""
    option = lambda name: settings.get(name, FLAGS[name].value)
    return dict(
        steps=settings["steps"], labeled_batch=settings["batch"],
        unlabeled_batch=settings["batch"] * settings["uratio"], validation_batch=settings["validation_batch"],
        inner_steps=settings["inner_steps"], weight_lr=settings["weight_lr"], weight_init=settings["weight_init"],
        weight_warmup=settings["weight_warmup"], weighting=weighting, weight_optimizer=option("weight_optimizer"),
        influence=option("influence"), reverse_hypergradient=reverse, binary_reparam=FLAGS.binary_reparam,
        lr=settings["lr"], lr_schedule=settings["lr_schedule"], lr_warmup=settings["lr_warmup"],
        weight_decay=settings["wd"], mixed_precision=FLAGS.mixed_precision, jit_compile=FLAGS.jit_compile,
        **{name: option(name) for name in VARIANT_FLAGS},
        seed=seed, log_every=settings["log_every"], eval_every=settings["eval_every"],
        checkpoint_every=settings["checkpoint_every"])


def train_config(settings, seed, weighting, reverse=False):
    """settings may also override --influence_scope (see shared_config_fields)."""
    return TrainConfig(
        **shared_config_fields(settings, seed, weighting, reverse),
        influence_scope=settings.get("influence_scope", FLAGS.influence_scope),
        unlabeled_rampup=settings["unlabeled_rampup"], optimizer="nesterov", min_lr_ratio=settings["min_lr_ratio"],
        weight_decay_on=settings["weight_decay_on"], ema_decay=settings["ema"], ema_scope=settings["ema_scope"])


def make_strategy():
    """The --strategy: call it before TensorFlow runs anything (a multi-worker strategy must be made first)."""
    if FLAGS.strategy == "multi_worker":
        if FLAGS.tpu:
            raise ConfigError("--strategy=multi_worker and --tpu exclude each other.")
        check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if FLAGS.tpu:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=FLAGS.tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def check_tf_config(text):
    """ConfigError unless `text` is a TF_CONFIG naming a cluster of workers and this process's task in it."""
    example = ('e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\' on the first machine, index 1 on the second')
    if not text:
        raise ConfigError(f"--strategy=multi_worker needs the TF_CONFIG environment variable, {example}.")
    try:
        spec = json.loads(text)
        cluster, task = spec["cluster"], spec["task"]
        hosts = cluster[task["type"]]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"TF_CONFIG is not a cluster and a task ({type(e).__name__}: {e}), {example}.") from None
    if not 0 <= index < len(hosts):
        raise ConfigError(f"TF_CONFIG's task index {index} is not one of its {len(hosts)} {task['type']} hosts.")


def make_trainer(settings, data, seed, weighting, train_dir=None, reverse=False, verbose=True, strategy=None,
                 callbacks=()):
    """Everything one run needs; the weighting and the sign are the only differences between methods."""
    config = train_config(settings, seed, weighting, reverse)
    weak, strong, probe = make_augmentations()
    source = AugmentedImageSource(data, config.labeled_batch, config.unlabeled_batch, config.validation_batch,
                                  seed=seed, weak=weak, strong=strong, probe=probe)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = make_model(settings, data, seed)
    return Trainer(model, make_algorithm(settings), source, config, train_dir=train_dir, verbose=verbose,
                   strategy=strategy, callbacks=callbacks)


__all__ = ["ConfigError", "resolved", "load_data", "make_trainer"]
