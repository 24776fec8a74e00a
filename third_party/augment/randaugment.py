"""RandAugment, in the two variants used by FixMatch and by UDA.

Clean-room reimplementation of
- google-research/fixmatch libml/augment.py (RandAugment + cutout pool, 'rac') with
  third_party/auto_augment/augmentations.py (Sohn et al., FixMatch, NeurIPS 2020), and
- google-research/uda image/randaugment/policies.py + augmentation_transforms.py
  (Xie et al., UDA, NeurIPS 2020; Cubuk et al., RandAugment, 2020 and AutoAugment, CVPR 2019).
No code copied; behaviour from the reading notes (ssl_anchors.md 2e, 3d).

Both variants: `num_ops` = 2 ops drawn uniformly with replacement; each is applied with probability
0.5 at an integer magnitude m uniform in 1..9 (PARAMETER_MAX 10); then a 16x16 cutout (at 32 px)
set to 0 (mid-gray in [-1, 1]; the dataset mean in UDA's normalized space).

Magnitude maps (sign random for rotate/shear/translate):
  rotate floor(3m) deg; shear 0.03m; translate m px at 32 px (scaled by size/32);
  solarize threshold 256 - floor(25.6m); posterize 4 - floor(0.4m) bits;
  color/contrast/brightness/sharpness factor 0.1 + 0.18m; UDA's Cutout op side 2m px at 32 px.
Areas exposed by geometric ops are set to `fill` = 0 (FixMatch's RGBA unwrap writes 0; UDA's
AutoAugment code writes 0 in mean/std-normalized space, i.e. the mean).

Order: FixMatch's strong view = weak (flip + crop) then RandAugment + cutout (`strong_fixmatch`);
UDA's augmented view = RandAugment + cutout (offline in UDA) then flip + crop online (`strong_uda`).
"""
import tensorflow as tf

from third_party.augment import ops
from third_party.augment._seed import map_batch, split
from third_party.augment.cutout import cutout, default_cutout_size
from third_party.augment.weak import weak_augment

FIXMATCH_OPS = (
    "Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "TranslateX", "TranslateY", "Posterize", "ShearY",
)
UDA_OPS = (
    "Invert", "Cutout", "Sharpness", "AutoContrast", "Posterize", "ShearX", "TranslateX",
    "TranslateY", "ShearY", "Rotate", "Equalize", "Contrast", "Color", "Solarize", "Brightness",
)
MAX_MAGNITUDE = 9  # integer magnitudes 1..9 (numpy randint(1, 10) in the originals)


def _factor(m):
    return 0.1 + 0.18 * tf.cast(m, tf.float32)


def op_table(fill=0.0, interpolation="NEAREST"):
    """name -> fn(image, m int32 scalar, sign float +-1, seed) for every RandAugment op."""

    def size(image, axis):
        return tf.cast(tf.shape(image)[axis], tf.float32)

    def translate_px(image, m, axis):
        return tf.cast(m, tf.float32) * size(image, axis) / 32.0

    def inner_cutout(image, m, seed):
        side = tf.cast(tf.round(2.0 * tf.cast(m, tf.float32) * tf.minimum(size(image, 0), size(image, 1)) / 32.0), tf.int32)
        return cutout(image, seed, tf.maximum(side, 1), fill)

    return {
        "Identity": lambda image, m, sign, seed: ops.identity(image),
        "AutoContrast": lambda image, m, sign, seed: ops.autocontrast(image),
        "Equalize": lambda image, m, sign, seed: ops.equalize(image),
        "Invert": lambda image, m, sign, seed: ops.invert(image),
        "Rotate": lambda image, m, sign, seed: ops.rotate(
            image, sign * tf.cast((30 * m) // 10, tf.float32), fill, interpolation),
        "Solarize": lambda image, m, sign, seed: ops.solarize(image, 256 - (256 * m) // 10),
        "Posterize": lambda image, m, sign, seed: ops.posterize(image, 4 - (4 * m) // 10),
        "Color": lambda image, m, sign, seed: ops.color(image, _factor(m)),
        "Contrast": lambda image, m, sign, seed: ops.contrast(image, _factor(m)),
        "Brightness": lambda image, m, sign, seed: ops.brightness(image, _factor(m)),
        "Sharpness": lambda image, m, sign, seed: ops.sharpness(image, _factor(m)),
        "ShearX": lambda image, m, sign, seed: ops.shear_x(
            image, sign * 0.03 * tf.cast(m, tf.float32), fill, interpolation),
        "ShearY": lambda image, m, sign, seed: ops.shear_y(
            image, sign * 0.03 * tf.cast(m, tf.float32), fill, interpolation),
        "TranslateX": lambda image, m, sign, seed: ops.translate_x(
            image, sign * translate_px(image, m, 1), fill, interpolation),
        "TranslateY": lambda image, m, sign, seed: ops.translate_y(
            image, sign * translate_px(image, m, 0), fill, interpolation),
        "Cutout": lambda image, m, sign, seed: inner_cutout(image, m, seed),
    }


def apply_op(image, op_index, magnitude, sign, seed, op_names, fill=0.0, interpolation="NEAREST"):
    """Apply op_names[op_index] (int32 tensor) at integer magnitude (int32 tensor) to one image."""
    image = tf.convert_to_tensor(image, tf.float32)
    table = op_table(fill, interpolation)

    def branch(fn):
        def run():
            out = fn(image, magnitude, sign, seed)
            out.set_shape(image.shape)
            return out

        return run

    out = tf.switch_case(tf.cast(op_index, tf.int32), [branch(table[name]) for name in op_names])
    out.set_shape(image.shape)
    return out


def randaugment(image, seed, op_names, num_ops=2, prob=0.5, magnitude=None, fill=0.0, interpolation="NEAREST"):
    """num_ops random ops (with replacement) from op_names, each applied with probability `prob` at
    a uniform integer magnitude 1..9 (or the fixed `magnitude`). No cutout."""
    image = tf.convert_to_tensor(image, tf.float32)
    for slot_seed in split(seed, num_ops):
        s_op, s_mag, s_apply, s_sign, s_inner = split(slot_seed, 5)
        op_index = tf.random.stateless_uniform([], s_op, minval=0, maxval=len(op_names), dtype=tf.int32)
        if magnitude is None:
            m = tf.random.stateless_uniform([], s_mag, minval=1, maxval=MAX_MAGNITUDE + 1, dtype=tf.int32)
        else:
            m = tf.constant(int(magnitude), tf.int32)
        sign = tf.where(tf.random.stateless_uniform([], s_sign) < 0.5, -1.0, 1.0)
        apply = tf.random.stateless_uniform([], s_apply) < prob
        current = image
        image = tf.cond(
            apply,
            lambda: apply_op(current, op_index, m, sign, s_inner, op_names, fill, interpolation),
            lambda: current,
        )
        image.set_shape(current.shape)
    return image


def randaugment_fixmatch(image, seed, num_ops=2, prob=0.5, cutout_size=None, fill=0.0, interpolation="NEAREST"):
    """FixMatch's RandAugment (14 ops) + cutout set to 0. cutout_size: pixels; default 16 at 32 px,
    scaled to min(H, W) (FixMatch: round(0.5 * size)). cutout_size=0 disables the cutout ('ra')."""
    image = tf.convert_to_tensor(image, tf.float32)
    aug_seed, cut_seed = split(seed, 2)
    out = randaugment(image, aug_seed, FIXMATCH_OPS, num_ops, prob, None, fill, interpolation)
    size = default_cutout_size(image) if cutout_size is None else cutout_size
    if size:
        out = cutout(out, cut_seed, size, 0.0)
    return out


def randaugment_uda(image, seed, num_ops=2, prob=0.5, cutout_size=None, fill=0.0, interpolation="NEAREST"):
    """UDA's RandAugment (15 ops incl. Invert and Cutout) + a 16x16 (at 32 px) cutout set to the mean (0)."""
    image = tf.convert_to_tensor(image, tf.float32)
    aug_seed, cut_seed = split(seed, 2)
    out = randaugment(image, aug_seed, UDA_OPS, num_ops, prob, None, fill, interpolation)
    size = default_cutout_size(image) if cutout_size is None else cutout_size
    if size:
        out = cutout(out, cut_seed, size, 0.0)
    return out


def strong_fixmatch(image, seed, flip=True, **kwargs):
    """FixMatch's strong view: weak augmentation first, then RandAugment + cutout."""
    weak_seed, ra_seed = split(seed, 2)
    return randaugment_fixmatch(weak_augment(image, weak_seed, flip=flip), ra_seed, **kwargs)


def strong_uda(image, seed, flip=True, **kwargs):
    """UDA's augmented view: RandAugment + cutout (offline in UDA), then flip + crop (online)."""
    ra_seed, weak_seed = split(seed, 2)
    return weak_augment(randaugment_uda(image, ra_seed, **kwargs), weak_seed, flip=flip)


def augment_batch_fixmatch(images, seed, **kwargs):
    """randaugment_fixmatch over [B, H, W, C] with per-image seeds split from `seed`."""
    return map_batch(lambda image, s: randaugment_fixmatch(image, s, **kwargs), images, seed)


def augment_batch_uda(images, seed, **kwargs):
    """randaugment_uda over [B, H, W, C] with per-image seeds split from `seed`."""
    return map_batch(lambda image, s: randaugment_uda(image, s, **kwargs), images, seed)


def strong_batch_fixmatch(images, seed, flip=True, **kwargs):
    """strong_fixmatch (weak, then RandAugment + cutout) over [B, H, W, C], per-image seeds from `seed`."""
    return map_batch(lambda image, s: strong_fixmatch(image, s, flip=flip, **kwargs), images, seed)


def strong_batch_uda(images, seed, flip=True, **kwargs):
    """strong_uda (RandAugment + cutout, then weak) over [B, H, W, C], per-image seeds from `seed`."""
    return map_batch(lambda image, s: strong_uda(image, s, flip=flip, **kwargs), images, seed)
