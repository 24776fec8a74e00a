"""Seed helpers for stateless, seed-driven augmentation (no code copied from any project).

Every random function in `influence_ssl.augment` takes `seed`, a shape-[2] int32/int64 tensor as used by
`tf.random.stateless_*`, and derives sub-seeds with `tf.random.experimental.stateless_split`.
"""
import tensorflow as tf


def as_seed(seed):
    """A shape-[2] int64 seed tensor."""
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        raise TypeError(f"seed must be int32 or int64, got {seed.dtype}")
    seed = tf.cast(seed, tf.int64)
    seed.shape.assert_is_compatible_with([2])
    return tf.reshape(seed, [2])


def split(seed, num):
    """`num` independent sub-seeds, as a list of shape-[2] int64 tensors (num is a Python int)."""
    seeds = tf.random.experimental.stateless_split(as_seed(seed), num=num)
    return tf.unstack(seeds, num=num)


# The augmentations have no Python control flow on tensors: AutoGraph's conversion of them would only cost
# tracing time (it was most of a step's tracing).
@tf.autograph.experimental.do_not_convert
def map_batch(fn, images, seed):
    """Apply fn(image, seed) to each image of [B, H, W, C] with per-image seeds split from `seed`."""
    images = tf.convert_to_tensor(images, tf.float32)
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(as_seed(seed), num=batch)
    out = tf.map_fn(
        lambda args: fn(args[0], args[1]),
        (images, seeds),
        fn_output_signature=tf.TensorSpec(images.shape[1:], tf.float32),
    )
    out.set_shape(images.shape)
    return out
