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

Order: FixMatch's strong view = weak (flip + crop) then RandAugment + cutout (`strong_fixmatch`);
UDA's augmented view = RandAugment + cutout (offline in UDA) then flip + crop online (`strong_uda`).
"""
import tensorflow as tf

from influence_ssl.augment import ops
from influence_ssl.augment._seed import map_batch, split
from influence_ssl.augment.cutout import cutout, default_cutout_size
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
    """name -> fn(image [H, W, C], mask [H, W, 1], m int32 scalar, sign float +-1, seed) -> (image, mask).

    mask is the RGBA alpha in [0, 1]; see the module docstring for how each kind of op treats it.
    """

    def size(image, axis):
        return tf.cast(tf.shape(image)[axis], tf.float32)

    def translate_px(image, m, axis):
        return tf.cast(m, tf.float32) * size(image, axis) / 32.0

    def keep_alpha(fn):  # ImageEnhance ops (and Identity): alpha carried through
        return lambda image, mask, m, sign, seed: (fn(image, m), mask)

    def drop_alpha(fn):  # ops applied as op(img.convert('RGB')).convert('RGBA'): all visible
        return lambda image, mask, m, sign, seed: (fn(image, m), tf.ones_like(mask))

    def geometric(op, amount):
        # PIL fills RGBA exposures with (0, 0, 0, 0): black image, alpha 0.
        def run(image, mask, m, sign, seed):
            value = amount(image, m, sign)
            return op(image, value, ops.BLACK, interpolation), op(mask, value, 0.0, interpolation)

        return run

    def inner_cutout(image, mask, m, sign, seed):
        short = tf.minimum(size(image, 0), size(image, 1))
        side = tf.cast(tf.round(2.0 * tf.cast(m, tf.float32) * short / 32.0), tf.int32)
        channels = image.shape[-1]
        # One cutout over [image, alpha] so both get the same square: colour with alpha 0.
        out = cutout(tf.concat([image, mask], -1), seed, tf.maximum(side, 1), _cutout_colour(channels) + [0.0])
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
    """image [H, W, C] with alpha mask [H, W, 1] -> [H, W, C]: alpha-0 pixels set to `fill`."""
    return tf.where(mask < ALPHA_ZERO, tf.cast(fill, tf.float32), image)


def sample_policy(seed, op_names, num_ops=2, prob=0.5, magnitude=None):
    """Draw one RandAugment policy: (op indices [n] int32 into op_names, magnitudes [n] int32 in
    1..9 (or the fixed `magnitude`), signs [n] float +-1, applied [n] bool with P(True) = prob,
    per-op seeds [n, 2] int64), n = num_ops; ops drawn with replacement."""
    draws = []
    for slot_seed in split(seed, num_ops):
        s_op, s_mag, s_apply, s_sign, s_inner = split(slot_seed, 5)
        op_index = tf.random.stateless_uniform([], s_op, minval=0, maxval=len(op_names), dtype=tf.int32)
        if magnitude is None:
            m = tf.random.stateless_uniform([], s_mag, minval=1, maxval=MAX_MAGNITUDE + 1, dtype=tf.int32)
        else:
            m = tf.constant(int(magnitude), tf.int32)
        sign = tf.where(tf.random.stateless_uniform([], s_sign) < 0.5, -1.0, 1.0)
        applied = tf.random.stateless_uniform([], s_apply) < prob
        draws.append((op_index, m, sign, applied, s_inner))
    return tuple(tf.stack(column) for column in zip(*draws))


def apply_policy(image, op_indices, magnitudes, signs, seeds, op_names, applied=None, fill=0.0,
                 interpolation="NEAREST"):
    """Apply op_names[op_indices[i]] at magnitudes[i] (with signs[i], seeds[i] [2]) in order to one
    image [H, W, C], skipping ops whose applied[i] is False; returns [H, W, C].

    An alpha mask travels through the ops (module docstring); at the end alpha-0 pixels get `fill`.
    The number of ops must be static.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    op_indices = tf.convert_to_tensor(op_indices, tf.int32)
    magnitudes = tf.convert_to_tensor(magnitudes, tf.int32)
    signs = tf.convert_to_tensor(signs, tf.float32)
    seeds = tf.convert_to_tensor(seeds)
    num_ops = op_indices.shape[0]
    if num_ops is None:
        raise ValueError("apply_policy needs a static number of ops")
    applied = tf.ones([num_ops], tf.bool) if applied is None else tf.convert_to_tensor(applied, tf.bool)
    table = op_table(interpolation)
    mask = tf.ones_like(image[..., :1])
    for i in range(num_ops):
        image, mask = _step(image, mask, table, op_names, op_indices[i], magnitudes[i], signs[i], seeds[i], applied[i])
    return unwrap(image, mask, fill)


def _step(image, mask, table, op_names, op_index, m, sign, seed, applied):
    """One policy slot: (image, mask) -> op_names[op_index] applied to them if `applied`."""

    def branch(fn):
        def run():
            out, out_mask = fn(image, mask, m, sign, seed)
            out.set_shape(image.shape)
            out_mask.set_shape(mask.shape)
            return out, out_mask

        return run

    def switch():
        return tf.switch_case(op_index, [branch(table[name]) for name in op_names])

    out, out_mask = tf.cond(applied, switch, lambda: (image, mask))
    out.set_shape(image.shape)
    out_mask.set_shape(mask.shape)
    return out, out_mask


def apply_op(image, op_index, magnitude, sign, seed, op_names, fill=0.0, interpolation="NEAREST"):
    """Apply op_names[op_index] (int32 tensor) at integer magnitude (int32 tensor) to one image
    [H, W, C] as a policy of one op (exposed area -> `fill`)."""
    seed = tf.convert_to_tensor(seed)
    return apply_policy(image, [op_index], [magnitude], [sign], seed[None], op_names, None, fill, interpolation)


def randaugment(image, seed, op_names, num_ops=2, prob=0.5, magnitude=None, fill=0.0, interpolation="NEAREST"):
    """num_ops random ops (with replacement) from op_names, each applied with probability `prob` at
    a uniform integer magnitude 1..9 (or the fixed `magnitude`), on one image [H, W, C]. No cutout."""
    op_indices, magnitudes, signs, applied, seeds = sample_policy(seed, op_names, num_ops, prob, magnitude)
    return apply_policy(image, op_indices, magnitudes, signs, seeds, op_names, applied, fill, interpolation)


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
