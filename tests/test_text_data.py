"""IMDb reading, cleaning, the split (UDA's labeled ids, balance, disjointness), tokens and their cache,
back-translation files; on a fake aclImdb folder written here and on TFDS mock data."""
import os

import numpy as np
import pytest
from test_text_bert import WORDS, write_vocab

from influence_ssl.data import DatasetNotFoundError
from influence_ssl.data import text as text_data
from influence_ssl.data.text.imdb import UDA_LABELED, UNSUP_MIN_BYTES

POSITIVE, NEGATIVE = WORDS[16:21], WORDS[21:27]


def review(rng, words, length):
    body = " ".join(rng.choice(WORDS[:16] + words, size=length))
    return f"<br />{body}, &quot;{rng.choice(words)}&quot;!<br /><br />"


def write_acl_imdb(root, extra_per_class=20, unsup_long=8, unsup_short=4, test_per_class=6, seed=0,
                   drop=(), id_list=False):
    """aclImdb's layout with UDA's 20 labeled reviews (minus `drop`) plus `extra_per_class` more per class.
    With id_list, a train_id_list.txt in a shuffled order."""
    rng = np.random.default_rng(seed)
    files = []
    for label, words in (("pos", POSITIVE), ("neg", NEGATIVE)):
        names = [n[len(label) + 1:] for n in UDA_LABELED if n.startswith(label + "_") and n not in drop]
        names += [f"{20000 + i}_{8 if label == 'pos' else 2}.txt" for i in range(extra_per_class)]
        files += [("train", label, n, review(rng, words, 30)) for n in names]
        files += [("test", label, f"{i}_{7 if label == 'pos' else 3}.txt", review(rng, words, 30))
                  for i in range(test_per_class)]
    for i in range(unsup_long + unsup_short):
        length = 140 if i < unsup_long else 8  # ~700 vs ~60 characters
        files.append(("train", "unsup", f"{i}_0.txt", review(rng, POSITIVE if i % 2 else NEGATIVE, length)))
    for split, label, name, text in files:
        os.makedirs(os.path.join(root, split, label), exist_ok=True)
        with open(os.path.join(root, split, label, name), "w") as f:
            f.write(text)
    if id_list:  # as UDA's: the labeled reviews in a shuffled order, then the unsup ones (shuffled)
        train = [f"{label}_{name}" for split, label, name, _ in files if split == "train"]
        listed = [rng.permutation([n for n in train if (n.startswith("unsup_") == unsup)]) for unsup in (False, True)]
        with open(os.path.join(root, "train_id_list.txt"), "w") as f:
            f.write("\n".join([*listed[0], *listed[1]]) + "\n")
    return str(root)


def test_cleaning_follows_uda():
    text = ' A<br />b &quot;c&quot;<p>d <a href="x.html">link</a> e\\nf\\g '
    assert text_data.clean_review(text) == 'A b "c" d link e f g'
    assert text_data.clean_review("x <a href= broken") == "x  broken"


def test_acl_imdb_reading_labels_order_and_short_unsup(tmp_path):
    corpus = text_data.read_acl_imdb(write_acl_imdb(tmp_path / "aclImdb"))
    assert len(corpus.train_texts) == 60 and len(corpus.unsup_texts) == 8 and len(corpus.test_texts) == 12
    assert corpus.metadata["unsup_dropped_short"] == 4
    assert all(len(t) >= UNSUP_MIN_BYTES for t in corpus.unsup_texts)
    # neg, pos, unsup (train_id_list's class order); UDA's labels pos = 0, neg = 1.
    assert corpus.train_names[0].startswith("neg_") and corpus.train_names[-1].startswith("pos_")
    np.testing.assert_array_equal(corpus.train_labels, [1] * 30 + [0] * 30)
    np.testing.assert_array_equal(corpus.test_labels, [0] * 6 + [1] * 6)
    assert "<br />" not in corpus.train_texts[0] and '"' in corpus.train_texts[0]


def test_split_takes_udas_labeled_reviews_in_udas_order(tmp_path):
    corpus = text_data.read_acl_imdb(write_acl_imdb(tmp_path / "aclImdb"))
    split = text_data.imdb_split(corpus, 20, 20, seed=1)
    assert [corpus.train_names[i] for i in split.labeled] == list(UDA_LABELED)
    assert split.labeled_source == "UDA's 20 labeled reviews"
    assert UDA_LABELED[0] == "pos_9716_10.txt" and UDA_LABELED[1] == "neg_9851_1.txt"
    assert np.bincount(corpus.train_labels[split.validation]).tolist() == [10, 10]
    assert not set(split.labeled) & set(split.validation)
    assert not np.array_equal(split.validation, text_data.imdb_split(corpus, 20, 20, seed=2).validation)
    ori = np.arange(len(corpus.unsup_in_texts))[:, None].repeat(4, 1).astype(np.int32)  # row i holds i
    data = text_data.imdb_ssl_data(corpus, split, ori, ori + 1000, np.zeros((12, 4), np.int32))
    # Unlabeled: unsup_in minus validation, the labeled reviews kept (UDA's set; the paper's 69,972).
    assert len(data.unlabeled_ids) == 68 - 20 and set(split.labeled) <= set(data.unlabeled_ids)
    assert not set(split.validation) & set(data.unlabeled_ids)
    np.testing.assert_array_equal(data.unlabeled_x[:, 0], data.unlabeled_ids)  # ID = unsup_in position
    np.testing.assert_array_equal(data.unlabeled_aug_x[:, 0], data.unlabeled_ids + 1000)
    assert np.all(data.unlabeled_true_y[data.unlabeled_ids >= 60] == -1)
    np.testing.assert_array_equal(data.labeled_y, [0, 1] * 10)


def test_id_list_order_is_followed(tmp_path):
    root = write_acl_imdb(tmp_path / "aclImdb", id_list=True)
    corpus = text_data.read_acl_imdb(root)
    with open(os.path.join(root, "train_id_list.txt")) as f:
        listed = [line.strip() for line in f if line.strip()]
    assert corpus.train_names == [n for n in listed if not n.startswith("unsup_")]
    assert corpus.metadata["order"] == "UDA's train_id_list.txt"
    split = text_data.imdb_split(corpus, 20, 20, seed=1)
    assert [corpus.train_names[i] for i in split.labeled] == list(UDA_LABELED)


def test_a_list_with_labeled_reviews_after_unsup_ones_is_refused(tmp_path):
    root = write_acl_imdb(tmp_path / "aclImdb", id_list=True)
    path = os.path.join(root, "train_id_list.txt")
    with open(path) as f:
        names = f.read().split()
    with open(path, "w") as f:
        f.write("\n".join([names[-1], *names[:-1]]) + "\n")  # an unsup review first
    with pytest.raises(DatasetNotFoundError, match="lists labeled reviews after unsup ones") as e:
        text_data.read_acl_imdb(root)
    assert "\n" not in str(e.value)


def test_folder_without_udas_reviews_falls_back_to_a_seeded_balanced_pick(tmp_path):
    corpus = text_data.read_acl_imdb(write_acl_imdb(tmp_path / "aclImdb", drop=(UDA_LABELED[3],)))
    split = text_data.imdb_split(corpus, 20, 20, seed=1)
    assert "seeded class-balanced pick" in split.labeled_source and "not all in the folder" in split.labeled_source
    assert np.bincount(corpus.train_labels[split.labeled]).tolist() == [10, 10]
    assert not set(split.labeled) & set(split.validation)
    np.testing.assert_array_equal(split.labeled, text_data.imdb_split(corpus, 20, 20, seed=1).labeled)


def test_missing_imdb_is_one_line(tmp_path):
    (tmp_path / "aclImdb" / "train" / "pos").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="missing train/neg, train/unsup, test/pos, test/neg") as e:
        text_data.check_acl_imdb(str(tmp_path / "aclImdb"))
    assert "\n" not in str(e.value)
    with pytest.raises(DatasetNotFoundError, match="TFDS imdb_reviews is not prepared") as e:
        text_data.prepared_imdb_builder(str(tmp_path / "tfds"))
    assert "\n" not in str(e.value)


def test_tfds_mock_split_is_balanced_and_disjoint(tmp_path):
    import tensorflow_datasets as tfds

    builder = tfds.builder("imdb_reviews", data_dir=str(tmp_path))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
    with tfds.testing.mock_data(num_examples=60, data_dir=str(tmp_path)):
        corpus = text_data.read_tfds_imdb(str(tmp_path))
        raw = [int(ex["label"]) for ex in tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False))]
    np.testing.assert_array_equal(corpus.train_labels, 1 - np.array(raw))  # TFDS neg = 0 -> UDA's neg = 1
    assert corpus.train_names is None and corpus.metadata["source"] == "tfds"
    assert len(corpus.unsup_texts) == 0 and corpus.metadata["unsup_dropped_short"] == 60  # mock texts are short
    split = text_data.imdb_split(corpus, 10, 10, seed=0)
    assert "TFDS has no review names" in split.labeled_source
    for part in (split.labeled, split.validation):
        assert np.bincount(corpus.train_labels[part], minlength=2).tolist() == [5, 5]
    assert not set(split.labeled) & set(split.validation)


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    write_vocab(str(folder))
    return text_data.WordPiece(str(folder / "vocab.txt"))


def test_tokens_keep_the_tail_with_cls_and_sep(wordpiece):
    ids = wordpiece.encode(["the movie was great", "a b c d e f g h i j"], 6)
    vocab = {w: i for i, w in enumerate(open(wordpiece.vocab_path).read().split("\n"))}
    assert ids.dtype == np.int32 and ids.shape == (2, 6)
    expected = [vocab["[CLS]"], vocab["the"], vocab["movie"], vocab["was"], vocab["great"], vocab["[SEP]"]]
    assert ids[0].tolist() == expected
    assert ids[1].tolist() == [vocab["[CLS]"], vocab["g"], vocab["h"], vocab["i"], vocab["j"], vocab["[SEP]"]]
    short = wordpiece.encode(["fun"], 6)[0]
    assert short.tolist() == [vocab["[CLS]"], vocab["fun"], vocab["[SEP]"], 0, 0, 0]


def test_fast_tokenizer_matches_berts_python_tokenizer(wordpiece):
    from transformers import BertTokenizer

    slow = BertTokenizer(wordpiece.vocab_path, do_lower_case=True)
    texts = ["The MOVIE wasn't great!", "Café naïve (\"best\") co-operate", "tab\tand\u00a0space 中文 x\u0301y",
             "zzzz unknownword ... !!"]
    assert [slow.basic_tokenizer.tokenize(t) for t in texts] == [wordpiece.words(t) for t in texts]
    expected = [slow.convert_tokens_to_ids(slow.tokenize(t))[-6:] for t in texts]
    for row, tail in zip(wordpiece.encode(texts, 8), expected):
        assert row[1:1 + len(tail)].tolist() == tail


def test_token_cache_is_reused(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"ori": np.arange(6, dtype=np.int32).reshape(2, 3)}

    key = {"vocab_sha256": "x", "max_seq_length": 3}
    first = text_data.cached_arrays(str(tmp_path), key, [["a", "b"]], compute, log=lambda _: None)
    second = text_data.cached_arrays(str(tmp_path), key, [["a", "b"]], compute, log=lambda _: None)
    np.testing.assert_array_equal(first["ori"], second["ori"])
    assert len(calls) == 1 and len(os.listdir(tmp_path)) == 1
    text_data.cached_arrays(str(tmp_path), key, [["a", "c"]], compute, log=lambda _: None)  # other texts
    text_data.cached_arrays(str(tmp_path), {**key, "max_seq_length": 4}, [["a", "b"]], compute, log=lambda _: None)
    assert len(calls) == 3


def test_back_translation_rule_and_line_count(tmp_path):
    originals = ["a" * 20, "b" * 20, "c" * 5, "d" * 20]
    lines = ["A" * 29, "B" * 31, "C" * 6, "D" * 12]  # +45% ok, +55% no, original too short, -40% ok
    path = tmp_path / "para_0.txt"
    path.write_text("\n".join(lines) + "\n")
    texts, replaced = text_data.read_paraphrases(str(path), originals)
    assert texts == [lines[0], originals[1], originals[2], lines[3]]
    assert replaced.dtype == bool and replaced.tolist() == [True, False, False, True]
    assert not text_data.use_paraphrase("x" * 20, "short")
    path.write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(text_data.ParaphraseFileError, match="has 3 lines but the unlabeled set has 4 reviews"):
        text_data.read_paraphrases(str(path), originals)
    with pytest.raises(text_data.ParaphraseFileError, match="cannot be read"):
        text_data.read_paraphrases(str(tmp_path / "absent.txt"), originals)


def write_unsup(root, name, text):
    os.makedirs(os.path.join(root, "train", "unsup"), exist_ok=True)
    with open(os.path.join(root, "train", "unsup", name), "w", encoding="utf-8") as f:
        f.write(text)


def test_unsup_reviews_are_kept_by_utf8_bytes_as_udas_python_2_counted(tmp_path):
    root = write_acl_imdb(tmp_path / "aclImdb", unsup_long=0, unsup_short=0)
    accented = "é" * 110 + "a" * 290  # 400 characters, 510 bytes: UDA keeps it
    write_unsup(root, "1_0.txt", accented)
    write_unsup(root, "2_0.txt", "b" * 499)  # 499 bytes: dropped
    write_unsup(root, "3_0.txt", "c" * 500)  # 500 bytes: kept
    write_unsup(root, "4_0.txt", "ü" * 249 + "d")  # 250 characters, 499 bytes: dropped
    assert len(accented) == 400 and len(accented.encode("utf-8")) == 510
    corpus = text_data.read_acl_imdb(root)
    assert corpus.unsup_texts == [accented, "c" * 500] and corpus.metadata["unsup_dropped_short"] == 2


def test_back_translation_lengths_are_utf8_bytes_and_lines_split_at_newline_only(tmp_path):
    originals = ["a" * 20, "a" * 10, "é" * 10, "x" * 30]
    lines = ["é" * 16,  # 16 characters (-20%) but 32 bytes (+60%): refused
             "é" * 6,  # 6 characters (< 10) but 12 bytes (+20%): used
             "b" * 28,  # +180% in characters, +40% in bytes (the original is 20 bytes): used
             "y\ry" * 10]  # a lone carriage return does not end a line (Python 2's readlines)
    path = tmp_path / "para_0.txt"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    texts, replaced = text_data.read_paraphrases(str(path), originals)
    assert replaced.tolist() == [False, True, True, True] and texts[3] == "y\ry" * 10
    assert texts == [originals[0], lines[1], lines[2], lines[3]]
    path.write_bytes(b"ok line here\n\xff\xfe broken\n")
    with pytest.raises(text_data.ParaphraseFileError, match="line 2 is not UTF-8") as e:
        text_data.read_paraphrases(str(path), originals[:2])
    assert "\n" not in str(e.value)


def listed_order(root):
    """The names of train_id_list.txt whose review is in UDA's unsup_in (unsup ones of >= 500 bytes), in order,
    read here from the files, independently of the reader."""
    with open(os.path.join(root, "train_id_list.txt")) as f:
        names = [line.strip() for line in f if line.strip()]
    kept = []
    for name in names:
        label, file_name = name.split("_", 1)
        with open(os.path.join(root, "train", label, file_name), "rb") as f:
            if label != "unsup" or len(text_data.clean_review(f.read().decode("utf-8")).encode("utf-8")) >= 500:
                kept.append(name)
    return kept


def write_paraphrases(root, path, refuse_every=4):
    """UDA's para_0.txt for a fake folder with train_id_list.txt: line i = "<name i> " + review i, in the list's
    order; every `refuse_every`-th line three times as long (refused by the length rule). Returns the names."""
    names = listed_order(root)
    lines = []
    for i, name in enumerate(names):
        label, file_name = name.split("_", 1)
        with open(os.path.join(root, "train", label, file_name), encoding="utf-8") as f:
            review = text_data.clean_review(f.read())
        lines.append(review * 3 if i % refuse_every == 0 else f"{name} {review}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return names


def test_each_paraphrase_pairs_with_its_review_in_train_id_list_order(tmp_path):
    root = write_acl_imdb(tmp_path / "aclImdb", id_list=True)
    names = write_paraphrases(root, tmp_path / "para_0.txt")
    corpus = text_data.read_acl_imdb(root)
    assert corpus.metadata["uda_order"] and len(names) == len(corpus.unsup_in_texts) == 68
    texts, replaced = text_data.read_paraphrases(str(tmp_path / "para_0.txt"), corpus.unsup_in_texts)
    for i, (name, original, text) in enumerate(zip(names, corpus.unsup_in_texts, texts)):
        if i % 4:  # the i-th line names the i-th review of the list and holds that review
            assert replaced[i] and text == f"{name} {original}".strip(), (i, name)  # lines are stripped
        else:
            assert not replaced[i] and text == original
    # the train reviews' names, in the same order, are the corpus's
    assert [n for n in names if not n.startswith("unsup_")] == corpus.train_names
    assert not text_data.read_acl_imdb(write_acl_imdb(tmp_path / "unlisted")).metadata["uda_order"]
