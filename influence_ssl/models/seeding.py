"""One seed per (run seed, initializer) so that no two initializers of the project share a stream.

A seeded tf_keras initializer draws the same stream at any shape, so `seed + i` would give layer i+1
of run s the values of layer i of run s+1. Here initializer i of run s gets s·1009 + i, distinct for
every (s, i) with 0 <= i < 1009 (no model of the project has that many initializers).
"""

SEED_STRIDE = 1009


def layer_seed(seed, index):
    """The seed of initializer `index` (0 <= index < SEED_STRIDE) of run `seed`; None stays None."""
    if seed is None:
        return None
    if not 0 <= index < SEED_STRIDE:
        raise ValueError(f"initializer index must be in [0, {SEED_STRIDE}), got {index}.")
    return seed * SEED_STRIDE + index
