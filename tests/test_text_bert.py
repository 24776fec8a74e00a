"""BERT folders in both formats (a tiny config written here), the name mapping and the classifier."""
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from influence_ssl.models.bert import BertFolderError, bert_classifier, bert_folder_format, load_bert

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("the a movie film was is it this and of to i not but very great good wonderful best loved fun "
         "bad awful boring worst hated dull plot acting story actor scene end time really just so").split()
VOCAB = SPECIAL + WORDS + list("abcdefghijklmnopqrstuvwxyz.,!?'-\"") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]


def tiny_config(**overrides):
    from transformers import BertConfig

    return BertConfig(**{"vocab_size": len(VOCAB), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "intermediate_size": 64, "max_position_embeddings": 64, **overrides})


def tiny_bert(seed=0, **overrides):
    from transformers import TFBertModel

    keras.utils.set_random_seed(seed)  # BERT's initializers are unseeded: seed every generator they may use
    bert = TFBertModel(tiny_config(**overrides))
    bert(bert.dummy_inputs, training=False)
    return bert


def write_vocab(folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(VOCAB) + "\n")


def google_name(variable_name):
    """Google's TF1 name of a TFBertModel variable, by string rules (independent of the package's
    mapping by layer role): tf_bert_model/bert/encoder/layer_._0/... -> bert/encoder/layer_0/..."""
    name = re.sub(r"^.*?(?=bert/)", "", variable_name.split(":")[0]).replace("layer_._", "layer_")
    for table in ("word_embeddings/weight", "token_type_embeddings/embeddings", "position_embeddings/embeddings"):
        name = name.replace(table, table.split("/")[0])
    return name


def write_google_folder(bert, folder, rename=google_name):
    """Google's layout: bert_config.json, a TF1 checkpoint bert_model.ckpt (with the pre-training heads'
    extra variables, which a loader must ignore) and vocab.txt."""
    write_vocab(folder)
    config = {k: v for k, v in bert.config.to_dict().items()
              if k in ("attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob", "hidden_size",
                       "initializer_range", "intermediate_size", "max_position_embeddings", "num_attention_heads",
                       "num_hidden_layers", "type_vocab_size", "vocab_size")}
    with open(os.path.join(folder, "bert_config.json"), "w") as f:
        json.dump(config, f)
    tensors = {rename(v.name): v.numpy() for v in bert.weights}
    tensors["cls/predictions/output_bias"] = np.zeros(len(VOCAB), np.float32)
    tensors["global_step"] = np.array(1000, np.int64)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=os.path.join(folder, "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[tensors[n] for n in names])


def write_transformers_folder(bert, folder):
    bert.save_pretrained(folder)
    write_vocab(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert")
    bert = tiny_bert(seed=3)
    write_google_folder(bert, str(root / "google"))
    write_transformers_folder(bert, str(root / "transformers"))
    return bert, str(root / "google"), str(root / "transformers")


def pooled(bert, ids):
    ids = tf.constant(ids, tf.int32)
    return bert(input_ids=ids, attention_mask=tf.cast(ids != 0, tf.int32), training=False).pooler_output.numpy()


IDS = np.array([[2, 7, 9, 11, 30, 3, 0, 0], [2, 12, 13, 3, 0, 0, 0, 0]], np.int32)


def test_both_formats_load_to_identical_outputs(folders):
    bert, google, transformers = folders
    assert bert_folder_format(google) == "google" and bert_folder_format(transformers) == "transformers"
    reference = pooled(bert, IDS)
    for folder in (google, transformers):
        np.testing.assert_allclose(pooled(load_bert(folder), IDS), reference, rtol=0, atol=1e-6)


def test_every_google_variable_is_mapped_by_role(folders):
    bert, google, _ = folders
    from influence_ssl.models.bert import google_checkpoint_names

    mapping = google_checkpoint_names(load_bert(google))
    assert len(mapping) == len(bert.weights) == 5 + 2 + 16 * 2
    assert "bert/encoder/layer_1/attention/self/query/kernel" in mapping


def test_misnamed_checkpoint_gives_one_clear_line(folders, tmp_path):
    bert, _, _ = folders
    folder = str(tmp_path / "misnamed")
    write_google_folder(bert, folder, rename=lambda name: name.split(":")[0])  # transformers' names
    with pytest.raises(BertFolderError, match=r"not a Google BERT checkpoint.*lacks bert/embeddings") as error:
        load_bert(folder)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("remove, message", [
    (None, "the folder does not exist"),
    ("vocab.txt", "vocab.txt is missing"),
    ("bert_model.ckpt.index", "found only"),
])
def test_incomplete_folder_names_the_expected_files(folders, tmp_path, remove, message):
    import shutil

    _, google, _ = folders
    folder = str(tmp_path / "copy")
    if remove is not None:
        shutil.copytree(google, folder)
        os.remove(os.path.join(folder, remove))
    with pytest.raises(BertFolderError, match=re.escape(message)) as error:
        bert_folder_format(folder)
    text = str(error.value)
    assert "\n" not in text and "bert_config.json" in text and "config.json + tf_model.h5" in text


def test_classifier_head_dropout_and_padding(folders):
    _, google, _ = folders
    model = bert_classifier(load_bert(google), num_classes=2, seq_length=8, seed=1)
    kernel = model.head.kernel.numpy()
    assert kernel.shape == (32, 2) and np.all(np.abs(kernel) <= 0.04) and np.all(model.head.bias.numpy() == 0)
    x = tf.constant(IDS)
    inference = model.features(x, training=False).numpy()
    np.testing.assert_array_equal(inference, model.features(x, training=False).numpy())
    assert not np.allclose(model.features(x, training=True).numpy(), inference)  # dropout 0.1 on the pooled output
    # Padding is masked: more zeros after [SEP] do not change the features.
    longer = tf.constant(np.pad(IDS, [(0, 0), (0, 8)]))
    np.testing.assert_allclose(model.features(longer, training=False).numpy(), inference, atol=1e-5)
    with pytest.raises(ValueError, match="exceeds the model's 64 positions"):
        bert_classifier(load_bert(google), seq_length=128)
