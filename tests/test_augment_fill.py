"""RandAugment's exposed-area (alpha) behaviour and CTAugment's cutout side and rescale-filter index,
against the original pipelines' behaviour.

The reference here runs Pillow the way google-research/fixmatch (third_party/auto_augment) and
google-research/uda (image/randaugment) do: uint8 image -> RGBA (alpha 255) -> ops -> "unwrap",
where every pixel with alpha 0 becomes 0. Geometric ops fill (0, 0, 0, 0); AutoContrast, Equalize,
Posterize, Solarize and Invert go through RGB and back, dropping alpha (exposed pixels become
black and visible); the ImageEnhance ops keep alpha but compute on the black RGB underneath.
One-channel images are run as RGB with three equal channels. Written for this test; no code copied.
"""
import numpy as np
import pytest
import tensorflow as tf

from influence_ssl.augment import ctaugment, ops, randaugment

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageEnhance, ImageOps  # noqa: E402

FM = randaugment.FIXMATCH_OPS
UDA = randaugment.UDA_OPS
UDA_CUTOUT_RGB = (125, 122, 113)  # the colour UDA's Cutout op writes, with alpha 0


def _rgb_op(fn):
    return lambda im, arg: fn(im.convert("RGB"), arg).convert("RGBA")


def _enhance(cls):
    return lambda im, m: cls(im).enhance(0.1 + m * 1.8 / 10)


# name -> fn(PIL RGBA image, (magnitude, sign)) as the originals define the op at integer level m.
PIL_OPS = {
    "Identity": lambda im, a: im,
    "AutoContrast": _rgb_op(lambda im, a: ImageOps.autocontrast(im)),
    "Equalize": _rgb_op(lambda im, a: ImageOps.equalize(im)),
    "Invert": _rgb_op(lambda im, a: ImageOps.invert(im)),
    "Posterize": _rgb_op(lambda im, a: ImageOps.posterize(im, 4 - int(a[0] * 4 / 10))),
    "Solarize": _rgb_op(lambda im, a: ImageOps.solarize(im, 256 - int(a[0] * 256 / 10))),
    "Color": lambda im, a: _enhance(ImageEnhance.Color)(im, a[0]),
    "Contrast": lambda im, a: _enhance(ImageEnhance.Contrast)(im, a[0]),
    "Brightness": lambda im, a: _enhance(ImageEnhance.Brightness)(im, a[0]),
    "Sharpness": lambda im, a: _enhance(ImageEnhance.Sharpness)(im, a[0]),
    "Rotate": lambda im, a: im.rotate(a[1] * int(a[0] * 30 / 10)),
    "ShearX": lambda im, a: im.transform(im.size, Image.AFFINE, (1, a[1] * a[0] * 0.3 / 10, 0, 0, 1, 0)),
    "ShearY": lambda im, a: im.transform(im.size, Image.AFFINE, (1, 0, 0, a[1] * a[0] * 0.3 / 10, 1, 0)),
    # The project's sign +1 moves the content right/down, i.e. a negative PIL offset; translation
    # is m px at 32 px, scaled with the image.
    "TranslateX": lambda im, a: im.transform(im.size, Image.AFFINE, (1, 0, -a[1] * a[0] * im.size[0] / 32, 0, 1, 0)),
    "TranslateY": lambda im, a: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, -a[1] * a[0] * im.size[1] / 32)),
}


def pil_pipeline(u8, steps, cutout_box=None):
    """u8 [H, W, 3]; steps [(name, magnitude, sign)] -> float [H, W, 3] in [-1, 1].
    cutout_box (top, left, height, width) stands for UDA's Cutout op, placed where the project put it."""
    img = Image.fromarray(u8).convert("RGBA")
    for name, m, sign in steps:
        if name == "Cutout":
            top, left, height, width = cutout_box
            a = np.asarray(img).copy()
            a[top:top + height, left:left + width] = UDA_CUTOUT_RGB + (0,)
            img = Image.fromarray(a, "RGBA")
        else:
            img = PIL_OPS[name](img, (m, sign))
    a = np.asarray(img).astype(np.float32)
    out = a[..., :3] / 127.5 - 1.0
    out[a[..., 3] == 0] = 0.0  # unwrap
    return out


def project(x, steps, op_names, seed=(1, 2)):
    """The project's RandAugment of one image [H, W, C] with the policy `steps`, positions drawn from `seed`."""
    policy = randaugment.Policy(
        tf.constant([[op_names.index(name) for name, _, _ in steps]]),
        tf.constant([[m for _, m, _ in steps]]),
        tf.constant([[float(s) for _, _, s in steps]]),
        tf.ones([1, len(steps)], tf.bool),
        tf.random.stateless_uniform([1, len(steps), 2], tf.constant(seed, tf.int64)),
    )
    return randaugment.apply_policy(x[None], policy, op_names)[0]


def images():
    """Three 32x32x3 uint8 images with a narrowed range (so black exposure changes the statistics)
    and one 8x8 grayscale image, as (uint8 [H, W, 3], x [H, W, C] in [-1, 1])."""
    out = []
    for i, (lo, hi) in enumerate([(40, 215), (0, 180), (70, 256)]):
        rng = np.random.RandomState(10 + i)
        small = rng.uniform(lo, hi, (8, 8, 3))
        u8 = np.clip(np.kron(small, np.ones((4, 4, 1))) + rng.uniform(-15, 15, (32, 32, 3)), lo, hi - 1)
        u8 = u8.astype(np.uint8)
        out.append((u8, tf.constant(u8.astype(np.float32) / 127.5 - 1.0)))
    gray = np.random.RandomState(20).randint(30, 230, (8, 8)).astype(np.uint8)
    out.append((np.stack([gray] * 3, -1), tf.constant(gray[..., None].astype(np.float32) / 127.5 - 1.0)))
    return out


IMAGES = images()


def assert_matches(got, want, ctx, levels=1):
    """As the Pillow tests in test_augment.py: the project's output rounded to the uint8 grid is
    within `levels` grey levels of Pillow's (the project keeps floats where Pillow rounds and
    truncates, e.g. ImageEnhance's extrapolating blend)."""
    got = np.asarray(got)
    if got.shape[-1] == 1:  # equal channels in the reference: compare one
        assert np.array_equal(want[..., 0], want[..., 1]) and np.array_equal(want[..., 0], want[..., 2])
        want = want[..., :1]
    err = np.abs(np.round((got + 1.0) * 127.5) - (want + 1.0) * 127.5)  # unwrapped 0 is 127.5 here
    where = np.argwhere(err > levels + 1e-3)[:3].tolist()
    assert err.max() <= levels + 1e-3, f"{ctx}: max error {err.max():.2f} grey levels at {where}"


# (steps, op list). Magnitudes avoid the half-pixel ties where nearest sampling in TF and PIL can
# round differently (shear 0.12, 0.5 px translations at 8 px); those are not about the fill.
POLICIES = [
    ([("TranslateX", 9, 1), ("AutoContrast", 1, 1)], FM),
    ([("Rotate", 7, -1), ("AutoContrast", 1, 1)], FM),
    ([("ShearY", 6, 1), ("Equalize", 1, 1)], FM),
    ([("TranslateY", 8, -1), ("Posterize", 3, 1)], FM),
    ([("ShearX", 9, -1), ("Solarize", 4, 1)], FM),
    ([("TranslateX", 4, -1), ("Invert", 2, 1)], UDA),
    ([("Rotate", 9, 1), ("Contrast", 8, 1)], FM),
    ([("TranslateY", 8, 1), ("Contrast", 2, 1)], FM),
    ([("ShearX", 7, 1), ("Sharpness", 9, 1)], FM),
    ([("TranslateX", 8, 1), ("Sharpness", 2, 1)], FM),
    ([("Rotate", 5, -1), ("Color", 9, 1)], FM),
    ([("TranslateY", 4, -1), ("Brightness", 3, 1)], FM),
    ([("ShearY", 9, -1), ("Brightness", 9, 1)], FM),
    ([("Rotate", 9, -1)], FM),
    ([("TranslateX", 8, 1), ("Identity", 3, 1)], FM),
    ([("Rotate", 8, 1), ("TranslateY", 8, 1)], FM),
    ([("ShearX", 9, 1), ("TranslateX", 4, -1)], UDA),
    ([("Contrast", 9, 1), ("TranslateX", 8, 1)], FM),  # geometric last: plain fill
    ([("AutoContrast", 1, 1), ("Rotate", 6, 1)], FM),
]


def _policy_id(p):
    return "+".join(f"{n}{m * s}" for n, m, s in p[0])


@pytest.mark.parametrize("policy", POLICIES, ids=[_policy_id(p) for p in POLICIES])
def test_randaugment_exposed_area_matches_rgba_pipeline(policy):
    steps, op_names = policy
    for k, (u8, x) in enumerate(IMAGES):
        assert_matches(project(x, steps, op_names), pil_pipeline(u8, steps), f"image {k}")


def _cutout_box(x, seed):
    """Where the project's Cutout op (magnitude 3) lands for `seed`: the zeros of an all-ones image."""
    ones = tf.ones_like(x)
    out = project(ones, [("Cutout", 3, 1)], UDA, seed).numpy()[..., 0]
    rows, cols = np.nonzero(out == 0)
    assert len(rows) and len(rows) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
    return rows.min(), cols.min(), np.ptp(rows) + 1, np.ptp(cols) + 1  # a square clipped at the border


@pytest.mark.parametrize("second", ["AutoContrast", "Invert", "Contrast", "Brightness", None])
def test_uda_cutout_op_is_a_coloured_transparent_square(second):
    """UDA's Cutout op writes (125, 122, 113) with alpha 0: 0 after unwrap unless an RGB op follows."""
    steps = [("Cutout", 3, 1)] + ([(second, 3, 1)] if second else [])
    for k, (u8, x) in enumerate(IMAGES[:3]):
        seed = (5, k)
        box = top, left, height, width = _cutout_box(x, seed)
        if top > 0 and left > 0 and top + height < 32 and left + width < 32:
            assert height == width == 6  # 2 m px at 32 px
        want = pil_pipeline(u8, steps, box)
        assert_matches(project(x, steps, UDA, seed), want, f"image {k}")


def test_uda_cutout_colour_on_one_channel_is_its_luma():
    """No original for C=1; the square takes the 'L' value of (125, 122, 113), 122."""
    u8, x = IMAGES[3]
    seed = (3, 3)
    top, left, height, width = _cutout_box(x, seed)
    out = project(x, [("Cutout", 6, 1), ("Invert", 1, 1)], UDA, seed).numpy()[..., 0]
    np.testing.assert_allclose(out[top:top + height, left:left + width], -(122 / 127.5 - 1), atol=1e-5)


GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
FLOAT_OPS = ("AutoContrast", "Color", "Contrast", "Brightness", "Sharpness")  # not on the uint8 grid here


def test_randaugment_is_the_sampled_policy_and_matches_pillow():
    """randaugment() is its sampled policy applied; 60 policies (2 ops, magnitudes 1..9; p = 1 for more
    pairs), applied as one batch of copies of an image, against the RGBA pipeline one image at a time."""
    u8, x = IMAGES[0]
    for s in range(3):
        seed = tf.constant([s, 77], tf.int64)
        np.testing.assert_array_equal(
            randaugment.randaugment(x, seed, FM, prob=1.0).numpy(),
            randaugment.apply_policy(x[None], randaugment.sample_policy(seed, 1, FM, prob=1.0), FM)[0])
    count = 60
    policy = randaugment.sample_policy(tf.constant([0, 77], tf.int64), count, FM, prob=1.0)
    got = randaugment.apply_policy(tf.tile(x[None], [count, 1, 1, 1]), policy, FM).numpy()
    checked = 0
    for b in range(count):
        idx, mags, signs, applied = (field[b] for field in policy[:4])
        steps = [(FM[int(i)], int(m), int(sg)) for i, m, sg, a in zip(idx, mags, signs, applied) if a]
        if any(n in ("ShearX", "ShearY", "Rotate") and m == 4 for n, m, _ in steps):
            continue  # shear 0.12 / rotate 12 deg: nearest-sampling ties, not the fill
        names = [n for n, _, _ in steps]
        if len(names) == 2 and names[0] in FLOAT_OPS and names[1] not in GEOMETRIC + ("Identity",):
            continue  # float vs uint8 between ops: a 1-level difference can cross a threshold
        # Two ops: up to two blends' worth of float-vs-uint8 difference.
        assert_matches(got[b], pil_pipeline(u8, steps), f"image {b} {steps}", levels=2)
        checked += 1
    assert checked >= 35


@pytest.mark.parametrize("op_names", [FM, UDA], ids=["fixmatch", "uda"])
@pytest.mark.parametrize("shape", [(40, 8, 8, 1), (30, 32, 32, 3)], ids=["digits", "cifar"])
def test_a_batch_is_its_images_one_at_a_time(op_names, shape):
    """apply_policy runs each op once on the images that drew it; the reference runs the ops of the
    table one image at a time on [H, W, C] (the per-image ops compared with Pillow above). Exactly equal."""
    rng = np.random.RandomState(len(op_names) + shape[1])
    images = tf.constant(rng.randint(0, 256, shape).astype(np.float32) / 127.5 - 1.0)
    policy = randaugment.sample_policy(tf.constant([4, shape[1]], tf.int64), shape[0], op_names, num_ops=3,
                                       prob=0.8)
    got = randaugment.apply_policy(images, policy, op_names).numpy()
    table = randaugment.op_table()
    for b in range(shape[0]):
        image, mask = images[b], tf.ones(shape[1:3] + (1,))
        for i in range(3):
            if policy.applied[b, i]:
                op = table[op_names[int(policy.ops[b, i])]]
                image, mask = op(image, mask, policy.magnitudes[b, i], policy.signs[b, i], policy.positions[b, i])
        np.testing.assert_array_equal(got[b], randaugment.unwrap(image, mask).numpy(), err_msg=f"image {b}")
    assert len(set(policy.ops.numpy()[policy.applied.numpy()])) == len(op_names)  # every op ran somewhere


def test_sampled_policies_have_the_documented_distribution():
    n = 20_000
    policy = randaugment.sample_policy(tf.constant([8, 8], tf.int64), n, UDA, num_ops=2, prob=0.5)
    ops_, mags, signs, applied = (np.asarray(f) for f in policy[:4])
    for values, support in ((ops_, range(len(UDA))), (mags, range(1, 10)), (signs, (-1.0, 1.0))):
        counts = np.array([(values == v).sum() for v in support])
        expected = values.size / len(support)
        assert counts.sum() == values.size and np.abs(counts - expected).max() < 5 * np.sqrt(expected)
    assert abs(applied.mean() - 0.5) < 5 * np.sqrt(0.25 / applied.size)
    positions = np.asarray(policy.positions)
    assert positions.shape == (n, 2, 2) and 0 <= positions.min() and positions.max() < 1
    # Slots and images independent: the two slots' ops agree about as often as chance says.
    assert abs((ops_[:, 0] == ops_[:, 1]).mean() - 1 / len(UDA)) < 5 * np.sqrt(1 / len(UDA) / n)


def test_randaugment_fill_in_tf_function_and_dataset():
    u8, x = IMAGES[0]
    steps = [("TranslateX", 9, 1), ("AutoContrast", 1, 1)]
    want = pil_pipeline(u8, steps)
    fn = tf.function(lambda img: project(img, steps, FM))
    assert_matches(fn(x), want, "tf.function")
    ds = tf.data.Dataset.from_tensors(x).map(lambda img: project(img, steps, FM))
    assert_matches(next(iter(ds)), want, "tf.data")


# ----------------------------------------------------------------------------- CTAugment
def _changed(before, after):
    return np.any(np.asarray(before) != np.asarray(after), axis=-1)


def test_ctaugment_cutout_side_is_even_as_in_the_original():
    """FixMatch's cutout spans [c - size//2, c + size//2): side 2 * (size // 2), nothing at size 1."""
    image = tf.ones([32, 32, 3])
    idx = ctaugment.OP_NAMES.index("cutout")
    sides = set()
    for s in range(16):
        seed = tf.constant([s, 1])
        # level 0: size 1 + int(0 * 32 * 0.499) = 1 -> no pixel cut.
        assert not _changed(image, ctaugment.apply_op(image, idx, [0.0, 0.0], seed)).any()
        # level 0.15: size 1 + int(2.39) = 3 -> a 2x2 square (or less, clipped at a border).
        mask = _changed(image, ctaugment.apply_op(image, idx, [0.15, 0.0], seed))
        rows, cols = np.nonzero(mask)
        assert len(rows) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        sides.add((np.ptp(rows) + 1, np.ptp(cols) + 1))
    assert max(sides) == (2, 2)


@pytest.mark.parametrize("w", [0.1668, 0.3335, 0.5001, 0.667, 0.8337, 0.9999, 0.05, 0.7])
def test_ctaugment_rescale_filter_index_is_int_w_times_5_99(w):
    image = tf.constant(IMAGES[1][1])
    idx = ctaugment.OP_NAMES.index("rescale")
    got = ctaugment.apply_op(image, idx, [0.5, w], tf.constant([0, 0]))
    want = ops.rescale(image, 0.125, int(np.float32(w) * 5.99))
    np.testing.assert_array_equal(got, want)


def test_every_op_takes_an_empty_batch():
    """A slot's op runs on the images that drew it, which may be none."""
    for name, op in randaugment.op_table().items():
        for shape in ((0, 8, 8, 1), (0, 32, 32, 3)):
            image, mask = op(tf.zeros(shape), tf.ones(shape[:3] + (1,)), tf.zeros([0], tf.int32), tf.zeros([0]),
                             tf.zeros([0, 2]))
            assert image.shape == shape and mask.shape == shape[:3] + (1,), name
