"""Weak augmentation: random horizontal flip, then reflect-pad and random crop (random translation).

Clean-room reimplementation of the weak augmentation of google-research/fixmatch (libml/augment.py,
the 'd' DEFAULT_AUGMENT; Sohn et al., FixMatch, NeurIPS 2020) and the online augmentation of
google-research/uda (image/data.py; Xie et al., UDA, NeurIPS 2020). No code copied.

CIFAR: flip with p = 0.5, reflect-pad 4 px (12.5% of 32) on every side, random crop back to size.
SVHN: `flip=False`. The pad scales with the image: round(0.125 * H) rows, round(0.125 * W) columns
(1 px for 8x8 digits), unless `pad` (pixels) is given.
"""
import tensorflow as tf

from influence_ssl.augment._seed import map_batch, split

PAD_FRACTION = 0.125


def weak_augment(image, seed, flip=True, pad=None):
    """image [H, W, C] in [-1, 1]; seed [2]; returns the flipped (p=0.5) and translated image."""
    image = tf.convert_to_tensor(image, tf.float32)
    flip_seed, crop_seed = split(seed, 2)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    shape = tf.shape(image)
    if pad is None:
        hw = tf.cast(shape[:2], tf.float32)
        pads = tf.cast(tf.round(PAD_FRACTION * hw), tf.int32)
    else:
        pads = tf.constant([pad, pad], tf.int32)
    paddings = tf.stack([[pads[0], pads[0]], [pads[1], pads[1]], [0, 0]])
    padded = tf.pad(image, paddings, mode="REFLECT")
    out = tf.image.stateless_random_crop(padded, shape, crop_seed)
    out.set_shape(image.shape)
    return out


def augment_batch(images, seed, flip=True, pad=None):
    """weak_augment over [B, H, W, C] with per-image seeds split from `seed`."""
    return map_batch(lambda image, s: weak_augment(image, s, flip=flip, pad=pad), images, seed)
