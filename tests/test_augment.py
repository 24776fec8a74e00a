"""Tests for influence_ssl.augment: ops (against hand-computed results and, where Pillow is installed,
against the PIL operations the original codebases used), weak/RandAugment/CTAugment policies,
determinism in eager, tf.function and tf.data, the CTAugment update rule and its checkpoint."""
import numpy as np
import pytest
import tensorflow as tf

from influence_ssl.augment import ctaugment, cutout, ops, randaugment, weak
from influence_ssl.augment.ctaugment import CTAugment

RNG = np.random.RandomState(0)
U8 = RNG.randint(0, 256, (32, 32, 3)).astype(np.uint8)


def natural_u8():
    """A smooth-ish 32x32x3 uint8 image (upsampled noise + noise) with a wide histogram."""
    rng = np.random.RandomState(1)
    small = rng.randint(0, 256, (8, 8, 3)).astype(np.float32)
    big = np.kron(small, np.ones((4, 4, 1), np.float32))
    return np.clip(big + rng.randint(-20, 21, big.shape), 0, 255).astype(np.uint8)


def to_x(u8):
    return tf.constant(u8.astype(np.float32) / 127.5 - 1.0)


def to_u8(x):
    return np.round((np.asarray(x) + 1.0) * 127.5)


X = to_x(natural_u8())
X1 = X[..., :1]
DIGIT = tf.constant(np.random.RandomState(2).uniform(-1, 1, (8, 8, 1)).astype(np.float32))


# ----------------------------------------------------------------------------- ops: exact facts
@pytest.mark.parametrize("image", [X, X1, DIGIT], ids=["rgb", "gray", "digits8"])
def test_neutral_levels_are_identity(image):
    neutral = [
        ops.identity(image),
        ops.rotate(image, 0.0),
        ops.shear_x(image, 0.0),
        ops.shear_y(image, 0.0),
        ops.translate_x(image, 0.0),
        ops.translate_y(image, 0.0),
        ops.color(image, 1.0),
        ops.contrast(image, 1.0),
        ops.brightness(image, 1.0),
        ops.sharpness(image, 1.0),
        ops.solarize(image, 256),
        ops.invert(ops.invert(image)),
        ops.blend(image, ops.equalize(image), 0.0),
        ops.cutout_at(image, 3, 3, 0, 0.0),
    ]
    for out in neutral:
        np.testing.assert_allclose(out, image, atol=1e-5)
    for i in range(len(ops.RESCALE_METHODS)):  # the PIL-style resize stores its first pass on the uint8 grid
        np.testing.assert_allclose(ops.rescale(image, 0.0, i), image, atol=0.5 / 127.5 + 1e-6)
    quantized = to_x(to_u8(image).astype(np.uint8))  # posterize(8) is exact on 0..255 integers
    np.testing.assert_allclose(ops.posterize(quantized, 8), quantized, atol=1e-6)
    assert np.allclose(ops.color(X1, 0.0), X1)  # saturation is a no-op on one channel


@pytest.mark.parametrize("image", [X, DIGIT], ids=["rgb32", "digits8"])
def test_known_pixel_moves(image):
    h, w, c = image.shape
    marked = np.full((h, w, c), -1.0, np.float32)
    marked[2, 3] = 1.0
    marked = tf.constant(marked)
    for k in (1, 2, -2):
        out = ops.translate_x(marked, k).numpy()
        assert out[2, 3 + k, 0] == 1.0 and out.sum() == marked.numpy().sum()
        out = ops.translate_y(marked, k, fill=-1.0).numpy()
        assert out[2 + k, 3, 0] == 1.0 and out.sum() == marked.numpy().sum()
    np.testing.assert_array_equal(ops.flip_left_right(image), image.numpy()[:, ::-1])
    # Counter-clockwise rotation by 90 degrees of a square image is a permutation of its pixels.
    np.testing.assert_array_equal(ops.rotate(image, 90.0), np.rot90(image.numpy(), k=1, axes=(0, 1)))
    np.testing.assert_array_equal(ops.rotate(image, -90.0), np.rot90(image.numpy(), k=-1, axes=(0, 1)))
    # Translation exposes `fill`.
    out = ops.translate_x(image, 2, fill=0.25).numpy()
    assert np.all(out[:, :2] == 0.25)
    np.testing.assert_array_equal(out[:, 2:], image.numpy()[:, :-2])


def test_cutout_square_clipped_at_border():
    image = tf.ones([8, 10, 2])
    out = ops.cutout_at(image, 1, 8, 4, -0.5).numpy()
    expected = np.ones([8, 10, 2], np.float32)
    expected[0:3, 6:10] = -0.5  # rows [-1, 3) and columns [6, 10) clipped to the image
    np.testing.assert_array_equal(out, expected)
    out = ops.cutout_at(tf.ones([32, 32, 3]), 16, 16, 16, 0.0).numpy()
    assert (out == 0).sum() == 16 * 16 * 3 and np.all(out[8:24, 8:24] == 0)
    # Random cutout: one square of 0s, inside the image, of side <= size.
    out = cutout.cutout(tf.ones([32, 32, 3]), tf.constant([5, 6]), 16, 0.0).numpy()
    rows, cols = np.nonzero(out[..., 0] == 0)
    assert 0 < len(rows) <= 256 and len(rows) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)


def test_size_scaling_helpers():
    assert cutout.scaled_size(16, 32) == 16 and cutout.scaled_size(16, 8) == 4
    assert cutout.default_cutout_size(tf.zeros([8, 8, 1])) == 4
    assert cutout.scale_pixels(4, 8) == 1.0
    assert int(ctaugment._cutout_side(1.0, tf.zeros([32, 32, 3]))) == 16
    assert int(ctaugment._cutout_side(1.0, tf.zeros([8, 8, 1]))) == 4
    assert int(ctaugment._cutout_side(0.0, tf.zeros([32, 32, 3]))) == 1


def test_equalize_known_histogram_and_autocontrast():
    # 4 values, 256 pixels each: step = (1024 - 256) // 255 = 3, lut = (1 + cum) // 3 -> 0, 85, 171, 255.
    values = np.repeat(np.arange(4), 256).reshape(32, 32, 1).astype(np.uint8)
    out = to_u8(ops.equalize(to_x(values)))
    np.testing.assert_array_equal(np.unique(out), [0, 85, 171, 255])
    np.testing.assert_array_equal(out[values == 2], 171)
    # A single-valued channel is unchanged.
    np.testing.assert_allclose(ops.equalize(tf.fill([8, 8, 1], 0.2)), tf.fill([8, 8, 1], 0.2), atol=1e-2)
    low = tf.constant(np.linspace(-0.5, 0.25, 8 * 8 * 3).reshape(8, 8, 3).astype(np.float32))
    out = ops.autocontrast(low).numpy()
    np.testing.assert_allclose(out.min(axis=(0, 1)), -1.0, atol=1e-6)
    np.testing.assert_allclose(out.max(axis=(0, 1)), 1.0, atol=1e-6)
    np.testing.assert_allclose(ops.autocontrast(tf.fill([4, 4, 1], 0.3)), tf.fill([4, 4, 1], 0.3))


def test_value_ranges():
    extreme = [
        ops.brightness(X, 2.0), ops.contrast(X, 2.0), ops.color(X, 2.0), ops.sharpness(X, 2.0),
        ops.posterize(X, 1), ops.solarize(X, 0), ops.rotate(X, 45.0), ops.shear_x(X, 0.3),
        ops.rescale(X, 0.25, 0), ops.rescale(X, 0.25, 1), ops.blur(X), ops.autocontrast(X), ops.equalize(X),
    ]
    for out in extreme:
        assert out.shape == X.shape and out.dtype == tf.float32
        assert float(tf.reduce_min(out)) >= -1.0 and float(tf.reduce_max(out)) <= 1.0


# ----------------------------------------------------------------------------- ops vs Pillow
PIL_CASES = [
    ("autocontrast", lambda x: ops.autocontrast(x), lambda I, O, E, F, p: O.autocontrast(p)),
    ("equalize", lambda x: ops.equalize(x), lambda I, O, E, F, p: O.equalize(p)),
    ("invert", lambda x: ops.invert(x), lambda I, O, E, F, p: O.invert(p)),
    ("solarize100", lambda x: ops.solarize(x, 100), lambda I, O, E, F, p: O.solarize(p, 100)),
    ("posterize3", lambda x: ops.posterize(x, 3), lambda I, O, E, F, p: O.posterize(p, 3)),
    ("color0.4", lambda x: ops.color(x, 0.4), lambda I, O, E, F, p: E.Color(p).enhance(0.4)),
    ("contrast1.7", lambda x: ops.contrast(x, 1.7), lambda I, O, E, F, p: E.Contrast(p).enhance(1.7)),
    ("brightness0.3", lambda x: ops.brightness(x, 0.3), lambda I, O, E, F, p: E.Brightness(p).enhance(0.3)),
    ("sharpness1.9", lambda x: ops.sharpness(x, 1.9), lambda I, O, E, F, p: E.Sharpness(p).enhance(1.9)),
    ("blur", lambda x: ops.blur(x), lambda I, O, E, F, p: p.filter(F.BLUR)),
    ("smooth", lambda x: ops.smooth(x), lambda I, O, E, F, p: p.filter(F.SMOOTH)),
    ("rotate30", lambda x: ops.rotate(x, 30.0), lambda I, O, E, F, p: p.rotate(30)),
    ("shear_x-0.3", lambda x: ops.shear_x(x, -0.3),
     lambda I, O, E, F, p: p.transform(p.size, I.AFFINE, (1, -0.3, 0, 0, 1, 0))),
    ("shear_y0.27", lambda x: ops.shear_y(x, 0.27),
     lambda I, O, E, F, p: p.transform(p.size, I.AFFINE, (1, 0, 0, 0.27, 1, 0))),
    ("translate_x3", lambda x: ops.translate_x(x, -3.0),
     lambda I, O, E, F, p: p.transform(p.size, I.AFFINE, (1, 0, 3, 0, 1, 0))),
    ("translate0.3", lambda x: ops.translate_y(x, -0.3),
     lambda I, O, E, F, p: p.transform(p.size, I.AFFINE, (1, 0, 0, 0, 1, 0.3))),
] + [
    (f"rescale_{name}", (lambda i: lambda x: ops.rescale(x, 0.125, i))(i),
     (lambda name: lambda I, O, E, F, p: p.crop((4, 4, 28, 28)).resize((32, 32), {
         "antialias": I.LANCZOS, "bicubic": I.BICUBIC, "bilinear": I.BILINEAR, "box": I.BOX,
         "hamming": I.HAMMING, "nearest": I.NEAREST}[name]))(name))
    for i, name in enumerate(ops.RESCALE_METHODS)
]


@pytest.mark.parametrize("case", PIL_CASES, ids=[c[0] for c in PIL_CASES])
def test_ops_match_pillow(case):
    PIL = pytest.importorskip("PIL")
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    del PIL
    _, mine, ref = case
    u8 = natural_u8()
    expected = np.asarray(ref(Image, ImageOps, ImageEnhance, ImageFilter, Image.fromarray(u8)), np.float32)
    got = to_u8(mine(to_x(u8)))
    # Same up to PIL's uint8 rounding (we keep floats).
    assert np.abs(got - expected).max() <= 1.0


# ----------------------------------------------------------------------------- policies
def test_randaugment_magnitude_maps():
    image = X
    fm = randaugment.FIXMATCH_OPS
    one = tf.constant(1.0)

    def run(name, m, ops_list=fm, img=image):
        return randaugment.apply_op(img, ops_list.index(name), m, one, ops_list)

    np.testing.assert_allclose(run("Solarize", 5), ops.solarize(image, 128))
    np.testing.assert_allclose(run("Posterize", 9), ops.posterize(image, 1))
    np.testing.assert_allclose(run("Posterize", 1), ops.posterize(image, 4))
    np.testing.assert_allclose(run("Rotate", 7), ops.rotate(image, 21.0, fill=0.0))
    np.testing.assert_allclose(run("Contrast", 5), ops.contrast(image, 1.0), atol=1e-6)
    np.testing.assert_allclose(run("ShearX", 10), ops.shear_x(image, 0.3, fill=0.0))
    np.testing.assert_allclose(run("TranslateX", 4), ops.translate_x(image, 4.0, fill=0.0))
    # Translate scales with the image: m=4 at 8 px moves 1 px.
    np.testing.assert_allclose(run("TranslateY", 4, img=DIGIT), ops.translate_y(DIGIT, 1.0, fill=0.0))
    # UDA's Cutout op: side 2m at 32 px, centred at the drawn position (here the middle).
    out = run("Cutout", 3, randaugment.UDA_OPS, tf.ones([32, 32, 3])).numpy()
    rows, cols = np.nonzero(out[..., 0] == 0)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (13, 18, 13, 18)
    np.testing.assert_allclose(run("Invert", 3, randaugment.UDA_OPS), -image)


def test_ctaugment_level_maps():
    image = X
    seed = tf.constant([0, 0])
    idx = ctaugment.OP_NAMES.index

    def run(name, v, w=0.0, units="pixels"):
        return ctaugment.apply_op(image, idx(name), [v, w], seed, units)

    np.testing.assert_allclose(run("rotate", 0.5), image)
    np.testing.assert_allclose(run("rotate", 1.0), ops.rotate(image, 45.0))
    np.testing.assert_allclose(run("shear_y", 0.0), ops.shear_y(image, -0.3))
    np.testing.assert_allclose(run("brightness", 0.9 / 1.9), image, atol=1e-5)
    np.testing.assert_allclose(run("posterize", 0.99), ops.posterize(image, 8))
    np.testing.assert_allclose(run("posterize", 0.0), ops.posterize(image, 1))
    np.testing.assert_allclose(run("solarize", 0.5), ops.solarize(image, 127))
    np.testing.assert_allclose(run("invert", 1.0), -image, atol=1e-6)
    np.testing.assert_allclose(run("rescale", 0.5, 0.99), ops.rescale(image, 0.125, 5))
    # Faithful "pixels" translate is at most 0.3 px: a no-op with nearest sampling.
    np.testing.assert_array_equal(run("translate_x", 1.0), image)
    np.testing.assert_array_equal(run("translate_y", 0.0), image)
    # "fraction": offset (2l - 1) * 0.3 * size; l = 0 gives PIL offset -9.6 px, content moves right 9.6 px.
    np.testing.assert_allclose(run("translate_x", 0.0, units="fraction"), ops.translate_x(image, 9.6))
    for name in ctaugment.OP_NAMES:
        for v in (0.0, 0.999):
            out = run(name, v, v)
            assert float(tf.reduce_min(out)) >= -1 and float(tf.reduce_max(out)) <= 1


@pytest.mark.parametrize("name", ["weak", "ra_fixmatch", "ra_uda", "strong_fixmatch", "strong_uda"])
def test_an_image_is_augmented_alike_in_any_batch(name):
    """Image b's draws are row b of the batch's: a longer batch, or the image alone at the front, changes
    nothing for it."""
    fn = _policies()[name]
    seed = tf.constant([5, 9], tf.int64)
    whole = fn(BATCH, seed).numpy()
    np.testing.assert_array_equal(fn(BATCH[:3], seed), whole[:3])
    np.testing.assert_array_equal(fn(BATCH[0], seed), whole[0])
    assert not np.array_equal(whole[1], whole[2])


def test_weak_augment_is_flip_and_reflect_translate():
    image = tf.constant(np.arange(8 * 8).reshape(8, 8, 1).astype(np.float32) / 64.0)
    padded = np.pad(image.numpy(), [(1, 1), (1, 1), (0, 0)], mode="reflect")
    flipped = np.pad(image.numpy()[:, ::-1], [(1, 1), (1, 1), (0, 0)], mode="reflect")
    crops = [p[i:i + 8, j:j + 8] for p in (padded, flipped) for i in range(3) for j in range(3)]
    seen_flip = set()
    for s in range(12):
        out = weak.weak_augment(image, tf.constant([s, 7])).numpy()
        matches = [k for k, c in enumerate(crops) if np.array_equal(out, c)]
        assert matches, "not a flip + translate by <= 1 px (12.5% of 8)"
        seen_flip.add(matches[0] >= 9)
        out = weak.weak_augment(image, tf.constant([s, 7]), flip=False).numpy()
        assert any(np.array_equal(out, c) for c in crops[:9])
    assert seen_flip == {True, False}
    # A batch: every image one of the 18 views of its own, each view about equally often.
    batch = tf.stack([image] * 900)
    out = weak.weak_augment(batch, tf.constant([3, 7])).numpy()
    counts = np.zeros(len(crops))
    for view in out:
        counts[[k for k, c in enumerate(crops) if np.array_equal(view, c)][0]] += 1
    assert np.abs(counts - 50).max() < 4 * np.sqrt(50), counts


def _policies():
    cta = CTAugment()
    return {
        "weak": weak.weak_augment,
        "ra_fixmatch": randaugment.randaugment_fixmatch,
        "ra_uda": randaugment.randaugment_uda,
        "cta": cta.augment_batch,
        "cta_probe": lambda b, s: cta.probe_batch(b, s)[0],
        "strong_fixmatch": randaugment.strong_fixmatch,
        "strong_uda": randaugment.strong_uda,
    }


BATCH = tf.constant(np.random.RandomState(3).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32))


# RandAugment alone is the strong views' second half: their determinism is its own.
@pytest.mark.parametrize("name", [name for name in _policies() if not name.startswith("ra_")])
def test_policy_determinism_eager_function_and_dataset(name):
    fn = _policies()[name]
    seed = tf.constant([11, 12], tf.int64)
    eager = fn(BATCH, seed).numpy()
    assert eager.shape[1:] == (32, 32, 3) and eager.min() >= -1 and eager.max() <= 1
    np.testing.assert_array_equal(fn(BATCH, seed), eager)
    assert not np.array_equal(fn(BATCH, tf.constant([11, 13], tf.int64)), eager)
    graph = tf.function(fn)
    np.testing.assert_allclose(graph(BATCH, seed), eager, atol=1e-6)
    assert not np.allclose(graph(BATCH, tf.constant([12, 12], tf.int64)), eager)
    # Per-element seeds in tf.data: the element at index i gets seed [11, i].
    ds = tf.data.Dataset.from_tensor_slices(BATCH[: len(eager)]).enumerate()
    ds = ds.map(lambda i, x: fn(x[None], tf.stack([tf.constant(11, tf.int64), i]))[0])
    got = np.stack(list(ds.as_numpy_iterator()))
    want = np.stack([fn(BATCH[i:i + 1], tf.constant([11, i], tf.int64))[0] for i in range(len(eager))])
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("name", ["weak", "ra_fixmatch", "ra_uda", "cta"])
def test_digits_sized_images(name):
    fn = _policies()[name]
    images = tf.constant(np.random.RandomState(4).uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32))
    out = fn(images, tf.constant([1, 2])).numpy()
    assert out.shape == (3, 8, 8, 1) and out.min() >= -1 and out.max() <= 1
    assert not np.array_equal(out, images.numpy())


# ----------------------------------------------------------------------------- CTAugment state
def numpy_update(rates, ops_, values, probs, labels, decay=0.99):
    """Sequential reference: per probe image, per op, per parameter."""
    rates = rates.copy()
    for b in range(len(labels)):
        onehot = np.eye(probs.shape[1])[labels[b]]
        prox = 1 - 0.5 * np.abs(probs[b] - onehot).sum()
        for d in range(ops_.shape[1]):
            for k, nbins in enumerate(ctaugment.OPS[ops_[b, d]][1]):
                j = int(np.floor(values[b, d, k] * nbins * 0.999))
                rates[ops_[b, d], k, j] = decay * rates[ops_[b, d], k, j] + (1 - decay) * prox
    return rates


def test_ctaugment_update_matches_sequential_reference():
    cta = CTAugment()
    rng = np.random.RandomState(5)
    idx = ctaugment.OP_NAMES.index
    ops_ = np.array([[idx("rotate"), idx("rotate")],  # same op twice: repeated bins
                     [idx("rescale"), idx("identity")],
                     [idx("rotate"), idx("posterize")],
                     [idx("rescale"), idx("rescale")]], np.int32)
    values = rng.uniform(size=(4, 2, 2)).astype(np.float32)
    values[0, :, 0] = values[2, 0, 0] = 0.31  # the same rotate bin three times
    values[3, :, 1] = 0.9999  # last rescale-method bin
    labels = np.array([0, 1, 2, 1])
    rates = np.ones([ctaugment.NUM_OPS, 2, 17], np.float32)
    for _ in range(2):
        probs = rng.dirichlet(np.ones(3), size=4).astype(np.float32)
        cta.update(ops_, values, probs, labels)
        rates = numpy_update(rates, ops_, values, probs, labels)
        np.testing.assert_allclose(cta.rates.numpy(), rates, atol=1e-6)
    assert cta.rates.numpy()[idx("identity")].min() == 1.0  # no parameters, no update
    # Also inside a tf.function.
    probs = rng.dirichlet(np.ones(3), size=4).astype(np.float32)
    tf.function(cta.update)(tf.constant(ops_), tf.constant(values), tf.constant(probs), tf.constant(labels))
    np.testing.assert_allclose(cta.rates.numpy(), numpy_update(rates, ops_, values, probs, labels), atol=1e-6)


def test_ctaugment_sample_respects_threshold():
    cta = CTAugment()
    rates = np.ones([ctaugment.NUM_OPS, 2, 17], np.float32)
    rates[:, 0, :8] = 0.5  # p = 0.51 / 1.01 < 0.8: never sampled
    rates[:, 1, :3] = 0.5  # rescale method bins 0..2 as well (posterize's 8 bins are all equal: all allowed)
    cta.rates.assign(rates)
    p = cta.bin_probabilities().numpy()
    assert np.all(p[ctaugment.NBINS == 17][:, :8] == 0) and np.all(p[ctaugment.NBINS == 6][:, :3] == 0)
    assert np.allclose(p[ctaugment.NBINS > 0].sum(-1), 1) and np.all(p[ctaugment.NBINS == 8][:, :8] == 1 / 8)
    seeds = tf.random.experimental.stateless_split(tf.constant([3, 4], tf.int64), 400)
    sample = tf.function(lambda s: tf.map_fn(cta.sample_policy, s, fn_output_signature=(tf.int32, tf.float32)))
    op_idx, values = (t.numpy() for t in sample(seeds))
    nbins = ctaugment.NBINS[op_idx]  # [N, depth, 2]
    bins = np.floor(values * nbins).astype(int)
    seventeen = nbins[..., 0] == 17
    assert seventeen.sum() > 300 and np.all(bins[..., 0][seventeen] >= 8)
    assert np.all(bins[..., 1][nbins[..., 1] == 6] >= 3)
    assert len(np.unique(bins[..., 0][seventeen])) > 5  # still random over the allowed bins
    assert np.all((values >= 0) & (values < 1))
    assert len(np.unique(op_idx)) == ctaugment.NUM_OPS


def test_ctaugment_checkpoint_round_trip(tmp_path):
    cta = CTAugment()
    probs = tf.constant([[0.9, 0.1], [0.2, 0.8]])
    cta.update(tf.constant([[11, 3], [10, 10]]), tf.constant([[[0.2, 0], [0.7, 0]], [[0.5, 0.5], [0.1, 0.9]]]),
               probs, tf.constant([0, 0]))
    path = tf.train.Checkpoint(cta=cta).save(str(tmp_path / "ckpt"))
    fresh = CTAugment()
    assert np.all(fresh.rates.numpy() == 1)
    tf.train.Checkpoint(cta=fresh).restore(path).assert_consumed()
    np.testing.assert_array_equal(fresh.rates.numpy(), cta.rates.numpy())
    assert "rotate" in fresh.stats()


def test_ctaugment_probe_returns_applied_policy():
    cta = CTAugment()
    images = BATCH[:2]
    out, op_idx, values = cta.probe_batch(images, tf.constant([9, 9]))
    assert op_idx.shape == (2, 2) and values.shape == (2, 2, 2)
    assert np.all((op_idx.numpy() >= 0) & (op_idx.numpy() < ctaugment.NUM_OPS))
    # Replaying the returned policy reproduces the probe image.
    seeds = tf.random.experimental.stateless_split(tf.constant([9, 9], tf.int64), 2)
    for i in range(2):
        _, s_apply = tf.unstack(tf.random.experimental.stateless_split(seeds[i], 2))
        np.testing.assert_allclose(cta.apply_policy(images[i], op_idx[i], values[i], s_apply), out[i], atol=1e-6)
