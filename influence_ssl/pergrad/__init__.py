"""Per-example gradients (Ren et al. 2020, Sec. 3.1 / App. B) and the Sec. 4.4 baselines.

Math module: imports nothing else from influence_ssl.
"""
from influence_ssl.pergrad.api import METHODS, fastest_method, make_per_example_gradients_fn, per_example_gradients
from influence_ssl.pergrad.conv import CONV_IMPLS, conv2d_filter_grads
from influence_ssl.pergrad.registry import (
    REGISTRY,
    LayerRule,
    UnsupportedLayerError,
    get_layer_rule,
    register_layer_rule,
)

__all__ = [
    "CONV_IMPLS",
    "METHODS",
    "REGISTRY",
    "LayerRule",
    "UnsupportedLayerError",
    "conv2d_filter_grads",
    "fastest_method",
    "get_layer_rule",
    "make_per_example_gradients_fn",
    "per_example_gradients",
    "register_layer_rule",
]
