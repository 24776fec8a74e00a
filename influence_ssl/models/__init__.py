"""Models. Each is a Classifier exposing `features(x, training)` and a Dense `head`."""
from influence_ssl.models.bert import BertFolderError, bert_classifier, load_bert
from influence_ssl.models.classifier import Classifier
from influence_ssl.models.mlp import two_layer_mlp
from influence_ssl.models.seeding import layer_seed
from influence_ssl.models.small_cnn import small_cnn
from influence_ssl.models.wide_resnet import VARIANTS as WRN_VARIANTS
from influence_ssl.models.wide_resnet import wide_resnet, wide_resnet_28_2

__all__ = ["Classifier", "two_layer_mlp", "layer_seed", "small_cnn", "wide_resnet", "wide_resnet_28_2",
           "WRN_VARIANTS", "bert_classifier", "load_bert", "BertFolderError"]
