"""Per-layer rules of the "fast" per-example gradient method (the whole supported set is REGISTRY below).

A rule turns what one call of a layer recorded during the batched forward, plus g = d(sum of losses)/dz
at the layer's (pre-activation) output z, into per-example parameter gradients [B, *param.shape].
Because the summed loss is linear in the examples' losses, g[b] is example b's own gradient at z
(Ren et al. Sec. 3.1); each rule is then the layer's ordinary weight-gradient formula without the
sum over the batch.

Rules are keyed by the *exact* layer class: a subclass (DepthwiseConv2D, SyncBatchNormalization, a
user subclass overriding call) may compute something else, so it is reported as unsupported rather
than silently matched. Register it explicitly if its math is the parent's.
"""
import dataclasses
from typing import Any, Callable, Dict, Optional

import tensorflow as tf
import tf_keras as keras

from influence_ssl.pergrad.conv import conv2d_filter_grads


class UnsupportedLayerError(ValueError):
    """A layer that owns requested variables has no (valid) rule for the "fast" method."""


@dataclasses.dataclass(frozen=True)
class LayerRule:
    """How "fast" handles one layer type.

    params(layer) -> {role: variable}: the variables the rule differentiates.
    check(layer) -> None, or a reason the configuration is unsupported (checked before instrumenting).
    capture(layer, x, call_args) -> what grads needs from one forward call (default: the input x);
        call_args are the other arguments of that call by name (e.g. "training", "mask").
    grads(layer, captured, g, conv_impl) -> {role: [B, *variable.shape]}.
    fused_activation: the layer applies layer.activation itself; z is then taken before it.
    """

    params: Callable[[Any], Dict[str, tf.Variable]]
    grads: Callable[..., Dict[str, tf.Tensor]]
    check: Callable[[Any], Optional[str]] = lambda layer: None
    capture: Callable[..., Any] = lambda layer, x, call_args: x
    fused_activation: bool = False


REGISTRY: Dict[type, LayerRule] = {}


def register_layer_rule(layer_type, rule):
    """Adds or replaces the rule of an exact layer class."""
    REGISTRY[layer_type] = rule


def get_layer_rule(layer):
    """The rule of type(layer), or None (exact-type lookup, see module docstring)."""
    return REGISTRY.get(type(layer))


def check_layer(layer):
    """Raises UnsupportedLayerError naming the layer if "fast" cannot differentiate it."""
    rule = get_layer_rule(layer)
    if rule is None:
        raise UnsupportedLayerError(
            f"per_example_gradients(method='fast') has no rule for layer {layer.name!r} of type "
            f"{type(layer).__module__}.{type(layer).__qualname__}, which owns requested variables. "
            f"Supported types (exact match): {sorted(t.__name__ for t in REGISTRY)}. Use method='loop' or "
            f"'vmap', exclude its variables, or register a rule (influence_ssl.pergrad.register_layer_rule)."
        )
    reason = rule.check(layer)
    if reason:
        raise UnsupportedLayerError(
            f"per_example_gradients(method='fast') does not support layer {layer.name!r} of type "
            f"{type(layer).__name__}: {reason}"
        )
    return rule


def _kernel_and_bias(layer):
    params = {"kernel": layer.kernel}
    if layer.use_bias:
        params["bias"] = layer.bias
    return params


# ---------------------------------------------------------------------------------------------- Dense
def dense_grads(layer, x, g, conv_impl=None):
    """x: [B, ..., Din], g: [B, ..., Dout] -> kernel [B, Din, Dout] (outer products summed over the
    middle axes), bias [B, Dout]."""
    del conv_impl
    grads = {}
    if x.shape.rank == 2:
        grads["kernel"] = tf.einsum("bi,bo->bio", x, g)
        if layer.use_bias:
            grads["bias"] = g
        return grads
    batch = tf.shape(x)[0]
    x3 = tf.reshape(x, [batch, -1, x.shape[-1]])  # [B, M, Din], M = product of middle dims
    g3 = tf.reshape(g, [batch, -1, g.shape[-1]])
    grads["kernel"] = tf.einsum("bmi,bmo->bio", x3, g3)
    if layer.use_bias:
        grads["bias"] = tf.reduce_sum(g3, axis=1)
    return grads


register_layer_rule(
    keras.layers.Dense, LayerRule(params=_kernel_and_bias, grads=dense_grads, fused_activation=True)
)


# --------------------------------------------------------------------------------------------- Conv2D
def conv2d_check(layer):
    if tuple(layer.dilation_rate) != (1, 1):
        return f"dilation_rate={layer.dilation_rate} (only 1 is supported)"
    if layer.data_format != "channels_last":
        return f"data_format={layer.data_format!r} (only 'channels_last' is supported)"
    if layer.groups != 1:
        return f"groups={layer.groups} (only 1 is supported)"
    if layer.padding not in ("same", "valid"):
        return f"padding={layer.padding!r}"
    return None


def conv2d_capture(layer, x, call_args):
    del call_args
    if x.shape.rank != 4:
        raise UnsupportedLayerError(
            f"layer {layer.name!r} (Conv2D) got an input of rank {x.shape.rank}; only [B, H, W, C] is supported"
        )
    return x


def conv2d_grads(layer, x, g, conv_impl="auto"):
    """x: [B, H, W, Cin], g: [B, Ho, Wo, Cout] -> kernel [B, kh, kw, Cin, Cout], bias [B, Cout]."""
    grads = {
        "kernel": conv2d_filter_grads(x, g, layer.kernel_size, layer.strides, layer.padding, impl=conv_impl)
    }
    if layer.use_bias:
        grads["bias"] = tf.reduce_sum(g, axis=[1, 2])
    return grads


register_layer_rule(
    keras.layers.Conv2D,
    LayerRule(
        params=_kernel_and_bias,
        grads=conv2d_grads,
        check=conv2d_check,
        capture=conv2d_capture,
        fused_activation=True,
    ),
)


# --------------------------------------------------------------------------------- BatchNormalization
def batch_norm_params(layer):
    params = {}
    if layer.scale:
        params["gamma"] = layer.gamma
    if layer.center:
        params["beta"] = layer.beta
    return params


def batch_norm_check(layer):
    if layer.renorm:
        return "renorm=True"
    if layer.virtual_batch_size is not None:
        return f"virtual_batch_size={layer.virtual_batch_size}"
    if layer.adjustment is not None:
        return "adjustment is set"
    if getattr(layer, "synchronized", False):
        return "synchronized=True (statistics span replicas)"
    if len(layer.axis) != 1:
        return f"axis={layer.axis} (only one feature axis is supported)"
    return None


def _batch_norm_training_value(layer, training):
    # Mirror the layer's own resolution: None -> learning phase, and trainable=False forces inference.
    resolve = getattr(layer, "_get_training_value", None)
    if resolve is not None:
        return resolve(training)
    return bool(training) and layer.trainable


def batch_norm_capture(layer, x, call_args):
    """Returns x_hat [B, ..., C], the normalized input the affine y = gamma * x_hat + beta acts on:
    batch moments (biased variance, as the layer normalizes with) in training, moving ones otherwise."""
    if call_args.get("mask") is not None:
        raise UnsupportedLayerError(f"layer {layer.name!r} (BatchNormalization) was called with a mask")
    training = call_args.get("training")
    axis = layer.axis[0] % x.shape.rank
    reduce_axes = [a for a in range(x.shape.rank) if a != axis]
    shape = [1] * x.shape.rank
    shape[axis] = x.shape[axis]
    x = tf.cast(x, layer.moving_mean.dtype)

    def normalize(mean, variance):
        mean, variance = tf.reshape(mean, shape), tf.reshape(variance, shape)
        return (x - mean) * tf.math.rsqrt(variance + layer.epsilon)

    def with_batch_stats():
        return normalize(*tf.nn.moments(x, reduce_axes))

    def with_moving_stats():
        return normalize(tf.convert_to_tensor(layer.moving_mean), tf.convert_to_tensor(layer.moving_variance))

    training = _batch_norm_training_value(layer, training)
    if isinstance(training, (bool, int)) or training is None:
        return with_batch_stats() if training else with_moving_stats()
    return tf.cond(tf.cast(training, tf.bool), with_batch_stats, with_moving_stats)


def batch_norm_grads(layer, x_hat, g, conv_impl=None):
    """x_hat, g: [B, ..., C] -> gamma row sum(g * x_hat), beta row sum(g) over the non-batch,
    non-feature axes, each [B, C]."""
    del conv_impl
    axis = layer.axis[0] % g.shape.rank
    sum_axes = [a for a in range(1, g.shape.rank) if a != axis]
    g = tf.cast(g, x_hat.dtype)
    grads = {}
    if layer.scale:
        grads["gamma"] = tf.reduce_sum(g * x_hat, axis=sum_axes)
    if layer.center:
        grads["beta"] = tf.reduce_sum(g, axis=sum_axes)
    return grads


register_layer_rule(
    keras.layers.BatchNormalization,
    LayerRule(
        params=batch_norm_params,
        grads=batch_norm_grads,
        check=batch_norm_check,
        capture=batch_norm_capture,
    ),
)
