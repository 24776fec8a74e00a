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
    """FixMatch/UDA's 16-px cutout scaled to min(H, W) of a statically shaped image [(B,) H, W, C]."""
    height, width = image.shape[-3], image.shape[-2]
    if height is None or width is None:
        raise ValueError("pass cutout_size explicitly for images of unknown size")
    return scaled_size(pixels_at_32, min(height, width))


def cutout_at_position(image, position, size, fill=0.0):
    """Cutout of side `size` centred at the pixel at `position` ([2], or [B, 2] for a batch, in [0, 1)^2 of
    the height and width)."""
    image = tf.convert_to_tensor(image, tf.float32)
    hw = tf.shape(image)[-3:-1]
    center = tf.minimum(tf.cast(tf.floor(position * tf.cast(hw, tf.float32)), tf.int32), hw - 1)
    return ops.cutout_at(image, center[..., 0], center[..., 1], size, fill)


def cutout(image, seed, size, fill=0.0):
    """Cutout of side `size` (int or int tensor) at a uniformly random centre; one per image of a batch."""
    image = tf.convert_to_tensor(image, tf.float32)
    position = tf.random.stateless_uniform(tf.concat([tf.shape(image)[:-3], [2]], 0), as_seed(seed))
    return cutout_at_position(image, position, size, fill)
