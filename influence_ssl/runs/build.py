"""RunConfig -> data, model, SSL algorithm, data source and Trainer: the one place a run is put together.

Within a seed, the methods of a study differ only in their configuration: the split, the initialisation,
the data order and the augmentations depend on (dataset sizes, seed) alone.
"""
import functools

import tensorflow as tf
import tf_keras as keras

from influence_ssl import augment, models
from influence_ssl import data as data_lib
from influence_ssl.runs import text
from influence_ssl.ssl import UDA, FixMatch, PseudoLabel, weighting
from influence_ssl.trainer import ConfigError, InMemorySource, Trainer
from influence_ssl.trainer.image_source import AugmentedImageSource
from influence_ssl.trainer.text_source import PairedTextSource


def check_inputs(config):
    """ConfigError / DatasetNotFoundError / BertFolderError for a missing input folder, before anything is read."""
    if config.family == "text":
        text.check_inputs(config)


def load_data(config):
    """(SSLData, split or None, metadata) of config's seeded split. A split that does not fit the dataset is a
    ConfigError; a missing TFDS dataset a DatasetNotFoundError; both before any model exists. With
    --validation_labeled the validation examples are labeled training examples too (the split is unchanged)."""
    data, split, metadata = _load_split(config)
    if config.data.validation_labeled:
        data = data.with_validation_labeled()
    return data, split, metadata


def _load_split(config):
    d, seed = config.data, config.seed
    if config.family == "2d":
        data = data_lib.make_synthetic(d.dataset, seed, d.num_labeled, d.num_validation, d.num_unlabeled, d.num_test)
        return data, None, {"dataset": d.dataset}
    if config.family == "text":
        return text.load_data(config)
    try:
        if d.ood:
            dataset = data_lib.load_image_dataset(d.dataset, d.data_dir, with_extra=d.with_extra)
            data = data_lib.ood_ssl_data(dataset, d.num_labeled, d.num_validation, seed,
                                         ood_classes=list(d.ood_classes), ood_fraction=d.ood_fraction,
                                         noise=d.ood_noise)
            return data, None, dataset.metadata
        return data_lib.image_ssl_data(d.dataset, d.num_labeled, d.num_validation, seed, data_dir=d.data_dir,
                                       with_extra=d.with_extra, return_split=True)
    except data_lib.SplitSizeError as e:
        raise ConfigError(f"--num_labeled={d.num_labeled} with --num_validation={d.num_validation} does not fit "
                          f"{d.dataset}: {e}") from None


def make_algorithm(config, num_classes=None, num_unlabeled=None):
    """The SSL algorithm; a weighting rule needs the number of classes and of unlabeled ids (its state's size)."""
    a = config.algorithm
    if a.algorithm == "uda":
        return UDA(a.uda_softmax_temp, a.uda_confidence_thresh, a.tsa, total_steps=config.train.steps)
    rule = make_rule(a, num_classes, num_unlabeled)
    if a.algorithm == "fixmatch":
        return FixMatch(a.confidence, rule=rule)
    return PseudoLabel(a.confidence, rule=rule)


def make_rule(a, num_classes, num_unlabeled):
    """The weighting rule of AlgorithmConfig `a`, at its paper's defaults but for the flags (None: no rule)."""
    if a.weighting_rule == "none":
        return None
    if num_classes is None or num_unlabeled is None:
        raise ValueError(f"--weighting_rule={a.weighting_rule} needs num_classes and num_unlabeled.")
    if a.weighting_rule == "softmatch":
        return weighting.SoftMatchWeighting(num_classes, momentum=a.weighting_ema)
    if a.weighting_rule == "freematch":
        return weighting.FreeMatchThresholds(num_classes, momentum=a.weighting_ema)
    if a.weighting_rule == "flexmatch":
        return weighting.FlexMatchThresholds(num_classes, num_unlabeled, threshold=a.confidence)
    return weighting.UASDFilter(num_classes, num_unlabeled, threshold=a.uasd_threshold)


# Traced once per process and input shape, not once per call site: a trainer augments in several compiled steps
# (θ batch, Λ batch), and a study builds a source per run. Tracing a strong view takes seconds; the graph is the
# same, so the results are too.
_WEAK = tf.function(augment.weak_augment, autograph=False)
_STRONG_UDA = tf.function(augment.strong_uda, autograph=False)
_STRONG_FIXMATCH = tf.function(augment.strong_fixmatch, autograph=False)


def make_augmentations(config):
    """(weak, strong, probe) of an image run. Only datasets whose class survives a mirror are flipped
    (data.HORIZONTAL_FLIP: not SVHN, not digits). With CTAugment the strong view is CTA on top of the weak
    view, and CTA's rates learn from labeled probes, unless frozen (the authors' code: the rates stay uniform,
    so each magnitude is uniform on [0, 1])."""
    flip = data_lib.flips_horizontally(config.data.dataset)
    weak = functools.partial(_WEAK, flip=flip)
    if config.algorithm.algorithm == "uda":
        return weak, functools.partial(_STRONG_UDA, flip=flip), None
    if config.algorithm.augment == "cta":
        cta = augment.CTAugment()

        @tf.function(autograph=False)  # this CTAugment's rates: traced once per source
        def strong(images, seed):
            weak_seed, cta_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            return cta.augment_batch(weak(images, weak_seed), cta_seed)

        return weak, strong, None if config.algorithm.cta_frozen else cta
    return weak, functools.partial(_STRONG_FIXMATCH, flip=flip), None


def make_source(config, data):
    t = config.train
    sizes = (t.labeled_batch, t.unlabeled_batch, t.validation_batch)
    common = dict(seed=t.seed, validation_draw=t.validation_draw, validation_labeled=config.data.validation_labeled)
    if config.family == "2d":
        return InMemorySource(data, *sizes, **common)
    if config.family == "text":
        return PairedTextSource(data, *sizes, **common)
    weak, strong, probe = make_augmentations(config)
    return AugmentedImageSource(data, *sizes, weak=weak, strong=strong, probe=probe, **common)


def make_model(config, data):
    """The network, built under the 'mixed_float16' policy with --mixed_precision (the head in float32). Keras'
    global policy is touched only then, and given back as it was: a policy left set explicitly (even 'float32')
    would override keras.backend.floatx() for every model built afterwards in the process."""
    if not config.train.mixed_precision:
        return _network(config, data)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return _network(config, data)
    finally:
        # The default policy is the one derived from floatx: None keeps it so.
        keras.mixed_precision.set_global_policy(None if previous.name == keras.backend.floatx() else previous)


def _network(config, data):
    arch, seed = config.model.arch, config.seed
    if arch == "mlp":
        return models.two_layer_mlp(num_classes=data.num_classes, seed=seed)
    if arch == "bert":
        return text.make_model(config)
    shape = data.labeled_x.shape[1:]
    if arch == "small_cnn":
        return models.small_cnn(data.num_classes, input_shape=shape, seed=seed)
    variant = "uda" if config.algorithm.algorithm == "uda" else "fixmatch"
    return models.wide_resnet_28_2(data.num_classes, variant=variant, input_shape=shape, seed=seed)


def make_trainer(config, data, train_dir=None, verbose=True, strategy=None, callbacks=()):
    """Everything one run needs. Build order: the source, then the model inside the strategy's scope."""
    source = make_source(config, data)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = make_model(config, data)
    algorithm = make_algorithm(config, data.num_classes, source.num_unlabeled_ids)
    return Trainer(model, algorithm, source, config.train, train_dir=train_dir, verbose=verbose,
                   strategy=strategy, callbacks=callbacks)
