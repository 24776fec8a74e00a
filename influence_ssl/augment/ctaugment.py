"""CTAugment (Control Theory Augment) as used by FixMatch, in TensorFlow ops with checkpointable state.

Clean-room reimplementation of google-research/fixmatch libml/ctaugment.py and the CTA update of
cta/lib/train.py (Sohn et al., FixMatch, NeurIPS 2020; CTAugment from Berthelot et al., ReMixMatch,
ICLR 2020). No code copied; behaviour from the reading notes (ssl_anchors.md 2d).

- 19 ops; each parameter lives in [0, 1] and has its own rate vector over equal-width bins
  (17 bins, posterize 8, rescale (17, 6)), all initialised to 1.
- Training policy (`sample_policy`): depth = 2 ops uniform with replacement; per parameter
  p = rate + (1 - decay), p /= max(p), p[p < threshold] = 0, bin ~ p, value = (bin + U(0,1)) / nbins.
  `augment` applies it and then always cutout at level 1 (16 px at 32 px, gray 127), as FixMatch
  appends it.
- Cutout at level l: size 1 + floor(l * min(H, W) * 0.499), square side 2 * (size // 2) as the
  original's [c - size//2, c + size//2) span gives (size 1: nothing). Rescale: crop 0.25 * l of each
  side, PIL filter number int(w * 5.99) of (antialias, bicubic, bilinear, box, hamming, nearest).
- Probe policy (`probe_policy`): depth ops uniform, parameter values uniform in [0, 1], no cutout.
- `update`: proximity = 1 - 0.5 * sum|p - onehot(y)|; for each probe image in order, each of its
  ops and each parameter value v: bin = floor(v * nbins * 0.999),
  rate[bin] <- decay * rate[bin] + (1 - decay) * proximity.
- The rates are tf.Variables in a tf.Module, so tf.train.Checkpoint saves them (the original kept
  them in Python and lost them on resume).

Images are float32 [H, W, C] in [-1, 1]; geometric ops fill with black (-1), as PIL did.
"""
import numpy as np
import tensorflow as tf

from influence_ssl.augment import ops
from influence_ssl.augment._seed import as_seed, map_batch, split
from influence_ssl.augment.cutout import cutout

# (name, bins per parameter); the op index is the position in this tuple.
OPS = (
    ("autocontrast", (17,)),
    ("blur", (17,)),
    ("brightness", (17,)),
    ("color", (17,)),
    ("contrast", (17,)),
    ("cutout", (17,)),
    ("equalize", (17,)),
    ("identity", ()),
    ("invert", (17,)),
    ("posterize", (8,)),
    ("rescale", (17, 6)),
    ("rotate", (17,)),
    ("sharpness", (17,)),
    ("shear_x", (17,)),
    ("shear_y", (17,)),
    ("smooth", (17,)),
    ("solarize", (17,)),
    ("translate_x", (17,)),
    ("translate_y", (17,)),
)
OP_NAMES = tuple(name for name, _ in OPS)
NUM_OPS = len(OPS)
MAX_PARAMS = 2
MAX_BINS = 17
# [NUM_OPS, MAX_PARAMS] bin counts, 0 where the op has no such parameter.
NBINS = np.array([list(bins) + [0] * (MAX_PARAMS - len(bins)) for _, bins in OPS], np.int32)


def _enhance_factor(level):
    return 0.1 + 1.9 * level


def _cutout_side(level, image):
    """FixMatch's cutout size, 1 + floor(level * size * 0.499) with size = min(H, W): 16 at 32 px."""
    shape = tf.cast(tf.shape(image), tf.float32)
    size = tf.minimum(shape[0], shape[1])
    return 1 + tf.cast(tf.floor(level * size * 0.499), tf.int32)


def _cutout(image, seed, level):
    """Gray-127 square of side 2 * (size // 2) (the original spans [c - size//2, c + size//2), so
    odd sizes lose a pixel and size 1 cuts nothing)."""
    return cutout(image, seed, 2 * (_cutout_side(level, image) // 2), ops.GRAY_127)


def apply_op(image, op_index, values, seed, translate_units="pixels", interpolation="NEAREST"):
    """Apply CTA op `op_index` (int32 tensor) with parameter values [2] in [0, 1] to one image."""
    image = tf.convert_to_tensor(image, tf.float32)
    values = tf.cast(values, tf.float32)
    v, w = values[0], values[1]
    fill = ops.BLACK

    def translate_offset(axis):
        # PIL AFFINE offset (2l - 1) * 0.3; content moves by -offset (PIL's sign convention).
        offset = (2.0 * v - 1.0) * 0.3
        if translate_units == "fraction":
            offset = offset * tf.cast(tf.shape(image)[axis], tf.float32)
        return -offset

    table = {
        "autocontrast": lambda: ops.blend(image, ops.autocontrast(image), v),
        "blur": lambda: ops.blend(image, ops.blur(image), v),
        "brightness": lambda: ops.brightness(image, _enhance_factor(v)),
        "color": lambda: ops.color(image, _enhance_factor(v)),
        "contrast": lambda: ops.contrast(image, _enhance_factor(v)),
        "cutout": lambda: _cutout(image, seed, v),
        "equalize": lambda: ops.blend(image, ops.equalize(image), v),
        "identity": lambda: ops.identity(image),
        "invert": lambda: ops.blend(image, ops.invert(image), v),
        "posterize": lambda: ops.posterize(image, 1 + tf.cast(tf.floor(7.999 * v), tf.int32)),
        # The original picks filter int(w * 5.99), not floor(w * 6).
        "rescale": lambda: ops.rescale(image, 0.25 * v, tf.cast(tf.floor(w * 5.99), tf.int32)),
        "rotate": lambda: ops.rotate(image, tf.round((2.0 * v - 1.0) * 45.0), fill, interpolation),
        "sharpness": lambda: ops.sharpness(image, _enhance_factor(v)),
        "shear_x": lambda: ops.shear_x(image, (2.0 * v - 1.0) * 0.3, fill, interpolation),
        "shear_y": lambda: ops.shear_y(image, (2.0 * v - 1.0) * 0.3, fill, interpolation),
        "smooth": lambda: ops.blend(image, ops.smooth(image), v),
        "solarize": lambda: ops.solarize(image, tf.floor(255.999 * v)),
        "translate_x": lambda: ops.translate_x(image, translate_offset(1), fill, interpolation),
        "translate_y": lambda: ops.translate_y(image, translate_offset(0), fill, interpolation),
    }

    def branch(fn):
        def run():
            out = fn()
            out.set_shape(image.shape)
            return out

        return run

    out = tf.switch_case(tf.cast(op_index, tf.int32), [branch(table[name]) for name in OP_NAMES])
    out.set_shape(image.shape)
    return out


class CTAugment(tf.Module):
    """CTAugment state (rates) and policies. Defaults are FixMatch's flag values
    (--adepth=2 --adecay=0.99 --ath=0.8; the original class default threshold is 0.85).

    translate_units: "pixels" reproduces the original (offset (2l-1)*0.3 px, a no-op with nearest
    sampling); "fraction" uses (2l-1)*0.3 of the image width/height.
    """

    def __init__(self, depth=2, decay=0.99, threshold=0.8, translate_units="pixels",
                 interpolation="NEAREST", name="ctaugment"):
        super().__init__(name=name)
        if translate_units not in ("pixels", "fraction"):
            raise ValueError("translate_units must be 'pixels' or 'fraction'")
        self.depth = int(depth)
        self.decay = float(decay)
        self.threshold = float(threshold)
        self.translate_units = translate_units
        self.interpolation = interpolation
        # rates[op, param, bin]; entries past NBINS[op, param] are padding and never read.
        self.rates = tf.Variable(tf.ones([NUM_OPS, MAX_PARAMS, MAX_BINS], tf.float32), trainable=False, name="rates")

    # ------------------------------------------------------------------ policies
    def bin_probabilities(self, op_indices=None):
        """Sampling probabilities per bin, [ops, MAX_PARAMS, MAX_BINS] (rows without a parameter: 0)."""
        op_indices = tf.range(NUM_OPS) if op_indices is None else tf.cast(op_indices, tf.int32)
        rates = tf.gather(self.rates, op_indices)
        nbins = tf.gather(tf.constant(NBINS), op_indices)
        valid = tf.range(MAX_BINS)[None, None, :] < nbins[..., None]
        p = tf.where(valid, rates + (1.0 - self.decay), 0.0)
        p = p / tf.maximum(tf.reduce_max(p, axis=-1, keepdims=True), 1e-12)
        p = tf.where(p < self.threshold, 0.0, p)
        return p / tf.maximum(tf.reduce_sum(p, axis=-1, keepdims=True), 1e-12)

    def sample_policy(self, seed):
        """Training policy: (op indices [depth] int32, values [depth, 2] float32 in [0, 1))."""
        s_ops, s_bins, s_jitter = split(seed, 3)
        op_indices = tf.random.stateless_uniform([self.depth], s_ops, minval=0, maxval=NUM_OPS, dtype=tf.int32)
        p = self.bin_probabilities(op_indices)  # [depth, 2, 17]
        nbins = tf.gather(tf.constant(NBINS), op_indices)  # [depth, 2]
        has_param = nbins > 0
        logits = tf.where(p > 0, tf.math.log(tf.maximum(p, 1e-30)), -np.inf)
        logits = tf.where(has_param[..., None], logits, 0.0)
        bins = tf.random.stateless_categorical(
            tf.reshape(logits, [-1, MAX_BINS]), 1, s_bins, dtype=tf.int32)
        bins = tf.reshape(bins, [self.depth, MAX_PARAMS])
        jitter = tf.random.stateless_uniform([self.depth, MAX_PARAMS], s_jitter)
        values = (tf.cast(bins, tf.float32) + jitter) / tf.cast(tf.maximum(nbins, 1), tf.float32)
        values = tf.where(has_param, tf.minimum(values, 1.0 - 1e-7), 0.0)
        return op_indices, values

    def probe_policy(self, seed):
        """Probe policy: (op indices [depth] uniform, values [depth, 2] uniform in [0, 1))."""
        s_ops, s_values = split(seed, 2)
        op_indices = tf.random.stateless_uniform([self.depth], s_ops, minval=0, maxval=NUM_OPS, dtype=tf.int32)
        values = tf.random.stateless_uniform([self.depth, MAX_PARAMS], s_values)
        return op_indices, values

    def apply_policy(self, image, op_indices, values, seed):
        """Apply the ops of a policy in order; `seed` only feeds the cutout op's position."""
        image = tf.convert_to_tensor(image, tf.float32)
        for i, op_seed in enumerate(split(seed, self.depth)):
            image = apply_op(image, op_indices[i], values[i], op_seed, self.translate_units, self.interpolation)
        return image

    def augment(self, image, seed):
        """Training augmentation: sampled policy, then cutout at level 1 (gray 127)."""
        image = tf.convert_to_tensor(image, tf.float32)
        s_policy, s_apply, s_cutout = split(seed, 3)
        op_indices, values = self.sample_policy(s_policy)
        out = self.apply_policy(image, op_indices, values, s_apply)
        return _cutout(out, s_cutout, 1.0)

    def probe(self, image, seed):
        """Probe augmentation: (image, op indices [depth], values [depth, 2])."""
        s_policy, s_apply = split(seed, 2)
        op_indices, values = self.probe_policy(s_policy)
        return self.apply_policy(image, op_indices, values, s_apply), op_indices, values

    def augment_batch(self, images, seed):
        """augment over [B, H, W, C] with per-image seeds split from `seed`."""
        return map_batch(self.augment, images, seed)

    @tf.autograph.experimental.do_not_convert  # as map_batch
    def probe_batch(self, images, seed):
        """probe over [B, H, W, C]: (images, op indices [B, depth], values [B, depth, 2])."""
        images = tf.convert_to_tensor(images, tf.float32)
        seeds = tf.random.experimental.stateless_split(as_seed(seed), num=tf.shape(images)[0])
        out, op_indices, values = tf.map_fn(
            lambda args: self.probe(args[0], args[1]),
            (images, seeds),
            fn_output_signature=(
                tf.TensorSpec(images.shape[1:], tf.float32),
                tf.TensorSpec([self.depth], tf.int32),
                tf.TensorSpec([self.depth, MAX_PARAMS], tf.float32),
            ),
        )
        out.set_shape(images.shape)
        return out, op_indices, values

    # ------------------------------------------------------------------ update
    def update(self, probe_ops, probe_values, probs, labels):
        """Update the rates from probe predictions.

        probe_ops [B, depth] int, probe_values [B, depth, 2], probs [B, K] (model probabilities on
        the probe images), labels [B] int. Equivalent to applying, for b = 0..B-1, each op d and each
        of its parameters k in order, rate[bin] <- decay * rate[bin] + (1 - decay) * proximity[b];
        computed in closed form (a bin hit n times ends at decay^n * rate + sum of the weighted
        proximities), so repeated bins give the sequential result.
        """
        probe_ops = tf.cast(probe_ops, tf.int32)
        probe_values = tf.cast(probe_values, tf.float32)
        probs = tf.cast(probs, tf.float32)
        labels = tf.cast(labels, tf.int32)
        onehot = tf.one_hot(labels, tf.shape(probs)[-1], dtype=tf.float32)
        proximity = 1.0 - 0.5 * tf.reduce_sum(tf.abs(probs - onehot), axis=-1)  # [B]

        nbins = tf.gather(tf.constant(NBINS), probe_ops)  # [B, depth, 2]
        bins = tf.cast(tf.floor(probe_values * tf.cast(nbins, tf.float32) * 0.999), tf.int32)
        bins = tf.clip_by_value(bins, 0, MAX_BINS - 1)
        params = tf.range(MAX_PARAMS)[None, None, :]
        index = (probe_ops[..., None] * MAX_PARAMS + params) * MAX_BINS + bins  # flat rate index
        index = tf.reshape(index, [-1])  # order (b, d, k): the sequential order
        valid = tf.reshape(nbins > 0, [-1])
        prox = tf.reshape(tf.broadcast_to(proximity[:, None, None], tf.shape(nbins)), [-1])

        n = tf.shape(index)[0]
        order = tf.range(n)
        same = (index[:, None] == index[None, :]) & valid[:, None] & valid[None, :]
        later = same & (order[None, :] > order[:, None])
        n_later = tf.reduce_sum(tf.cast(later, tf.float32), axis=1)  # later updates of my bin
        size = NUM_OPS * MAX_PARAMS * MAX_BINS
        validf = tf.cast(valid, tf.float32)
        hits = tf.math.unsorted_segment_sum(validf, index, size)
        added = tf.math.unsorted_segment_sum(
            validf * (1.0 - self.decay) * tf.pow(self.decay, n_later) * prox, index, size)
        flat = tf.reshape(self.rates, [-1])
        new = flat * tf.pow(self.decay, hits) + added
        return self.rates.assign(tf.reshape(new, [NUM_OPS, MAX_PARAMS, MAX_BINS]))

    # ------------------------------------------------------------------ reporting
    def rates_dict(self):
        """{op name: [rate vector per parameter]} as numpy arrays (eager only)."""
        rates = self.rates.numpy()
        return {name: [rates[i, k, :n] for k, n in enumerate(bins)] for i, (name, bins) in enumerate(OPS)}

    def stats(self):
        """One line per op with its rates rounded to 1 decimal, as the original printed at reports."""
        lines = []
        for name, vectors in self.rates_dict().items():
            lines.append(f"{name:<13} " + " / ".join(" ".join(f"{x:.1f}" for x in v) for v in vectors))
        return "\n".join(lines)
