"""Per-example Conv2D filter gradients from a layer input and the gradient at its output.

Every implementation maps
    x: [B, H, W, Cin]        the layer input,
    g: [B, Ho, Wo, Cout]     d(sum of losses)/d(pre-activation output),
to the per-example filter gradients [B, kh, kw, Cin, Cout], where
    dW[b, i, j, c, o] = sum_{h, w} x_pad[b, s*h + i, s*w + j, c] * g[b, h, w, o].

"shifted" is a sum over the kh*kw filter taps of one batched matmul each. "patches" is im2col via
tf.image.extract_patches + einsum (Opacus' unfold recipe); "vmap" is the paper's
tf.vectorized_map of Conv2DBackpropFilter, which pfor still lowers to a while_loop in TF 2.21.
"auto" (the default) measures the three once per (device kind, shapes, stride, padding) and keeps the
fastest, as cuDNN's autotuner does: which one wins depends on the batch size, the layer and the device
(docs/design/per_example_gradients.md). All three are exact; they differ in float rounding only.
"""
import tensorflow as tf

from influence_ssl.pergrad.timing import median_seconds

CONV_IMPLS = ("auto", "shifted", "patches", "vmap")
_tuned = {}  # (device kind, x shape, g shape, kernel, strides, padding) -> implementation name


def same_or_valid_padding(size, kernel, stride, padding):
    """Returns (pad_before, pad_after, out_size) of one spatial axis, TF semantics.

    "same" pads the total max((out-1)*s + k - n, 0) with the extra pixel after, as tf.nn.conv2d does.
    """
    if padding == "valid":
        return 0, 0, (size - kernel) // stride + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def filter_grads_shifted(x, g, kernel_size, strides, padding):
    """Sum over filter taps of x-slice^T @ g: kh*kw batched matmuls [B, Cin, HoWo] x [B, HoWo, Cout].

    Needs static H, W. Strided slices are slow on the CPU, so for stride s > 1 the padded input is
    reshaped once to [B, Hq, s, Wq, s, Cin] and every tap becomes a unit-stride slice.
    """
    (kh, kw), (sh, sw) = kernel_size, strides
    _, height, width, cin = x.shape
    cout = g.shape[-1]
    top, _, out_h = same_or_valid_padding(height, kh, sh, padding)
    left, _, out_w = same_or_valid_padding(width, kw, sw, padding)
    # Rows of tap i are i + s*h, h < Ho: they live in the first s*Hq padded rows.
    rows_q = (kh - 1) // sh + out_h
    cols_q = (kw - 1) // sw + out_w
    pad_bottom = max(sh * rows_q - height - top, 0)
    pad_right = max(sw * cols_q - width - left, 0)
    x_pad = tf.pad(x, [[0, 0], [top, pad_bottom], [left, pad_right], [0, 0]])
    x_pad = x_pad[:, : sh * rows_q, : sw * cols_q, :]  # "valid" may leave unused rows: crop them
    batch = tf.shape(x)[0]
    x_phase = tf.reshape(x_pad, [batch, rows_q, sh, cols_q, sw, cin])
    g_flat = tf.reshape(g, [batch, out_h * out_w, cout])
    taps = []
    for i in range(kh):
        for j in range(kw):
            x_tap = x_phase[:, i // sh : i // sh + out_h, i % sh, j // sw : j // sw + out_w, j % sw, :]
            x_tap = tf.reshape(x_tap, [batch, out_h * out_w, cin])
            taps.append(tf.matmul(x_tap, g_flat, transpose_a=True))  # [B, Cin, Cout]
    return tf.reshape(tf.stack(taps, axis=1), [batch, kh, kw, cin, cout])


def filter_grads_patches(x, g, kernel_size, strides, padding):
    """im2col: extract_patches gives [B, Ho, Wo, kh*kw*Cin] (tap-major, channel-minor), then einsum."""
    (kh, kw), (sh, sw) = kernel_size, strides
    cin, cout = x.shape[-1], g.shape[-1]
    patches = tf.image.extract_patches(
        x, sizes=[1, kh, kw, 1], strides=[1, sh, sw, 1], rates=[1, 1, 1, 1], padding=padding.upper()
    )
    grads = tf.einsum("bhwp,bhwo->bpo", patches, g)
    return tf.reshape(grads, [tf.shape(x)[0], kh, kw, cin, cout])


def filter_grads_vmap(x, g, kernel_size, strides, padding):
    """The paper's recipe: Conv2DBackpropFilter on batch-of-one slices under tf.vectorized_map."""
    (kh, kw), (sh, sw) = kernel_size, strides
    filter_shape = tf.constant([kh, kw, x.shape[-1], g.shape[-1]])

    def one(pair):
        x_b, g_b = pair
        return tf.compat.v1.nn.conv2d_backprop_filter(
            x_b[None], filter_shape, g_b[None], [1, sh, sw, 1], padding.upper()
        )

    return tf.vectorized_map(one, (x, g))


_IMPLS = {
    "shifted": filter_grads_shifted,
    "patches": filter_grads_patches,
    "vmap": filter_grads_vmap,
}


def _device_kind():
    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"


def fastest_impl(x, g, kernel_size, strides, padding):
    """The fastest exact implementation for the static shapes and dtype of x and g on this kind of
    device: the lowest median of interleaved timed calls (timing.median_seconds), measured once and cached."""
    x_shape, g_shape = tuple(x.shape.as_list()), tuple(g.shape.as_list())
    key = (_device_kind(), x.dtype.name, x_shape, g_shape, tuple(kernel_size), tuple(strides), padding)
    if key not in _tuned:
        with tf.init_scope():  # eager, outside any function being traced (no gradient tape is involved)
            x = tf.random.stateless_normal(x_shape, seed=[0, 1], dtype=x.dtype)
            g = tf.random.stateless_normal(g_shape, seed=[0, 2], dtype=g.dtype)
            compiled = {name: tf.function(lambda a, b, fn=fn: fn(a, b, tuple(kernel_size), tuple(strides), padding))
                        for name, fn in _IMPLS.items()}
            seconds = median_seconds(compiled, (x, g))
        _tuned[key] = min(seconds, key=seconds.get)
    return _tuned[key]


def conv2d_filter_grads(x, g, kernel_size, strides, padding, impl="auto"):
    """Per-example filter gradients [B, kh, kw, Cin, Cout]; see the module docstring for the maths.

    padding is "same" or "valid" (lower case, as Keras stores it). "auto" needs static shapes and
    takes "shifted" otherwise; "shifted" falls back to "patches" when H or W is not static.
    """
    if impl not in CONV_IMPLS:
        raise ValueError(f"unknown conv_impl {impl!r}; choose one of {CONV_IMPLS}")
    if impl == "auto":
        static = x.shape.is_fully_defined() and g.shape.is_fully_defined()
        impl = fastest_impl(x, g, kernel_size, strides, padding) if static else "shifted"
    if impl == "shifted" and (x.shape[1] is None or x.shape[2] is None):
        impl = "patches"
    return _IMPLS[impl](x, g, tuple(kernel_size), tuple(strides), padding)
