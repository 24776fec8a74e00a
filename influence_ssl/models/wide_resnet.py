"""Wide-ResNet-28-2 as in FixMatch (`libml/models.py`, class ResNet) and UDA HEAD (`image/randaugment/wrn.py`).

Written from the layer description in shared/ref/ssl_anchors.md §1 (no code copied). Both are
pre-activation WRNs: a 3x3 stem conv (16 channels), `num_stages` stages of `repeat` blocks with
widths filters·2^s (32/64/128), then BN-activation-global-average-pool (the embedding, 128-d)
and a Dense head. Trainable parameters: 1,469,642 (fixmatch) and 1,467,610 (uda); the two differ
only by the 2,032 conv biases.

Variant differences (all else equal):
  fixmatch: leaky ReLU(0.1); BN momentum 0.999, eps 1e-3; convs with bias; stage-0 block-0
            shortcut takes the BN-activated input ("activate_before_residual"); Glorot-normal head.
  uda:      ReLU; BN momentum 0.9, eps 1e-5; convs without bias; shortcuts always take the raw
            block input; head kernel uniform(±1/sqrt(num_classes)).
Shared: every block's first conv reads BN-act(input); a 1x1 conv shortcut (same stride) when the
width or stride changes; conv kernels N(0, 2/(k²·C_out)) untruncated (He normal on fan-out);
biases and BN beta 0, gamma 1; no dropout.

Inputs are float images already scaled by the caller (the project's default is FixMatch's
x·2/255 − 1 in [−1, 1]); the model does no pixel scaling of its own.

Only layers the per-example-gradient registry supports carry parameters (Conv2D, plain
BatchNormalization, Dense); LeakyReLU/ReLU, Add and GlobalAveragePooling2D are parameter-free.
"""
import math

import tf_keras as keras

from influence_ssl.models.classifier import Classifier
from influence_ssl.models.seeding import layer_seed

VARIANTS = ("fixmatch", "uda")

# Per-variant settings (see the module docstring and ref §1a/§1b).
_SETTINGS = {
    "fixmatch": dict(bn_momentum=0.999, bn_epsilon=1e-3, conv_bias=True, leaky_alpha=0.1,
                     activate_before_residual=True),
    "uda": dict(bn_momentum=0.9, bn_epsilon=1e-5, conv_bias=False, leaky_alpha=None,
                activate_before_residual=False),
}


class _Seeds:
    """A distinct seed per initializer (a seeded tf_keras initializer repeats its values)."""

    def __init__(self, seed):
        self.seed, self.count = seed, 0

    def next(self):
        self.count += 1
        return layer_seed(self.seed, self.count)


def conv_initializer(seed=None):
    """N(0, 2/(k²·C_out)), untruncated: He normal on fan-out (Keras fan_out = k·k·C_out)."""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out",
                                              distribution="untruncated_normal", seed=seed)


def head_initializer(variant, num_classes, seed=None):
    if variant == "fixmatch":
        # TF1 glorot_normal_initializer is a truncated normal with the 0.8796 std correction;
        # tf_keras GlorotNormal is the same distribution.
        return keras.initializers.GlorotNormal(seed=seed)
    limit = 1.0 / math.sqrt(num_classes)
    return keras.initializers.RandomUniform(-limit, limit, seed=seed)


def wide_resnet(num_classes=10, variant="fixmatch", input_shape=(32, 32, 3), seed=None, *,
                filters=32, repeat=4, num_stages=3, stem_filters=16, name=None):
    """A built pre-activation Wide-ResNet `Classifier`.

    Args:
      num_classes: width of the Dense head.
      variant: "fixmatch" or "uda" (see the module docstring).
      input_shape: (H, W, C) of the scaled float input.
      seed: int for reproducible initialization, or None.
      filters: width of stage 0 (FixMatch `--filters`, UDA `--wrn_size`); stage s has filters·2^s.
      repeat: blocks per stage (depth = 6·repeat + 4; 4 gives WRN-28).
      num_stages: stages (3: strides 1, 2, 2).
      stem_filters: channels of the 3x3 stem conv (16 in both codebases, independent of filters).
    Returns:
      Classifier whose backbone outputs the [B, filters·2^(num_stages−1)] pooled embedding and whose
      `head` is the Dense embedding -> num_classes layer.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown WRN variant {variant!r}; choose one of {VARIANTS}.")
    for label, value in [("filters", filters), ("repeat", repeat), ("num_stages", num_stages),
                         ("stem_filters", stem_filters), ("num_classes", num_classes)]:
        if value < 1:
            raise ValueError(f"{label} must be >= 1, got {value}.")
    cfg = _SETTINGS[variant]
    seeds = _Seeds(seed)
    L = keras.layers

    def conv(x, width, kernel, stride, name):
        return L.Conv2D(width, kernel, strides=stride, padding="same", use_bias=cfg["conv_bias"],
                        kernel_initializer=conv_initializer(seeds.next()),
                        bias_initializer="zeros", name=name)(x)

    def bn_act(x, name):
        x = L.BatchNormalization(momentum=cfg["bn_momentum"], epsilon=cfg["bn_epsilon"],
                                 name=f"{name}_bn")(x)
        if cfg["leaky_alpha"] is None:
            return L.ReLU(name=f"{name}_relu")(x)
        return L.LeakyReLU(alpha=cfg["leaky_alpha"], name=f"{name}_lrelu")(x)

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = conv(inputs, stem_filters, 3, 1, "stem_conv")
    for stage in range(num_stages):
        width = filters * 2**stage
        for block in range(repeat):
            stride = 2 if (stage > 0 and block == 0) else 1
            prefix = f"s{stage}_b{block}"
            shortcut = x
            h = bn_act(x, f"{prefix}_pre")
            if cfg["activate_before_residual"] and stage == 0 and block == 0:
                shortcut = h
            h = conv(h, width, 3, stride, f"{prefix}_conv1")
            h = bn_act(h, f"{prefix}_mid")
            h = conv(h, width, 3, 1, f"{prefix}_conv2")
            if stride != 1 or shortcut.shape[-1] != width:
                shortcut = conv(shortcut, width, 1, stride, f"{prefix}_shortcut")
            x = L.Add(name=f"{prefix}_add")([shortcut, h])
    x = bn_act(x, "final")
    embedding = L.GlobalAveragePooling2D(name="pool")(x)
    backbone = keras.Model(inputs, embedding, name="backbone")
    # The last block of Sec. 4.3: the last residual unit of the last stage, and the final BN before pooling.
    # `last_block_split` cuts at that unit's input, so the unit's shortcut (identity or 1x1 conv, the latter
    # not in the block's parameters) lies inside the block.
    last = f"s{num_stages - 1}_b{repeat - 1}"
    last_block = [f"{last}_pre_bn", f"{last}_conv1", f"{last}_mid_bn", f"{last}_conv2", "final_bn"]
    model = Classifier(backbone, num_classes,
                       head_initializer=head_initializer(variant, num_classes, seeds.next()),
                       last_block=[n for n in last_block if backbone.get_layer(n).trainable_variables],
                       name=name or f"wrn_{6 * repeat + 4}_{filters // 16}_{variant}")
    model.build((None, *input_shape))
    return model


def wide_resnet_28_2(num_classes=10, variant="fixmatch", input_shape=(32, 32, 3), seed=None, **kwargs):
    """WRN-28-2 (filters=32, repeat=4, 3 stages); kwargs override those for small test builds."""
    return wide_resnet(num_classes, variant, input_shape, seed, **kwargs)
