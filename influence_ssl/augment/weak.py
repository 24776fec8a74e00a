"""Weak augmentation: random horizontal flip, then reflect-pad and random crop (random translation).

Clean-room reimplementation of the weak augmentation of google-research/fixmatch (libml/augment.py,
the 'd' DEFAULT_AUGMENT; Sohn et al., FixMatch, NeurIPS 2020) and the online augmentation of
google-research/uda (image/data.py; Xie et al., UDA, NeurIPS 2020). No code copied.

CIFAR: flip with p = 0.5, reflect-pad 4 px (12.5% of 32) on every side, random crop back to size.
SVHN: `flip=False`. The pad scales with the image: round(0.125 * H) rows, round(0.125 * W) columns
(1 px for 8x8 digits), unless `pad` (pixels) is given.
"""
import tensorflow as tf

from influence_ssl.augment import ops
from influence_ssl.augment._seed import split

PAD_FRACTION = 0.125
FLIP_PROBABILITY = 0.5


def weak_augment(images, seed, flip=True, pad=None):
    """images [(B,) H, W, C] in [-1, 1]; seed [2]; returns each image flipped (p = FLIP_PROBABILITY) and
    translated.

    Pads of p rows (q columns) leave (2p + 1)(2q + 1) crops; each image's crop is drawn uniformly."""
    batch, unbatch = ops.as_batch(images)
    flip_seed, crop_seed = split(seed, 2)
    shape = tf.shape(batch)
    if flip:
        flipped = tf.random.stateless_uniform(shape[:1], flip_seed) < FLIP_PROBABILITY
        batch = tf.where(flipped[:, None, None, None], tf.reverse(batch, axis=[2]), batch)
    if pad is None:
        pads = tf.cast(tf.round(PAD_FRACTION * tf.cast(shape[1:3], tf.float32)), tf.int32)
    else:
        pads = tf.constant([pad, pad], tf.int32)
    padded = tf.pad(batch, [[0, 0], [pads[0], pads[0]], [pads[1], pads[1]], [0, 0]], mode="REFLECT")
    u = tf.random.stateless_uniform(tf.stack([shape[0], 2]), crop_seed)
    offsets = tf.minimum(tf.cast(tf.floor(u * tf.cast(2 * pads + 1, tf.float32)), tf.int32), 2 * pads)  # [B, 2]
    rows = offsets[:, :1] + tf.range(shape[1])[None]  # [B, H]
    cols = offsets[:, 1:] + tf.range(shape[2])[None]  # [B, W]
    out = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    return unbatch(tf.ensure_shape(out, batch.shape))
