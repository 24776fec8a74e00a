"""RandAugment, in the two variants used by FixMatch and by UDA.

Clean-room reimplementation of
- google-research/fixmatch libml/augment.py (RandAugment + cutout pool, 'rac') with
  third_party/auto_augment/augmentations.py (Sohn et al., FixMatch, NeurIPS 2020), and
- google-research/uda image/randaugment/policies.py + augmentation_transforms.py
  (Xie et al., UDA, NeurIPS 2020; Cubuk et al., RandAugment, 2020 and AutoAugment, CVPR 2019).
No code copied; behaviour from the reading notes (ssl_anchors.md 2e, 3d) and those files.

Both variants: `num_ops` = 2 ops drawn uniformly with replacement; each is applied with probability
0.5 at an integer magnitude m uniform in 1..9 (PARAMETER_MAX 10); then a 16x16 cutout (at 32 px)
set to 0 (mid-gray in [-1, 1]; the dataset mean in UDA's normalized space).

Magnitude maps (sign random for rotate/shear/translate):
  rotate floor(3m) deg; shear 0.03m; translate m px at 32 px (scaled by size/32);
  solarize threshold 256 - floor(25.6m); posterize 4 - floor(0.4m) bits;
  color/contrast/brightness/sharpness factor 0.1 + 0.18m; UDA's Cutout op side 2m px at 32 px.

Exposed areas. The originals run the ops of one call on a Pillow RGBA image (alpha 255) and at the
end ("unwrap") set every pixel with alpha 0 to 0. Here an alpha mask [H, W, 1] travels with the
image through the ops of one call (`apply_policy`), with the same rules:
- Rotate/Shear/Translate move image and mask together; exposed pixels are black with alpha 0.
- AutoContrast, Equalize, Posterize, Solarize, Invert work on RGB and drop alpha: exposed pixels
  enter the op as black (or whatever the previous op left there) and stay visible (alpha 1).
- Color, Contrast, Brightness, Sharpness keep alpha but compute on all pixels: Contrast's mean and
  Sharpness's smoothing see the black of exposed pixels.
- UDA's Cutout op writes (125, 122, 113) with alpha 0 (C = 1: its luma, 122).
- At the end, alpha-0 pixels become `fill` = 0 (FixMatch's unwrap writes 0; UDA's writes 0 in
  mean/std-normalized space, i.e. the mean).
One-channel images behave as RGB images with three equal channels.

Batches. Every function takes one image [H, W, C] or a batch [B, H, W, C] (one image is a batch of
one). A batch draws its policies at once, [B, num_ops] numbers per kind from sub-seeds of `seed` (row b
of a draw does not depend on B), and applies each op to the images that drew it in one call: a handful
of kernels per op rather than per image, which is most of a small model's step on a CPU. Image b gets
exactly what the op gives it alone (tests/test_augment_fill.py).

Order: FixMatch's strong view = weak (flip + crop) then RandAugment + cutout (`strong_fixmatch`);
UDA's augmented view = RandAugment + cutout (offline in UDA) then flip + crop online (`strong_uda`).
"""
from typing import NamedTuple

import tensorflow as tf

from influence_ssl.augment import ops
from influence_ssl.augment._seed import split
from influence_ssl.augment.cutout import cutout, cutout_at_position, default_cutout_size
from influence_ssl.augment.weak import weak_augment

FIXMATCH_OPS = (
    "Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "TranslateX", "TranslateY", "Posterize", "ShearY",
)
UDA_OPS = (
    "Invert", "Cutout", "Sharpness", "AutoContrast", "Posterize", "ShearX", "TranslateX",
    "TranslateY", "ShearY", "Rotate", "Equalize", "Contrast", "Color", "Solarize", "Brightness",
)
MAX_MAGNITUDE = 9  # integer magnitudes 1..9 (numpy randint(1, 10) in the originals)
UDA_CUTOUT_RGB = (125, 122, 113)  # pixel values of UDA's Cutout op (written with alpha 0)
# 'L' (ITU-R 601-2, integer) value of that colour, for one-channel images.
UDA_CUTOUT_GRAY = (UDA_CUTOUT_RGB[0] * 299 + UDA_CUTOUT_RGB[1] * 587 + UDA_CUTOUT_RGB[2] * 114 + 500) // 1000
ALPHA_ZERO = 0.5 / 255.0  # a mask below this is uint8 alpha 0 (only fractional with BILINEAR sampling)


def _factor(m):
    return 0.1 + 0.18 * tf.cast(m, tf.float32)


def _cutout_colour(channels):
    rgb = UDA_CUTOUT_RGB if channels == 3 else (UDA_CUTOUT_GRAY,) * channels
    return [v / ops.PIXEL_SCALE - 1.0 for v in rgb]


def op_table(interpolation="NEAREST"):
    """name -> fn(images, masks, m, sign, position) -> (images, masks), on one image [H, W, C] (mask
    [H, W, 1], m int32 scalar, sign float +-1, position [2]) or a batch ([B, ...], m and sign [B],
    position [B, 2]).

    mask is the RGBA alpha in [0, 1]; see the module docstring for how each kind of op treats it.
    position, uniform in [0, 1)^2, places what an op puts somewhere (UDA's Cutout op).
    """

    def size(image, axis):  # axis 0: height, 1: width
        return tf.cast(tf.shape(image)[axis - 3], tf.float32)

    def translate_px(image, m, axis):
        return tf.cast(m, tf.float32) * size(image, axis) / 32.0

    def keep_alpha(fn):  # ImageEnhance ops (and Identity): alpha carried through
        return lambda image, mask, m, sign, position: (fn(image, m), mask)

    def drop_alpha(fn):  # ops applied as op(img.convert('RGB')).convert('RGBA'): all visible
        return lambda image, mask, m, sign, position: (fn(image, m), tf.ones_like(mask))

    def geometric(op, amount):
        # PIL fills RGBA exposures with (0, 0, 0, 0): black image, alpha 0.
        def run(image, mask, m, sign, position):
            value = amount(image, m, sign)
            return op(image, value, ops.BLACK, interpolation), op(mask, value, 0.0, interpolation)

        return run

    def inner_cutout(image, mask, m, sign, position):
        short = tf.minimum(size(image, 0), size(image, 1))
        side = tf.cast(tf.round(2.0 * tf.cast(m, tf.float32) * short / 32.0), tf.int32)
        channels = image.shape[-1]
        # One cutout over [image, alpha] so both get the same square: colour with alpha 0.
        out = cutout_at_position(tf.concat([image, mask], -1), position, tf.maximum(side, 1),
                                 _cutout_colour(channels) + [0.0])
        return out[..., :channels], out[..., channels:]

    return {
        "Identity": keep_alpha(lambda image, m: ops.identity(image)),
        "AutoContrast": drop_alpha(lambda image, m: ops.autocontrast(image)),
        "Equalize": drop_alpha(lambda image, m: ops.equalize(image)),
        "Invert": drop_alpha(lambda image, m: ops.invert(image)),
        "Solarize": drop_alpha(lambda image, m: ops.solarize(image, 256 - (256 * m) // 10)),
        "Posterize": drop_alpha(lambda image, m: ops.posterize(image, 4 - (4 * m) // 10)),
        "Color": keep_alpha(lambda image, m: ops.color(image, _factor(m))),
        "Contrast": keep_alpha(lambda image, m: ops.contrast(image, _factor(m))),
        "Brightness": keep_alpha(lambda image, m: ops.brightness(image, _factor(m))),
        "Sharpness": keep_alpha(lambda image, m: ops.sharpness(image, _factor(m))),
        "Rotate": geometric(ops.rotate, lambda image, m, sign: sign * tf.cast((30 * m) // 10, tf.float32)),
        "ShearX": geometric(ops.shear_x, lambda image, m, sign: sign * 0.03 * tf.cast(m, tf.float32)),
        "ShearY": geometric(ops.shear_y, lambda image, m, sign: sign * 0.03 * tf.cast(m, tf.float32)),
        "TranslateX": geometric(ops.translate_x, lambda image, m, sign: sign * translate_px(image, m, 1)),
        "TranslateY": geometric(ops.translate_y, lambda image, m, sign: sign * translate_px(image, m, 0)),
        "Cutout": inner_cutout,
    }


def unwrap(image, mask, fill=0.0):
    """image [..., H, W, C] with alpha mask [..., H, W, 1] -> image: alpha-0 pixels set to `fill`."""
    return tf.where(mask < ALPHA_ZERO, tf.cast(fill, tf.float32), image)


class Policy(NamedTuple):
    """RandAugment policies of a batch: slot i of image b applies op_names[ops[b, i]] at magnitudes[b, i]
    with signs[b, i] (+-1) if applied[b, i], placing what it places at positions[b, i] ([2] in [0, 1))."""
    ops: tf.Tensor  # [B, n] int32
    magnitudes: tf.Tensor  # [B, n] int32, 1..9
    signs: tf.Tensor  # [B, n] float32
    applied: tf.Tensor  # [B, n] bool
    positions: tf.Tensor  # [B, n, 2] float32


def sample_policy(seed, batch, op_names, num_ops=2, prob=0.5, magnitude=None):
    """The Policy of `batch` images: num_ops ops each, drawn uniformly with replacement, each applied with
    probability `prob` at a uniform integer magnitude 1..9 (or the fixed `magnitude`) and a random sign."""
    s_op, s_mag, s_apply, s_sign, s_position = split(seed, 5)
    shape = tf.stack([batch, num_ops])
    op_indices = tf.random.stateless_uniform(shape, s_op, minval=0, maxval=len(op_names), dtype=tf.int32)
    if magnitude is None:
        m = tf.random.stateless_uniform(shape, s_mag, minval=1, maxval=MAX_MAGNITUDE + 1, dtype=tf.int32)
    else:
        m = tf.fill(shape, tf.constant(int(magnitude), tf.int32))
    signs = tf.where(tf.random.stateless_uniform(shape, s_sign) < 0.5, -1.0, 1.0)
    applied = tf.random.stateless_uniform(shape, s_apply) < prob
    positions = tf.random.stateless_uniform(tf.concat([shape, [2]], 0), s_position)
    return Policy(op_indices, m, signs, applied, positions)


# No Python control flow on tensors: AutoGraph's conversion would only cost tracing time (ten times the rest).
@tf.autograph.experimental.do_not_convert
def apply_policy(images, policy, op_names, fill=0.0, interpolation="NEAREST"):
    """Apply each image's policy (a Policy of [B, n] fields) to images [B, H, W, C], in slot order; returns
    [B, H, W, C]. Each op runs once per slot on the images that drew it.

    An alpha mask travels through the ops (module docstring); at the end alpha-0 pixels get `fill`.
    The number of slots must be static.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    num_ops = policy.ops.shape[1]
    if num_ops is None:
        raise ValueError("apply_policy needs a static number of ops")
    table = op_table(interpolation)
    masks = tf.ones_like(images[..., :1])
    for i in range(num_ops):
        for k, name in enumerate(op_names):
            if name == "Identity":
                continue
            chosen = tf.where(policy.applied[:, i] & tf.equal(policy.ops[:, i], k))  # [b, 1]
            images, masks = _apply_to(chosen, table[name], images, masks, policy.magnitudes[:, i],
                                      policy.signs[:, i], policy.positions[:, i])
    return unwrap(images, masks, fill)


def _apply_to(chosen, fn, images, masks, m, signs, positions):
    """(images, masks) with fn applied to the rows `chosen` [b, 1] (b may be 0)."""
    out, out_masks = fn(*(tf.gather_nd(t, chosen) for t in (images, masks, m, signs, positions)))
    return tf.tensor_scatter_nd_update(images, chosen, out), tf.tensor_scatter_nd_update(masks, chosen, out_masks)


def apply_op(image, op_index, magnitude, sign, op_names, position=(0.5, 0.5), fill=0.0, interpolation="NEAREST"):
    """Apply op_names[op_index] at integer magnitude with `sign` to one image [H, W, C] as a policy of one op
    (exposed area -> `fill`)."""
    policy = Policy(*(tf.reshape(tf.convert_to_tensor(v, dtype), [1, 1]) for v, dtype in
                      ((op_index, tf.int32), (magnitude, tf.int32), (sign, tf.float32), (True, tf.bool))),
                    tf.reshape(tf.convert_to_tensor(position, tf.float32), [1, 1, 2]))
    return apply_policy(tf.convert_to_tensor(image, tf.float32)[None], policy, op_names, fill, interpolation)[0]


def randaugment(images, seed, op_names, num_ops=2, prob=0.5, magnitude=None, fill=0.0, interpolation="NEAREST"):
    """num_ops random ops (with replacement) from op_names, each applied with probability `prob` at
    a uniform integer magnitude 1..9 (or the fixed `magnitude`), on images [(B,) H, W, C]. No cutout."""
    batch, unbatch = ops.as_batch(images)
    policy = sample_policy(seed, tf.shape(batch)[0], op_names, num_ops, prob, magnitude)
    return unbatch(apply_policy(batch, policy, op_names, fill, interpolation))


def _with_cutout(images, seed, op_names, num_ops, prob, cutout_size, fill, interpolation):
    images = tf.convert_to_tensor(images, tf.float32)
    aug_seed, cut_seed = split(seed, 2)
    out = randaugment(images, aug_seed, op_names, num_ops, prob, None, fill, interpolation)
    size = default_cutout_size(images) if cutout_size is None else cutout_size
    return cutout(out, cut_seed, size, 0.0) if size else out


def randaugment_fixmatch(images, seed, num_ops=2, prob=0.5, cutout_size=None, fill=0.0, interpolation="NEAREST"):
    """FixMatch's RandAugment (14 ops) + cutout set to 0, on images [(B,) H, W, C]. cutout_size: pixels;
    default 16 at 32 px, scaled to min(H, W) (FixMatch: round(0.5 * size)). 0 disables the cutout ('ra')."""
    return _with_cutout(images, seed, FIXMATCH_OPS, num_ops, prob, cutout_size, fill, interpolation)


def randaugment_uda(images, seed, num_ops=2, prob=0.5, cutout_size=None, fill=0.0, interpolation="NEAREST"):
    """UDA's RandAugment (15 ops incl. Invert and Cutout) + a 16x16 (at 32 px) cutout set to the mean (0)."""
    return _with_cutout(images, seed, UDA_OPS, num_ops, prob, cutout_size, fill, interpolation)


def strong_fixmatch(images, seed, flip=True, **kwargs):
    """FixMatch's strong view of images [(B,) H, W, C]: weak augmentation first, then RandAugment + cutout."""
    weak_seed, ra_seed = split(seed, 2)
    return randaugment_fixmatch(weak_augment(images, weak_seed, flip=flip), ra_seed, **kwargs)


def strong_uda(images, seed, flip=True, **kwargs):
    """UDA's augmented view of images [(B,) H, W, C]: RandAugment + cutout (offline in UDA), then flip + crop
    (online)."""
    ra_seed, weak_seed = split(seed, 2)
    return weak_augment(randaugment_uda(images, ra_seed, **kwargs), weak_seed, flip=flip)
