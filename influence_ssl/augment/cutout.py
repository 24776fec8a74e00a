"""Cutout (DeVries & Taylor, 2017) as appended by FixMatch and UDA, plus size scaling helpers.

Clean-room reimplementation of the cutout used in google-research/fixmatch (libml/augment.py,
libml/ctaugment.py; Sohn et al., FixMatch, NeurIPS 2020) and google-research/uda
(image/randaugment/augmentation_transforms.py; Xie et al., UDA, NeurIPS 2020). No code copied.

The square's centre is uniform over the image's pixels; the square spans
[centre - size//2, centre - size//2 + size) on each axis and is clipped at the borders.
Fill values in [-1, 1] units: FixMatch CTAugment gray 127 -> ops.GRAY_127; FixMatch RandAugment 0;
UDA the dataset mean after normalization, which is 0 here.
"""
import tensorflow as tf

from influence_ssl.augment import ops
from influence_ssl.augment._seed import as_seed

REFERENCE_SIZE = 32  # the originals' pixel sizes are for 32x32 images


def scale_pixels(pixels_at_32, image_size, reference=REFERENCE_SIZE):
    """A length given in pixels at 32 px, rescaled to `image_size` px (Python float; no rounding)."""
    return float(pixels_at_32) * float(image_size) / float(reference)


def scaled_size(pixels_at_32, image_size, reference=REFERENCE_SIZE):
    """round(pixels_at_32 * image_size / 32), at least 1: e.g. cutout 16 -> 16 at 32 px, 4 at 8 px."""
    return max(1, int(round(scale_pixels(pixels_at_32, image_size, reference))))


def default_cutout_size(image, pixels_at_32=16):
    """FixMatch/UDA's 16-px cutout scaled to min(H, W) of a statically shaped image."""
    shape = image.shape
    if shape[0] is None or shape[1] is None:
        raise ValueError("pass cutout_size explicitly for images of unknown size")
    return scaled_size(pixels_at_32, min(shape[0], shape[1]))


def cutout(image, seed, size, fill=0.0):
    """Cutout of side `size` (int or int tensor) at a uniformly random centre."""
    image = tf.convert_to_tensor(image, tf.float32)
    shape = tf.shape(image)
    u = tf.random.stateless_uniform([2], as_seed(seed), dtype=tf.float32)
    center = tf.minimum(tf.cast(tf.floor(u * tf.cast(shape[:2], tf.float32)), tf.int32), shape[:2] - 1)
    return ops.cutout_at(image, center[0], center[1], size, fill)
