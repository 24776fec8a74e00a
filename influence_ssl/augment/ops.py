"""Image ops for weak augmentation, RandAugment and CTAugment, written in TensorFlow ops.

Clean-room reimplementation of the per-image transforms used by google-research/fixmatch
(libml/ctaugment.py, libml/augment.py, third_party/auto_augment/augmentations.py; Sohn et al.,
FixMatch, NeurIPS 2020; Berthelot et al., ReMixMatch, ICLR 2020) and google-research/uda
(image/randaugment/augmentation_transforms.py; Xie et al., UDA, NeurIPS 2020; Cubuk et al.,
AutoAugment, CVPR 2019 and RandAugment, 2020). Those codebases run the transforms in PIL on uint8
images; here each op is a TF function, written from the documented behaviour of the PIL
operations (ImageOps, ImageEnhance, ImageFilter, Image.transform). No code copied.

Conventions
- An image is float32 [H, W, C] in [-1, 1] (FixMatch's scaling x*2/255 - 1), C = 1 or 3, any size.
  The ops RandAugment uses also take a batch [B, H, W, C] with one parameter per image ([B]; a scalar
  applies to all): image b of the batch gets exactly what the op gives it alone.
- "Pixel" values below mean the 0..255 domain, u = (x + 1) * 127.5. Ops that quantize in PIL
  (posterize, solarize, equalize) round to integers in that domain; the others stay in float.
- Outputs are clipped to [-1, 1].
- Geometric ops use ImageProjectiveTransformV3, nearest-neighbour sampling by default (PIL's default
  for rotate/transform) and a constant `fill` (in [-1, 1] units) for exposed areas. CTAugment fills
  black, as PIL on RGB; RandAugment also moves an alpha mask with fill 0, as PIL on RGBA, and
  decides at the end what exposed pixels become (randaugment.py).
- Coordinates: x is the column (width) and y the row (height), y pointing down; index coordinates
  (pixel centres at integers).
"""
import functools
import math

import tensorflow as tf

PIXEL_SCALE = 127.5
GRAY_127 = 127.0 / PIXEL_SCALE - 1.0  # PIL gray (127, 127, 127) in [-1, 1]
BLACK = -1.0

# ImageFilter kernels (PIL's documented BLUR and SMOOTH filters), normalized to sum 1.
_BLUR_KERNEL = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]
_SMOOTH_KERNEL = [[1, 1, 1], [1, 5, 1], [1, 1, 1]]

# CTAugment's rescale picks one of PIL's 6 resampling filters, in this order.
RESCALE_METHODS = ("antialias", "bicubic", "bilinear", "box", "hamming", "nearest")


# --------------------------------------------------------------------------- helpers
def _image(image):
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape.rank not in (3, 4) or image.shape[-1] is None:
        raise ValueError(f"expected [H, W, C] or [B, H, W, C] with a known C, got {image.shape}")
    return image


def _per_image(value, image, dtype=tf.float32):
    """A parameter (scalar, or [B] for a batch) shaped to broadcast against `image`."""
    value = tf.cast(value, dtype)
    if image.shape.rank == 4 and value.shape.rank == 1:
        return value[:, None, None, None]
    return value


def as_batch(images):
    """images [H, W, C] or [B, H, W, C] as float32 [B, H, W, C], and the function that gives an output the
    input's rank back."""
    images = _image(images)
    if images.shape.rank == 3:
        return images[None], lambda out: out[0]
    return images, lambda out: out


def clip(image):
    return tf.clip_by_value(image, -1.0, 1.0)


def to_pixels(image):
    """[-1, 1] -> float 0..255."""
    return (tf.convert_to_tensor(image, tf.float32) + 1.0) * PIXEL_SCALE


def from_pixels(pixels):
    """float 0..255 -> [-1, 1], clipped."""
    return clip(pixels / PIXEL_SCALE - 1.0)


def _uint8_values(image):
    """Pixel values rounded to integers 0..255 (int32), as PIL's uint8 conversion would give."""
    return tf.cast(tf.clip_by_value(tf.round(to_pixels(image)), 0.0, 255.0), tf.int32)


def blend(image1, image2, weight):
    """PIL Image.blend: image1 * (1 - weight) + image2 * weight, clipped (weight may exceed 1)."""
    weight = _per_image(weight, tf.convert_to_tensor(image2))
    return clip(image1 + weight * (image2 - image1))


def grayscale(image):
    """ITU-R 601-2 luma (PIL's 'L' conversion weights) broadcast back to C channels; C=1: identity."""
    image = _image(image)
    if image.shape[-1] == 1:
        return image
    if image.shape[-1] != 3:
        raise ValueError("colour ops need C = 1 or 3")
    weights = tf.constant([0.299, 0.587, 0.114], tf.float32)
    gray = tf.reduce_sum(image * weights, axis=-1, keepdims=True)
    return tf.broadcast_to(gray, tf.shape(image))


def _filter3(image, kernel):
    """PIL-style 2D filter: interior pixels convolved with `kernel`, border pixels left unfiltered."""
    image = _image(image)
    k = len(kernel)
    p = k // 2
    channels = image.shape[-1]
    weights = tf.constant(kernel, tf.float32)
    weights = weights / tf.reduce_sum(weights)
    weights = tf.tile(weights[:, :, None, None], [1, 1, channels, 1])
    batch, unbatch = as_batch(image)
    # Interior pixels never see SAME's zero padding; the border keeps the image.
    filtered = unbatch(tf.nn.depthwise_conv2d(batch, weights, strides=[1, 1, 1, 1], padding="SAME"))
    height, width = _height_width(image)
    rows = tf.range(height)
    cols = tf.range(width)
    inside = ((rows >= p) & (rows < height - p))[:, None] & ((cols >= p) & (cols < width - p))[None, :]
    return tf.where(inside[:, :, None], filtered, image)


def _height_width(image):
    shape = tf.shape(image)
    return shape[-3], shape[-2]


# --------------------------------------------------------------------------- colour / value ops
def identity(image):
    return _image(image)


def invert(image):
    """255 - u in pixel units, i.e. -x in [-1, 1]."""
    return -_image(image)


def autocontrast(image):
    """Per channel, map [min, max] linearly onto [0, 255] (PIL ImageOps.autocontrast, cutoff 0).

    A constant channel is left unchanged.
    """
    image = _image(image)
    lo = tf.reduce_min(image, axis=[-3, -2], keepdims=True)
    hi = tf.reduce_max(image, axis=[-3, -2], keepdims=True)
    scale = 2.0 / tf.maximum(hi - lo, 1e-12)
    stretched = (image - lo) * scale - 1.0
    return clip(tf.where(hi > lo, stretched, image))


def equalize(image):
    """Per-channel histogram equalization on the rounded 0..255 values (PIL ImageOps.equalize).

    With h the 256-bin histogram of a channel and step = (number of pixels - count of the largest
    present value) // 255, the look-up table is lut[i] = (step // 2 + sum_{j<i} h[j]) // step,
    clipped to 255; step == 0 leaves the channel unchanged.
    """
    image = _image(image)
    batch, unbatch = as_batch(image)
    shape = tf.shape(batch)
    values = _uint8_values(batch)
    flat = tf.reshape(tf.transpose(values, [0, 3, 1, 2]), [shape[0] * shape[3], -1])  # [B C, HW]
    hist = tf.math.bincount(flat, minlength=256, maxlength=256, axis=-1)  # [B C, 256]
    levels = tf.range(256, dtype=tf.int32)
    total = tf.reduce_sum(hist, axis=-1)
    last = tf.reduce_max(tf.where(hist > 0, levels[None, :], -1), axis=-1)
    last_count = tf.gather(hist, last, batch_dims=1)
    step = (total - last_count) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    cumulative = tf.cumsum(hist, axis=-1, exclusive=True)
    lut = tf.minimum((cumulative + safe_step // 2) // safe_step, 255)
    lut = tf.where(step[:, None] > 0, lut, levels[None, :])
    out = tf.gather(lut, flat, batch_dims=1)
    out = tf.transpose(tf.reshape(out, [shape[0], shape[3], shape[1], shape[2]]), [0, 2, 3, 1])
    return unbatch(from_pixels(tf.cast(out, tf.float32)))


def solarize(image, threshold):
    """Invert the pixels whose 0..255 value is >= threshold (threshold 256: identity; 0: invert)."""
    image = _image(image)
    values = tf.cast(_uint8_values(image), tf.float32)
    return tf.where(values >= _per_image(threshold, image), -image, image)


def posterize(image, bits):
    """Keep the `bits` most significant bits of each rounded 0..255 value (bits in 1..8)."""
    image = _image(image)
    shift = 8 - tf.clip_by_value(_per_image(bits, image, tf.int32), 0, 8)
    values = _uint8_values(image)
    values = tf.bitwise.left_shift(tf.bitwise.right_shift(values, shift), shift)
    return from_pixels(tf.cast(values, tf.float32))


def color(image, factor):
    """Saturation (PIL ImageEnhance.Color): blend(grayscale, image, factor). Identity for C=1."""
    image = _image(image)
    return blend(grayscale(image), image, factor)


def contrast(image, factor):
    """PIL ImageEnhance.Contrast: blend(mean grey level (rounded, pixel units), image, factor)."""
    image = _image(image)
    mean = tf.reduce_mean(to_pixels(grayscale(image)), axis=[-3, -2, -1], keepdims=True)
    degenerate = tf.broadcast_to(tf.floor(mean + 0.5) / PIXEL_SCALE - 1.0, tf.shape(image))
    return blend(degenerate, image, factor)


def brightness(image, factor):
    """PIL ImageEnhance.Brightness: blend(black, image, factor)."""
    image = _image(image)
    return blend(tf.fill(tf.shape(image), BLACK), image, factor)


def smooth(image):
    """PIL ImageFilter.SMOOTH (3x3 kernel 1,1,1/1,5,1/1,1,1 over 13); 1-px border unfiltered."""
    return _filter3(image, _SMOOTH_KERNEL)


def blur(image):
    """PIL ImageFilter.BLUR (5x5 ring of ones over 16); 2-px border unfiltered."""
    return _filter3(image, _BLUR_KERNEL)


def sharpness(image, factor):
    """PIL ImageEnhance.Sharpness: blend(smoothed image, image, factor)."""
    image = _image(image)
    return blend(smooth(image), image, factor)


# --------------------------------------------------------------------------- geometric ops
def transform(image, matrix, fill=BLACK, interpolation="NEAREST"):
    """Projective transform: output pixel (x, y) samples input at
    ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k), k = c0 x + c1 y + 1, matrix = [a0..c1] (8; [B, 8] for
    a batch). Points outside the input get `fill` (in [-1, 1] units)."""
    image = _image(image)
    batch, unbatch = as_batch(image)
    matrix = tf.reshape(tf.cast(matrix, tf.float32), [-1, 8])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=batch,
        transforms=matrix,
        output_shape=tf.shape(batch)[1:3],
        fill_value=tf.cast(fill, tf.float32),
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )
    out = unbatch(out)
    out.set_shape(image.shape)
    return out


def _affine(a0, a1, a2, b0, b1, b2):
    """The 8-vector (or [B, 8]) of an affine transform; each coefficient a scalar or [B]."""
    parts = [tf.cast(c, tf.float32) for c in (a0, a1, a2, b0, b1, b2)]
    shape = functools.reduce(tf.broadcast_dynamic_shape, [tf.shape(c) for c in parts])
    parts = [tf.broadcast_to(c, shape) for c in parts] + [tf.zeros(shape)] * 2
    return tf.stack(parts, axis=-1)


def rotate(image, degrees, fill=BLACK, interpolation="NEAREST"):
    """Rotate counter-clockwise (as displayed, PIL's sense) by `degrees` about the image centre."""
    image = _image(image)
    theta = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    height, width = _height_width(image)
    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(theta), tf.sin(theta)
    matrix = _affine(cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)
    return transform(image, matrix, fill, interpolation)


def shear_x(image, shear, fill=BLACK, interpolation="NEAREST"):
    """Horizontal shear about the top-left corner, as PIL's Image.transform(AFFINE, (1, shear, 0, 0, 1, 0)):
    PIL maps pixel centres (x + 0.5, y + 0.5) to x_in = x + 0.5 + shear * (y + 0.5), which in index
    coordinates is x + shear * (y + 0.5)."""
    shear = tf.cast(shear, tf.float32)
    return transform(image, _affine(1.0, shear, 0.5 * shear, 0.0, 1.0, 0.0), fill, interpolation)


def shear_y(image, shear, fill=BLACK, interpolation="NEAREST"):
    """Vertical shear (PIL AFFINE (1, 0, 0, shear, 1, 0)): output (x, y) samples input (x, y + shear * (x + 0.5))."""
    shear = tf.cast(shear, tf.float32)
    return transform(image, _affine(1.0, 0.0, 0.0, shear, 1.0, 0.5 * shear), fill, interpolation)


def translate_x(image, pixels, fill=BLACK, interpolation="NEAREST"):
    """Move the content right by `pixels` (negative: left). Note PIL's AFFINE offset has the opposite
    sign (content moves left by a positive offset)."""
    pixels = tf.cast(pixels, tf.float32)
    return transform(image, _affine(1.0, 0.0, -pixels, 0.0, 1.0, 0.0), fill, interpolation)


def translate_y(image, pixels, fill=BLACK, interpolation="NEAREST"):
    """Move the content down by `pixels` (negative: up)."""
    pixels = tf.cast(pixels, tf.float32)
    return transform(image, _affine(1.0, 0.0, 0.0, 0.0, 1.0, -pixels), fill, interpolation)


def flip_left_right(image):
    return tf.reverse(_image(image), axis=[-2])


def _filter_weights(name, x):
    """PIL's resampling kernels (documented filter definitions) evaluated at x."""
    ax = tf.abs(x)
    if name == "box":
        return tf.where((x >= -0.5) & (x < 0.5), 1.0, 0.0)
    if name == "bilinear":
        return tf.maximum(1.0 - ax, 0.0)
    if name == "hamming":
        px = math.pi * tf.maximum(ax, 1e-12)
        value = tf.sin(px) / px * (0.54 + 0.46 * tf.cos(px))
        return tf.where(ax < 1e-12, 1.0, tf.where(ax < 1.0, value, 0.0))
    if name == "bicubic":  # Keys cubic, a = -0.5
        a = -0.5
        near = ((a + 2.0) * ax - (a + 3.0)) * ax * ax + 1.0
        far = (((ax - 5.0) * ax + 8.0) * ax - 4.0) * a
        return tf.where(ax < 1.0, near, tf.where(ax < 2.0, far, 0.0))
    if name == "antialias":  # Lanczos, 3 lobes

        def sinc(t):
            pt = math.pi * tf.maximum(tf.abs(t), 1e-12)
            return tf.where(tf.abs(t) < 1e-12, 1.0, tf.sin(pt) / pt)

        return tf.where(ax < 3.0, sinc(x) * sinc(x / 3.0), 0.0)
    raise ValueError(name)


_SUPPORT = {"box": 0.5, "bilinear": 1.0, "hamming": 1.0, "bicubic": 2.0, "antialias": 3.0}


def _resample_matrix(name, in_size, out_size):
    """[out, in] weights of PIL-style separable resampling along one axis."""
    in_f = tf.cast(in_size, tf.float32)
    out_f = tf.cast(out_size, tf.float32)
    scale = in_f / out_f
    filter_scale = tf.maximum(scale, 1.0)
    centers = (tf.range(out_f) + 0.5) * scale  # [out]
    positions = tf.range(in_f) + 0.5  # [in]
    arg = (positions[None, :] - centers[:, None]) / filter_scale
    weights = _filter_weights(name, arg)
    inside = tf.abs(positions[None, :] - centers[:, None]) < _SUPPORT[name] * filter_scale + 0.5
    weights = tf.where(inside, weights, 0.0)
    return weights / tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1e-12)


def resize(image, height, width, method):
    """Resize [h, w, C] to [height, width, C] with one of PIL's filters (RESCALE_METHODS names).
    nearest samples input floor((i + 0.5) * in / out); the others are separable convolutions with
    PIL's kernels, widened by the scale factor when downsampling."""
    image = _image(image)
    shape = tf.shape(image)
    if method == "nearest":
        def source(out_size, in_size):  # floor((i + 0.5) * in / out), clipped to the input
            position = (tf.range(tf.cast(out_size, tf.float32)) + 0.5) * tf.cast(in_size, tf.float32)
            index = tf.cast(tf.floor(position / tf.cast(out_size, tf.float32)), tf.int32)
            return tf.minimum(index, in_size - 1)

        return tf.gather(tf.gather(image, source(height, shape[0]), axis=0), source(width, shape[1]), axis=1)
    wy = _resample_matrix(method, shape[0], height)
    wx = _resample_matrix(method, shape[1], width)
    # Horizontal pass first, stored on the uint8 grid (clipped and rounded) as PIL does, then vertical.
    out = tf.einsum("pj,ijc->ipc", wx, image)
    out = from_pixels(tf.round(tf.clip_by_value(to_pixels(out), 0.0, 255.0)))
    return tf.einsum("oi,ipc->opc", wy, out)


def rescale(image, margin, method_index):
    """Crop round(margin * size) pixels from each side, then resize back to the original size.

    margin: fraction of the height/width (CTAugment uses 0.25 * level). method_index: integer
    0..5 into RESCALE_METHODS (PIL's antialias/Lanczos, bicubic, bilinear, box, hamming, nearest).
    """
    image = _image(image)
    shape = tf.shape(image)
    margin = tf.cast(margin, tf.float32)
    my = tf.cast(tf.round(margin * tf.cast(shape[0], tf.float32)), tf.int32)
    mx = tf.cast(tf.round(margin * tf.cast(shape[1], tf.float32)), tf.int32)
    my = tf.clip_by_value(my, 0, (shape[0] - 1) // 2)
    mx = tf.clip_by_value(mx, 0, (shape[1] - 1) // 2)
    crop = image[my : shape[0] - my, mx : shape[1] - mx]

    def branch(method):
        def fn():
            out = tf.reshape(resize(crop, shape[0], shape[1], method), shape)
            out.set_shape(image.shape)
            return out

        return fn

    index = tf.clip_by_value(tf.cast(method_index, tf.int32), 0, len(RESCALE_METHODS) - 1)
    out = tf.switch_case(index, [branch(m) for m in RESCALE_METHODS])
    out.set_shape(image.shape)
    return clip(out)


def cutout_at(image, center_y, center_x, size, fill):
    """Set the size x size square with rows [center_y - size//2, center_y - size//2 + size) (and the
    same for columns) to `fill`, clipped at the borders. For a batch, centres and sizes are scalars or [B]."""
    image = _image(image)
    height, width = _height_width(image)
    size = tf.cast(size, tf.int32)
    top = tf.cast(center_y, tf.int32) - size // 2
    left = tf.cast(center_x, tf.int32) - size // 2

    def span(start, length):  # [length] or [B, length]: inside the square along one axis
        index = tf.range(length)
        start, end = start[..., None], (start + size)[..., None]
        return (index >= start) & (index < end)

    inside = span(top, height)[..., :, None] & span(left, width)[..., None, :]  # [(B,) H, W]
    return tf.where(inside[..., None], tf.cast(fill, tf.float32), image)
