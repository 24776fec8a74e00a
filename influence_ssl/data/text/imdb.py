"""IMDb as UDA's text code reads it: cleaning, labels, the unsup_in set and the 20 labeled reviews.

Sources (nothing is downloaded):
  raw aclImdb folder: train/{pos,neg,unsup}, test/{pos,neg}, files `<id>_<rating>.txt`. The train
    reviews are named as in UDA's train_id_list.txt (`pos_9716_10.txt`). If the folder holds that
    file (copied from google-research/uda text/data/IMDB_raw/), its order is used, so the unlabeled
    IDs, and the lines of UDA's back-translation file, match UDA's one to one; otherwise the order is
    neg, pos, unsup (as in that list), each by file name.
  TFDS imdb_reviews (train, unsupervised, test), in record order; it carries no review names.
Only UDA's order pairs UDA's back-translations with their reviews: metadata["uda_order"] says whether a
corpus has it.
Labels are UDA's: pos = 0, neg = 1 (TFDS has neg = 0, pos = 1).
"""
import dataclasses
import os
import re
from typing import List, Optional

import numpy as np

from influence_ssl.data.images import DatasetNotFoundError
from influence_ssl.data.ssl_data import SSLData, class_balanced_split

LABELS = ("pos", "neg")  # UDA's label list: index = class id
# UDA's sup_size=20 set: the first 10 pos and 10 neg of train_id_list.txt, interleaved pos/neg
# (ref: shared/ref/ssl_anchors.md §4).
UDA_LABELED = tuple(f"{label}_{review}.txt" for pair in zip(
    ("9716_10", "839_7", "1047_8", "1612_10", "6836_9", "12323_10", "8710_7", "2659_8", "1404_10", "4722_8"),
    ("9851_1", "4681_4", "3386_2", "6068_4", "11186_2", "362_3", "135_4", "2461_4", "3728_1", "11575_1"))
    for label, review in zip(LABELS, pair))
# UDA's unsup_in drops unsup reviews shorter than this many UTF-8 bytes. UDA's preprocessing ran under
# Python 2, where the review read from its train.csv is a byte string and len() counts bytes: a review of 400
# characters with 110 accented letters (510 bytes) is kept there. Counting characters instead drops such
# reviews, and the unlabeled set no longer has one review per line of UDA's para_0.txt. (UDA measures the text
# of its first cleaning, before the second turns backslashes into spaces: the same length.)
UNSUP_MIN_BYTES = 500
ID_LIST = "train_id_list.txt"
UDA_ORDER = f"UDA's {ID_LIST}"
ACL_FOLDERS = ("train/pos", "train/neg", "train/unsup", "test/pos", "test/neg")
SPLIT_STREAM = 2020_9  # second seed word of the text split's draws


def clean_review(text):
    """UDA's clean_web_text: <br />, <p>, &quot; and <a href=...> tags go; literal "\\n" and
    backslashes become spaces. An <a href= without a closing '>' loses just that prefix (UDA's code
    keeps one character after it instead, a slicing slip)."""
    text = text.strip().replace("<br />", " ").replace("&quot;", "\"").replace("<p>", " ")
    if "<a href=" in text:
        text = re.sub(r"<a href=[^>]*>", "", text).replace("<a href=", "").replace("</a>", "")
    return text.replace("\\n", " ").replace("\\", " ")


@dataclasses.dataclass
class ImdbCorpus:
    """Cleaned reviews. unsup_in (UDA's unlabeled set) = train_texts + unsup_texts; ID = position there.

    train_names: UDA-style names of the train reviews (None from TFDS). test_labels, train_labels:
    int64, pos = 0, neg = 1.
    """

    train_texts: List[str]
    train_labels: np.ndarray
    unsup_texts: List[str]
    test_texts: List[str]
    test_labels: np.ndarray
    train_names: Optional[List[str]]
    metadata: dict

    @property
    def unsup_in_texts(self):
        return self.train_texts + self.unsup_texts


def utf8_length(text):
    """len() of `text` as UDA's Python 2 code saw it: its number of UTF-8 bytes."""
    return len(text.encode("utf-8"))


def _keep_unsup(texts):
    """(the unsup reviews of at least UNSUP_MIN_BYTES bytes, in order; how many were dropped)."""
    kept = [t for t in texts if utf8_length(t) >= UNSUP_MIN_BYTES]
    return kept, len(texts) - len(kept)


# --------------------------------------------------------------------------------- raw aclImdb
def check_acl_imdb(root):
    """DatasetNotFoundError (one line) unless root has aclImdb's five review folders."""
    missing = [f for f in ACL_FOLDERS if not os.path.isdir(os.path.join(root or "", f))]
    if not root or missing:
        raise DatasetNotFoundError(
            f"--imdb_dir={root!r} is not an aclImdb folder: missing {', '.join(missing)} (unpack aclImdb_v1.tar.gz "
            "from https://ai.stanford.edu/~amaas/data/sentiment/ and pass its aclImdb folder).")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return clean_review(f.read())


def _by_number(names):
    """aclImdb file names `<id>_<rating>.txt` in id order."""
    return sorted(names, key=lambda n: tuple(int(p) if p.isdigit() else p for p in re.split(r"[_.]", n)))


def _train_order(root):
    """[(folder, file name)] of train/{neg,pos,unsup}: UDA's train_id_list.txt order when present."""
    id_list = os.path.join(root, ID_LIST)
    if os.path.exists(id_list):
        with open(id_list) as f:
            entries = [line.strip() for line in f if line.strip()]
        order = [tuple(e.split("_", 1)) for e in entries]
        absent = [e for e, (label, name) in zip(entries, order)
                  if not os.path.exists(os.path.join(root, "train", label, name))]
        if absent:
            raise DatasetNotFoundError(f"{id_list} lists {len(absent)} reviews that {root}/train lacks, e.g. "
                                       f"{absent[0]}: remove the list to use the folder's own order.")
        # unsup_in is the train reviews, then the unsup ones: the list's own order only if it ends with them.
        first_unsup = next((i for i, (label, _) in enumerate(order) if label == "unsup"), len(order))
        late = [e for e, (label, _) in zip(entries[first_unsup:], order[first_unsup:]) if label != "unsup"]
        if late:
            raise DatasetNotFoundError(f"{id_list} lists labeled reviews after unsup ones (e.g. {late[0]}); UDA's "
                                       "list ends with the 50,000 unsup reviews: copy it from google-research/uda "
                                       "text/data/IMDB_raw/, or remove it.")
        return order, UDA_ORDER
    return ([(label, name) for label in ("neg", "pos", "unsup")
             for name in _by_number(os.listdir(os.path.join(root, "train", label)))],
            "neg, pos, unsup, each by file name (no train_id_list.txt)")


def read_acl_imdb(root):
    """ImdbCorpus of a raw aclImdb folder (see the module docstring for the order)."""
    check_acl_imdb(root)
    order, how = _train_order(root)
    train, unsup = [], []
    for label, name in order:
        text = _read(os.path.join(root, "train", label, name))
        (unsup if label == "unsup" else train).append((text, label, f"{label}_{name}"))
    unsup_texts, dropped = _keep_unsup([t for t, _, _ in unsup])
    test = [(_read(os.path.join(root, "test", label, name)), label)
            for label in LABELS for name in _by_number(os.listdir(os.path.join(root, "test", label)))]
    return ImdbCorpus(
        train_texts=[t for t, _, _ in train], train_labels=np.array([LABELS.index(y) for _, y, _ in train], np.int64),
        unsup_texts=unsup_texts, test_texts=[t for t, _ in test],
        test_labels=np.array([LABELS.index(y) for _, y in test], np.int64),
        train_names=[n for _, _, n in train],
        metadata={"source": "aclImdb", "path": os.path.abspath(root), "order": how, "uda_order": how == UDA_ORDER,
                  "unsup_dropped_short": dropped})


# --------------------------------------------------------------------------------------- TFDS
def prepared_imdb_builder(data_dir):
    """The TFDS imdb_reviews builder, or DatasetNotFoundError (one line) if it is not prepared there."""
    import tensorflow_datasets as tfds

    how = ("prepare it on a machine with internet (tfds build imdb_reviews --data_dir=DIR) and copy DIR here, "
           "or pass the raw aclImdb folder as --imdb_dir")
    try:
        builder = tfds.builder("imdb_reviews", data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 -- any failure means not usable
        raise DatasetNotFoundError(
            f"TFDS imdb_reviews cannot be opened under --data_dir={data_dir!r} ({e}): {how}.") from None
    if not builder.is_prepared():
        raise DatasetNotFoundError(f"TFDS imdb_reviews is not prepared under --data_dir={data_dir!r} "
                                   f"(no {builder.data_dir}): {how}.")
    return builder


def _tfds_split(builder, split):
    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(interleave_cycle_length=1, shuffle_seed=None)
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)
    texts, labels = [], []
    for example in tfds.as_numpy(ds):
        texts.append(clean_review(example["text"].decode("utf-8")))
        labels.append(int(example["label"]))
    return texts, np.array(labels, np.int64)


def read_tfds_imdb(data_dir):
    """ImdbCorpus of TFDS imdb_reviews (train, unsupervised, test), labels turned to UDA's."""
    builder = prepared_imdb_builder(data_dir)
    train_texts, train_y = _tfds_split(builder, "train")
    unsup_texts, dropped = _keep_unsup(_tfds_split(builder, "unsupervised")[0])
    test_texts, test_y = _tfds_split(builder, "test")
    return ImdbCorpus(train_texts=train_texts, train_labels=1 - train_y, unsup_texts=unsup_texts,
                      test_texts=test_texts, test_labels=1 - test_y, train_names=None,
                      metadata={"source": "tfds", "tfds_version": str(builder.version),
                                "data_dir": str(builder.data_dir), "order": "TFDS record order", "uda_order": False,
                                "unsup_dropped_short": dropped})


# -------------------------------------------------------------------------------------- split
@dataclasses.dataclass(frozen=True)
class TextSplit:
    """Indices into the train reviews (= unsup_in IDs): labeled (in UDA's order when UDA's),
    validation (sorted); labeled_source says how the labeled ones were chosen."""

    labeled: np.ndarray
    validation: np.ndarray
    labeled_source: str


def imdb_split(corpus, num_labeled, num_validation, seed):
    """UDA's labeled reviews when all are present (the first num_labeled of UDA_LABELED), else a seeded
    class-balanced pick; validation: seeded, class-balanced, disjoint from the labeled reviews."""
    if num_labeled < 1 or num_validation < 1:
        raise ValueError(f"num_labeled and num_validation must be >= 1, got {num_labeled}, {num_validation}.")
    labels = corpus.train_labels
    rng = np.random.default_rng([int(seed), SPLIT_STREAM])
    position = {name: i for i, name in enumerate(corpus.train_names or [])}
    wanted = UDA_LABELED[:num_labeled]
    if num_labeled <= len(UDA_LABELED) and all(name in position for name in wanted):
        labeled = np.array([position[name] for name in wanted], np.int64)
        source = f"UDA's {num_labeled} labeled reviews"
    else:
        if num_labeled + num_validation > len(labels):
            raise ValueError(f"{num_labeled} labeled + {num_validation} validation exceed the {len(labels)} "
                             "train reviews.")
        labeled = class_balanced_split(labels, [num_labeled], rng)[0]
        why = "TFDS has no review names" if corpus.train_names is None else "UDA's reviews are not all in the folder"
        source = f"seeded class-balanced pick of {num_labeled} ({why})"
    rest = np.setdiff1d(np.arange(len(labels)), labeled)
    if num_validation > len(rest):
        raise ValueError(f"{num_validation} validation reviews do not fit the {len(rest)} unlabeled train reviews.")
    validation = np.sort(rest[class_balanced_split(labels[rest], [num_validation], rng)[0]])
    return TextSplit(labeled=labeled, validation=validation, labeled_source=source)


@dataclasses.dataclass
class TextSSLData(SSLData):
    """SSLData of token ids ([N, L] int32) plus the augmented view of each unlabeled review
    (unlabeled_aug_x, row-aligned with unlabeled_x, made once offline as UDA's aug_copy=1)."""

    unlabeled_aug_x: Optional[np.ndarray] = None
    metadata: dict = dataclasses.field(default_factory=dict)


def imdb_ssl_data(corpus, split, ori_ids, aug_ids, test_ids):
    """TextSSLData from token ids of unsup_in (ori_ids, aug_ids: [N_in, L]) and of the test reviews.

    Unlabeled = unsup_in minus the validation reviews, labeled ones included (UDA's unsup_in holds
    them; the paper's 69,972 = UDA's set minus 20); unlabeled ID = unsup_in position.
    """
    num_train = len(corpus.train_texts)
    unlabeled = np.setdiff1d(np.arange(len(ori_ids)), split.validation)
    true_y = np.concatenate([corpus.train_labels, np.full(len(ori_ids) - num_train, -1, np.int64)])
    return TextSSLData(
        name="imdb", num_classes=len(LABELS),
        labeled_x=ori_ids[split.labeled], labeled_y=corpus.train_labels[split.labeled],
        unlabeled_x=ori_ids[unlabeled], unlabeled_ids=unlabeled.astype(np.int64), unlabeled_true_y=true_y[unlabeled],
        val_x=ori_ids[split.validation], val_y=corpus.train_labels[split.validation],
        test_x=test_ids, test_y=corpus.test_labels, unlabeled_aug_x=aug_ids[unlabeled],
        metadata={**corpus.metadata, "labeled": split.labeled_source, "num_unsup_in": len(ori_ids),
                  "labeled_ids": split.labeled.tolist(), "validation_ids": split.validation.tolist()})
