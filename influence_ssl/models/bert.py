"""BERT (transformers' TFBertModel, Keras 2) as a Classifier, the model of UDA's text experiments.

features(x) = dropout_0.1(pooled [CLS] output) [B, H], head = Dense(K) with truncated-normal(0.02)
kernel and zero bias, as UDA's `hidden_to_logits`. The input x is the token-id matrix [B, L] int32
of "[CLS] tokens [SEP]" padded with id 0; the attention mask is x != 0 and every token type is 0
(single-segment reviews), so a batch is one tensor like an image batch.

Weights come from a local folder (nothing is downloaded), in either format:
  transformers: config.json + tf_model.h5 (`save_pretrained` of a TF BERT);
  Google:       bert_config.json + bert_model.ckpt.{index,data-*} (+ vocab.txt), the folder UDA
                uses (uncased_L-12_H-768_A-12); its TF1 variables are assigned by name
                (`google_checkpoint_names`).
"""
import glob
import json
import os

import tensorflow as tf
import tf_keras as keras

from influence_ssl.models.classifier import Classifier
from influence_ssl.models.seeding import layer_seed

TRANSFORMERS_FILES = ("config.json", "tf_model.h5")
GOOGLE_FILES = ("bert_config.json", "bert_model.ckpt.index", "bert_model.ckpt.data-*")
VOCAB_FILE = "vocab.txt"


class BertFolderError(FileNotFoundError):
    """--bert_dir is missing, incomplete or holds a checkpoint that is not BERT's (one-line message)."""


def _expected(path):
    return (f"--bert_dir={path!r} must hold {VOCAB_FILE} and either a transformers TF BERT "
            f"({' + '.join(TRANSFORMERS_FILES)}) or Google's checkpoint ({', '.join(GOOGLE_FILES)}), "
            "e.g. uncased_L-12_H-768_A-12 unzipped")


def bert_folder_format(path):
    """"transformers" or "google" for a complete folder; BertFolderError naming what is missing."""
    if not path or not os.path.isdir(path):
        raise BertFolderError(f"{_expected(path)}; the folder does not exist.")
    has = lambda pattern: bool(glob.glob(os.path.join(glob.escape(path), pattern)))
    if not has(VOCAB_FILE):
        raise BertFolderError(f"{_expected(path)}; {VOCAB_FILE} is missing.")
    if all(has(f) for f in TRANSFORMERS_FILES):
        return "transformers"
    if all(has(f) for f in GOOGLE_FILES):
        return "google"
    present = sorted(os.listdir(path))
    raise BertFolderError(f"{_expected(path)}; found only {present}.")


def load_bert_config(path):
    """The transformers BertConfig of a folder in either format."""
    from transformers import BertConfig

    if bert_folder_format(path) == "transformers":
        return BertConfig.from_pretrained(path, local_files_only=True)
    with open(os.path.join(path, "bert_config.json")) as f:
        # Google's keys are BertConfig's; its "gelu" is the exact erf form, as transformers' "gelu".
        return BertConfig(**json.load(f))


def google_checkpoint_names(bert):
    """{Google TF1 variable name: variable of `bert`} for a TFBertModel (built), by layer role."""
    main = bert.bert
    emb = main.embeddings
    names = {"bert/embeddings/word_embeddings": emb.weight,
             "bert/embeddings/token_type_embeddings": emb.token_type_embeddings,
             "bert/embeddings/position_embeddings": emb.position_embeddings,
             "bert/embeddings/LayerNorm/gamma": emb.LayerNorm.gamma,
             "bert/embeddings/LayerNorm/beta": emb.LayerNorm.beta,
             "bert/pooler/dense/kernel": main.pooler.dense.kernel,
             "bert/pooler/dense/bias": main.pooler.dense.bias}
    for i, layer in enumerate(main.encoder.layer):
        prefix = f"bert/encoder/layer_{i}"
        dense = {"attention/self/query": layer.attention.self_attention.query,
                 "attention/self/key": layer.attention.self_attention.key,
                 "attention/self/value": layer.attention.self_attention.value,
                 "attention/output/dense": layer.attention.dense_output.dense,
                 "intermediate/dense": layer.intermediate.dense,
                 "output/dense": layer.bert_output.dense}
        for scope, d in dense.items():
            names[f"{prefix}/{scope}/kernel"], names[f"{prefix}/{scope}/bias"] = d.kernel, d.bias
        for scope, norm in {"attention/output/LayerNorm": layer.attention.dense_output.LayerNorm,
                            "output/LayerNorm": layer.bert_output.LayerNorm}.items():
            names[f"{prefix}/{scope}/gamma"], names[f"{prefix}/{scope}/beta"] = norm.gamma, norm.beta
    return names


def _load_google_checkpoint(bert, path):
    """Assign Google's checkpoint to `bert` (built); other variables in it (cls/*, Adam slots) are ignored."""
    prefix = os.path.join(path, "bert_model.ckpt")
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    targets = google_checkpoint_names(bert)
    missing = [name for name in targets if name not in shapes]
    if missing:
        raise BertFolderError(f"{prefix} is not a Google BERT checkpoint of this config: it lacks {missing[0]}"
                              f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''} "
                              f"(has e.g. {sorted(shapes)[:3]}).")
    for name, variable in targets.items():
        if list(shapes[name]) != variable.shape.as_list():
            raise BertFolderError(f"{prefix}: {name} has shape {shapes[name]}, bert_config.json says "
                                  f"{variable.shape.as_list()}.")
        variable.assign(reader.get_tensor(name))


def load_bert(path):
    """A built TFBertModel with the folder's weights (either format)."""
    from transformers import TFBertModel

    if bert_folder_format(path) == "transformers":
        return TFBertModel.from_pretrained(path, local_files_only=True)
    bert = TFBertModel(load_bert_config(path))
    bert(bert.dummy_inputs, training=False)
    _load_google_checkpoint(bert, path)
    return bert


class PooledBert(keras.Model):
    """Token ids [B, L] int32 (0 = padding) -> dropout(pooled output) [B, H]."""

    def __init__(self, bert, dropout=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.bert = bert
        self.dropout = keras.layers.Dropout(dropout, seed=layer_seed(seed, 1), name="pooled_dropout")

    def call(self, ids, training=False):
        ids = tf.cast(ids, tf.int32)
        pooled = self.bert(input_ids=ids, attention_mask=tf.cast(ids != 0, tf.int32),
                           token_type_ids=tf.zeros_like(ids), training=training).pooler_output
        return self.dropout(pooled, training=training)


def bert_classifier(bert, num_classes=2, seq_length=128, seed=None, dropout=0.1):
    """A built Classifier over `bert` (a TFBertModel: `load_bert(path)` or a fresh `TFBertModel(config)`).

    The bert model must be created under the mixed-precision policy the run uses."""
    if seq_length > bert.config.max_position_embeddings:
        raise ValueError(f"max_seq_length {seq_length} exceeds the model's {bert.config.max_position_embeddings} "
                         "positions.")
    model = Classifier(PooledBert(bert, dropout, seed, name="pooled_bert"), num_classes,
                       head_initializer=keras.initializers.TruncatedNormal(stddev=0.02, seed=layer_seed(seed, 0)),
                       name="bert_classifier")
    model(tf.zeros([1, seq_length], tf.int32))
    return model
