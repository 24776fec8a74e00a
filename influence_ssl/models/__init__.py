"""Models. Each is a Classifier exposing `features(x, training)` and a Dense `head`."""
from influence_ssl.models.classifier import Classifier
from influence_ssl.models.mlp import two_layer_mlp

__all__ = ["Classifier", "two_layer_mlp"]
