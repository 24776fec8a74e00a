r"""Flags and wiring of the text experiment (Sec. 4.2 "Text Classification", Table 2): UDA with BERT on IMDb.

The same entry point and flags as the images (experiments.train, --dataset=imdb), with the API of
experiments.image_ssl (resolved, load_data, make_trainer), plus the text flags below. A flag left
unset takes the IMDB preset: Ren et al.'s setup of UDA's GPU recipe (ref: shared/ref/ssl_anchors.md §4).

  python -m experiments.train --flagfile=experiments/configs/table2/ours_128.cfg \
      --bert_dir=uncased_L-12_H-768_A-12 --imdb_dir=aclImdb --train_dir=runs/imdb_ours_seed1 --seed=1

There is no BERT or IMDb on a CPU machine here, so there is no CPU-scale default: the CPU check of this
path is tests/test_text_training.py, which runs the same command line on a tiny BERT and a fake aclImdb.
"""
import hashlib
import json
import math
import os
import re

import tensorflow as tf
import tf_keras as keras
from absl import flags

from experiments import image_ssl  # also defines the shared flags (--algorithm, --steps, ...)
from experiments.checks import writable_dir
from influence_ssl.augment import tf_idf
from influence_ssl.data import DatasetNotFoundError
from influence_ssl.data import text as text_data
from influence_ssl.models.bert import BertFolderError, bert_classifier, bert_folder_format, load_bert
from influence_ssl.ssl import UDA
from influence_ssl.trainer import ConfigError, TrainConfig, Trainer
from influence_ssl.trainer.distribution import worker_role
from influence_ssl.trainer.text_source import PairedTextSource

FLAGS = flags.FLAGS
flags.DEFINE_string("bert_dir", None, "IMDb: BERT folder, Google's uncased_L-12_H-768_A-12 (bert_config.json, "
                    "bert_model.ckpt.*, vocab.txt) or a transformers one (config.json, tf_model.h5, vocab.txt).")
flags.DEFINE_string("imdb_dir", None, "IMDb: the raw aclImdb folder (train/{pos,neg,unsup}, test/{pos,neg}); "
                    "or give --data_dir holding TFDS imdb_reviews.")
flags.DEFINE_integer("max_seq_length", 128, "IMDb: WordPiece tokens per review incl. [CLS] and [SEP] "
                     "(the tail is kept); the paper's 128, up to 512.")
flags.DEFINE_string("aug", "bt-0.9", "IMDb: augmentation of the unlabeled reviews, made once before training: "
                    "bt-<temperature> (paraphrases from --bt_file) or tf_idf-<p> (UDA's TF-IDF word replacement).")
flags.DEFINE_string("bt_file", None, "IMDb, --aug=bt-*: back-translations, one line per unlabeled review in the "
                    "unlabeled order (UDA's imdb_back_trans/unsup_in/sample_0.9/para/para_0.txt with its "
                    "train_id_list.txt order).")
flags.DEFINE_integer("aug_seed", 0, "IMDb, --aug=tf_idf-*: seed of the word replacement (one copy for all runs).")
flags.DEFINE_float("clip_norm", None, "IMDb: global-norm clip of θ's gradient (UDA: 1).")
flags.DEFINE_string("text_cache_dir", None, "IMDb: where the token ids are cached "
                    "(default $XDG_CACHE_HOME/influence_ssl or ~/.cache/influence_ssl).")
flags.DEFINE_string("export_unlabeled_text", None, "IMDb: write the unlabeled reviews, cleaned, one per line in the "
                    "unlabeled order (the input of a back-translation), to this file and stop.")

# Flags that change a run's result but are not part of `resolved()` settings.
RUN_FLAGS = ("bert_dir", "imdb_dir", "data_dir", "max_seq_length", "aug", "bt_file", "aug_seed", "weight_optimizer",
             "influence", "binary_reparam", "mixed_precision", "jit_compile")

# Ren et al.'s IMDb setup (App. D) on UDA's text recipe: BERT's Adam (decoupled decay 0.01, clip 1),
# lr 2e-5 with 1k warm-up then linear decay to 0 at 10k, TSA linear, no sharpening or mask; batches
# 8 labeled / 32 unlabeled; Λ by M-Adam 0.01 every 5 θ steps after 1k; the 25k test reviews every 500.
IMDB = dict(steps=10_000, batch=8, uratio=4, lr=2e-5, wd=0.01, clip_norm=1.0, lr_schedule="bert_linear",
            lr_warmup=1000, tsa="linear", uda_softmax_temp=1.0, uda_confidence_thresh=0.0, inner_steps=5,
            weight_lr=0.01, weight_init=1.0, weight_warmup=1000, num_labeled=20, num_validation=20,
            validation_batch=20, eval_every=500, log_every=100, checkpoint_every=500)
MAX_POSITIONS = 512
AUG_PATTERN = re.compile(r"^(bt|tf_idf)-([0-9]*\.?[0-9]+)$")


def resolved():
    """The effective settings (flags over the IMDB preset), after checking every flag, the BERT folder
    and that IMDb is there: a missing piece is one error line before anything is read or built."""
    values = dict(IMDB)
    for name in values:
        if name in FLAGS and FLAGS[name].value is not None:
            values[name] = FLAGS[name].value
    check_settings(values)
    return values


def check_settings(settings):
    if FLAGS.algorithm != "uda":
        raise ConfigError(f"--dataset=imdb runs --algorithm=uda only, not {FLAGS.algorithm}.")
    if not FLAGS.bert_dir:
        raise ConfigError("--dataset=imdb needs --bert_dir: BERT-base uncased, Google's uncased_L-12_H-768_A-12 "
                          "or a transformers folder (see the README, 'Text').")
    bert_folder_format(FLAGS.bert_dir)
    if FLAGS.imdb_dir:
        text_data.check_acl_imdb(FLAGS.imdb_dir)
    elif FLAGS.data_dir:
        text_data.prepared_imdb_builder(FLAGS.data_dir)
    else:
        raise DatasetNotFoundError("--dataset=imdb needs --imdb_dir (the raw aclImdb folder) or --data_dir "
                                   "(TFDS imdb_reviews prepared there); see the README, 'Text'.")
    image_ssl.check_sizes_and_numbers(settings)
    if not 3 <= FLAGS.max_seq_length <= MAX_POSITIONS:
        raise ConfigError(f"--max_seq_length must be in [3, {MAX_POSITIONS}], got {FLAGS.max_seq_length}.")
    if FLAGS.ood_classes or FLAGS.ood_noise or FLAGS.with_extra:
        raise ConfigError("--ood_classes, --ood_noise and --with_extra apply to the image datasets only.")
    kind, value = aug_spec()
    if kind == "bt" and not FLAGS.bt_file:
        raise ConfigError(f"--aug={FLAGS.aug} needs --bt_file (UDA's back-translations), or use --aug=tf_idf-0.2.")
    if kind == "tf_idf" and not 0 <= value <= 1:
        raise ConfigError(f"--aug={FLAGS.aug}: the replacement rate must be in [0, 1].")
    train_config(settings, 0, FLAGS.weighting).validate(settings["num_labeled"], math.inf,
                                                        settings["num_validation"])


def aug_spec():
    """("bt" | "tf_idf", number) of --aug; ConfigError if malformed."""
    match = AUG_PATTERN.match(FLAGS.aug or "")
    if not match:
        raise ConfigError(f"--aug must be bt-<temperature> or tf_idf-<p>, got {FLAGS.aug!r}.")
    return match.group(1), float(match.group(2))


def cache_dir():
    if FLAGS.text_cache_dir:
        return FLAGS.text_cache_dir
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "influence_ssl")


def read_corpus():
    return text_data.read_acl_imdb(FLAGS.imdb_dir) if FLAGS.imdb_dir else text_data.read_tfds_imdb(FLAGS.data_dir)


def export_unlabeled_text(corpus, path):
    """The unlabeled (unsup_in) reviews, one per line in ID order: what a back-translation must follow."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(text.replace("\n", " ") + "\n" for text in corpus.unsup_in_texts)
    print(f"{len(corpus.unsup_in_texts)} unlabeled reviews written to {path}", flush=True)


def augmented_texts(corpus, tokenizer):
    """The augmented copy of every unsup_in review (--aug), made once (UDA's aug_copy=1)."""
    kind, value = aug_spec()
    originals = corpus.unsup_in_texts
    if kind == "bt":
        texts, replaced = text_data.read_paraphrases(FLAGS.bt_file, originals)
        print(f"back-translation: {100 * replaced:.1f}% of the unlabeled reviews replaced by their paraphrase",
              flush=True)
        return texts
    docs = [tokenizer.words(text) for text in originals]
    return [" ".join(doc) for doc in tf_idf.tf_idf_augment(docs, value, FLAGS.aug_seed)]


def token_arrays(corpus):
    """{"ori", "aug": [N_in, L], "test": [N_test, L]} int32, from the cache when the inputs are the same."""
    tokenizer = text_data.WordPiece(os.path.join(FLAGS.bert_dir, "vocab.txt"))
    kind, _ = aug_spec()
    aug_input = {"bt_file_sha256": _sha256(FLAGS.bt_file)} if kind == "bt" else {"aug_seed": FLAGS.aug_seed}
    key = {"vocab_sha256": tokenizer.fingerprint(), "lower_case": True, "max_seq_length": FLAGS.max_seq_length,
           "aug": FLAGS.aug, **aug_input}

    def compute():
        print(f"augmenting ({FLAGS.aug}) and tokenizing {len(corpus.unsup_in_texts)} unlabeled and "
              f"{len(corpus.test_texts)} test reviews once...", flush=True)
        augmented = augmented_texts(corpus, tokenizer)  # first: a bad --bt_file stops before any tokenizing
        length = FLAGS.max_seq_length
        return {"ori": tokenizer.encode(corpus.unsup_in_texts, length), "aug": tokenizer.encode(augmented, length),
                "test": tokenizer.encode(corpus.test_texts, length)}

    return text_data.cached_arrays(cache_dir(), key, [corpus.unsup_in_texts, corpus.test_texts], compute,
                                   log=lambda line: print(line, flush=True))


def _sha256(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise text_data.ParaphraseFileError(f"--bt_file={path!r} cannot be read: {e.strerror or e}.") from None
    return digest.hexdigest()


def load_data(settings, seed):
    """(TextSSLData, TextSplit, metadata) of the seeded split; the same return shape as image_ssl.load_data."""
    corpus = read_corpus()
    try:
        split = text_data.imdb_split(corpus, settings["num_labeled"], settings["num_validation"], seed)
    except ValueError as e:
        raise ConfigError(f"--num_labeled / --num_validation: {e}") from None
    print(f"labeled: {split.labeled_source}; unlabeled order: {corpus.metadata['order']}", flush=True)
    arrays = token_arrays(corpus)
    data = text_data.imdb_ssl_data(corpus, split, arrays["ori"], arrays["aug"], arrays["test"])
    return data, split, data.metadata


def save_split(path, split, metadata):
    with open(path, "w") as f:
        json.dump({"labeled": split.labeled.tolist(), "validation": split.validation.tolist(),
                   "labeled_source": split.labeled_source, "metadata": metadata}, f, indent=1)


def train_config(settings, seed, weighting, reverse=False):
    """image_ssl's shared fields with BERT's optimizer (adamw) and clipping."""
    return TrainConfig(**image_ssl.shared_config_fields(settings, seed, weighting, reverse),
                       optimizer="adamw", clip_norm=settings["clip_norm"])


def make_model(seed):
    """BERT from --bert_dir under the run's precision policy, then the classifier."""
    previous = keras.mixed_precision.global_policy()
    if FLAGS.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        tf.random.set_seed(seed)  # the op seeds of BERT's dropout layers
        return bert_classifier(load_bert(FLAGS.bert_dir), num_classes=len(text_data.LABELS),
                               seq_length=FLAGS.max_seq_length, seed=seed)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def make_trainer(settings, data, seed, weighting, train_dir=None, reverse=False, verbose=True, strategy=None,
                 callbacks=()):
    """Everything one run needs; the weighting and the sign are the only differences between methods."""
    config = train_config(settings, seed, weighting, reverse)
    source = PairedTextSource(data, config.labeled_batch, config.unlabeled_batch, config.validation_batch, seed)
    algorithm = UDA(settings["uda_softmax_temp"], settings["uda_confidence_thresh"], settings["tsa"],
                    total_steps=settings["steps"])
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = make_model(seed)
    return Trainer(model, algorithm, source, config, train_dir=train_dir, verbose=verbose, strategy=strategy,
                   callbacks=callbacks)


def train(seed, train_dir, weighting, reverse=False):
    """experiments.train for --dataset=imdb: one run, results.json and weights.npy in train_dir.
    Returns (trainer, results), or None with --export_unlabeled_text."""
    settings = resolved()
    writable_dir(train_dir)
    if FLAGS.export_unlabeled_text:
        export_unlabeled_text(read_corpus(), FLAGS.export_unlabeled_text)
        return None
    strategy = image_ssl.make_strategy()  # before TensorFlow runs anything (a multi-worker strategy needs it)
    print(f"{strategy.num_replicas_in_sync} replica(s): {type(strategy).__name__}", flush=True)
    data, split, metadata = load_data(settings, seed)
    print(data.summary(), flush=True)
    if worker_role(strategy)[0]:  # only the chief writes the run directory
        save_split(os.path.join(train_dir, "split.json"), split, metadata)
    trainer = make_trainer(settings, data, seed, weighting, train_dir=train_dir, reverse=reverse, strategy=strategy)
    return trainer, trainer.run()


ERRORS = (BertFolderError, DatasetNotFoundError, text_data.ParaphraseFileError)

__all__ = ["RUN_FLAGS", "ERRORS", "resolved", "load_data", "make_trainer", "train"]
