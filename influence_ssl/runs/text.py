"""The text run (Table 2: UDA with BERT on IMDb): inputs, the cached token ids, the model.

Nothing is downloaded: BERT comes from --bert_dir, IMDb from --imdb_dir (raw aclImdb) or --data_dir (TFDS).
"""
import hashlib
import os

import numpy as np
import tensorflow as tf

from influence_ssl.augment import tf_idf
from influence_ssl.data import DatasetNotFoundError
from influence_ssl.data import text as text_data
from influence_ssl.models.bert import BertFolderError, bert_classifier, bert_folder_format, load_bert
from influence_ssl.runs.checks import aug_spec
from influence_ssl.trainer import ConfigError

# Errors of a text run's inputs, each a one-line message for the user.
ERRORS = (BertFolderError, DatasetNotFoundError, text_data.ParaphraseFileError)


def check_inputs(config):
    """The BERT folder and IMDb are there: a missing piece is one error line before anything is read."""
    t = config.text
    if not t.bert_dir:
        raise ConfigError("--dataset=imdb needs --bert_dir: BERT-base uncased, Google's uncased_L-12_H-768_A-12 "
                          "or a transformers folder (see the README, 'Text').")
    bert_folder_format(t.bert_dir)
    if t.imdb_dir:
        text_data.check_acl_imdb(t.imdb_dir)
    elif config.data.data_dir:
        text_data.prepared_imdb_builder(config.data.data_dir)
    else:
        raise DatasetNotFoundError("--dataset=imdb needs --imdb_dir (the raw aclImdb folder) or --data_dir "
                                   "(TFDS imdb_reviews prepared there); see the README, 'Text'.")
    check_paraphrase_order(config)


def check_paraphrase_order(config, corpus=None):
    """ConfigError (one line) for --aug=bt-* unless the unlabeled order is UDA's train_id_list.txt (of the
    corpus when given, else of --imdb_dir): UDA's para_0.txt has one line per review in that order, and any
    other order pairs every paraphrase with another review, silently (the line count still matches)."""
    t = config.text
    if aug_spec(t.aug)[0] != "bt":
        return
    fix = (f"pass the raw aclImdb folder holding UDA's {text_data.ID_LIST} (google-research/uda "
           "text/data/IMDB_raw/) as --imdb_dir, or use --aug=tf_idf-0.2")
    if not t.imdb_dir:
        raise ConfigError(f"--aug={t.aug} needs UDA's review order, which TFDS imdb_reviews cannot give (its "
                          f"records have no names): {fix}.")
    if corpus is not None:
        in_uda_order = corpus.metadata.get("uda_order", False)
    else:
        in_uda_order = os.path.exists(os.path.join(t.imdb_dir, text_data.ID_LIST))
    if not in_uda_order:
        raise ConfigError(f"--aug={t.aug} needs UDA's review order, but --imdb_dir={t.imdb_dir!r} has no "
                          f"{text_data.ID_LIST}: {fix}.")


def cache_dir(config):
    if config.text.text_cache_dir:
        return config.text.text_cache_dir
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "influence_ssl")


def read_corpus(config):
    if config.text.imdb_dir:
        return text_data.read_acl_imdb(config.text.imdb_dir)
    return text_data.read_tfds_imdb(config.data.data_dir)


def export_unlabeled_text(corpus, path):
    """The unlabeled (unsup_in) reviews, one per line in ID order: what a back-translation must follow."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(review.replace("\n", " ") + "\n" for review in corpus.unsup_in_texts)
    print(f"{len(corpus.unsup_in_texts)} unlabeled reviews written to {path}", flush=True)


def augmented_texts(config, corpus, tokenizer):
    """(texts, replaced): the augmented copy of every unsup_in review (--aug), made once (UDA's aug_copy=1);
    replaced, for --aug=bt-*, a bool array [N_in], True where the paraphrase replaced the review (else None)."""
    kind, value = aug_spec(config.text.aug)
    originals = corpus.unsup_in_texts
    if kind == "bt":
        return text_data.read_paraphrases(config.text.bt_file, originals)
    docs = [tokenizer.words(review) for review in originals]
    return [" ".join(doc) for doc in tf_idf.tf_idf_augment(docs, value, config.text.aug_seed)], None


def token_arrays(config, corpus):
    """{"ori", "aug": [N_in, L], "test": [N_test, L]} int32 (and with --aug=bt-*, "replaced": bool [N_in],
    where the paraphrase is the augmented view), from the cache when the inputs are the same."""
    t = config.text
    tokenizer = text_data.WordPiece(os.path.join(t.bert_dir, "vocab.txt"))
    kind, _ = aug_spec(t.aug)
    aug_input = {"bt_file_sha256": _sha256(t.bt_file)} if kind == "bt" else {"aug_seed": t.aug_seed}
    key = {"vocab_sha256": tokenizer.fingerprint(), "lower_case": True, "max_seq_length": t.max_seq_length,
           "aug": t.aug, **aug_input}

    def compute():
        print(f"augmenting ({t.aug}) and tokenizing {len(corpus.unsup_in_texts)} unlabeled and "
              f"{len(corpus.test_texts)} test reviews once...", flush=True)
        augmented, replaced = augmented_texts(config, corpus, tokenizer)  # first: a bad --bt_file stops early
        length = t.max_seq_length
        arrays = {"ori": tokenizer.encode(corpus.unsup_in_texts, length), "aug": tokenizer.encode(augmented, length),
                  "test": tokenizer.encode(corpus.test_texts, length)}
        return arrays if replaced is None else {**arrays, "replaced": replaced}

    return text_data.cached_arrays(cache_dir(config), key, [corpus.unsup_in_texts, corpus.test_texts], compute,
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


def load_data(config):
    """(TextSSLData, TextSplit, metadata) of the seeded split."""
    corpus = read_corpus(config)
    d = config.data
    try:
        split = text_data.imdb_split(corpus, d.num_labeled, d.num_validation, config.seed)
    except ValueError as e:
        raise ConfigError(f"--num_labeled / --num_validation: {e}") from None
    print(f"labeled: {split.labeled_source}; unlabeled order: {corpus.metadata['order']}", flush=True)
    check_paraphrase_order(config, corpus)
    arrays = token_arrays(config, corpus)
    data = text_data.imdb_ssl_data(corpus, split, arrays["ori"], arrays["aug"], arrays["test"])
    if "replaced" in arrays:
        data.metadata.update(paraphrase_share(arrays["replaced"], data.unlabeled_ids))
        print(f"back-translation: {100 * data.metadata['paraphrase_replaced_share']:.1f}% of the "
              f"{len(data.unlabeled_ids):,} unlabeled reviews replaced by their paraphrase (UDA's length rule), "
              f"{100 * data.metadata['paraphrase_replaced_share_unsup_in']:.1f}% of UDA's unsup_in", flush=True)
    return data, split, data.metadata


def paraphrase_share(replaced, unlabeled_ids):
    """{share of the run's unlabeled reviews, and of all unsup_in (UDA's log line), whose augmented view is
    their paraphrase}. replaced: bool [N_in]; unlabeled_ids: [U] rows of it."""
    replaced = np.asarray(replaced, bool)
    return {"paraphrase_replaced_share": float(np.mean(replaced[unlabeled_ids])),
            "paraphrase_replaced_share_unsup_in": float(np.mean(replaced))}


def augmentation_summary(config, metadata):
    """What results.json records of a text run's augmentation: --aug, and for back-translation the shares of
    paraphrased reviews (paraphrase_share)."""
    keys = ("paraphrase_replaced_share", "paraphrase_replaced_share_unsup_in")
    return {"aug": config.text.aug, **{k: metadata[k] for k in keys if k in metadata}}


def make_model(config):
    """BERT from --bert_dir (under the caller's precision policy), then the classifier."""
    tf.random.set_seed(config.seed)  # the op seeds of BERT's dropout layers
    bert = load_bert(config.text.bert_dir)
    return bert_classifier(bert, num_classes=len(text_data.LABELS), seq_length=config.text.max_seq_length,
                           seed=config.seed)


__all__ = ["ERRORS", "augmentation_summary", "check_inputs", "check_paraphrase_order", "load_data", "make_model",
           "export_unlabeled_text", "read_corpus"]
