"""Augmentation speed: a batch augmented at once against the same augmentation one image at a time.

For each setting (batch, height, width, channels) it times, compiled with tf.function and AutoGraph off, the weak
augmentation and FixMatch's and UDA's strong views of one batch, made two ways in one run: "batched", the
package's functions on the whole batch (each op runs once on the images that drew it), and "per_image", the same
functions called on one image at a time inside a `tf.map_fn` (every op's kernels once per image). The two give
different draws (a batch's numbers are drawn at once) from the same distribution; tests/test_augment_fill.py
checks that each image of a batch gets exactly what each op gives it alone.

    python -m experiments.benchmarks.augment_speed                      # digits and CIFAR sizes, one thread
    python -m experiments.benchmarks.augment_speed --settings=96x8x8x1 --repeats=20
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from experiments.benchmarks.timing import time_round_robin  # noqa: E402
from experiments.checks import run_main, writable_dir  # noqa: E402
from influence_ssl import augment  # noqa: E402
from influence_ssl.augment._seed import map_batch  # noqa: E402
from influence_ssl.studies import results as study_results  # noqa: E402
from influence_ssl.studies.protocol import write_json  # noqa: E402
from influence_ssl.trainer import ConfigError  # noqa: E402

FORMAT = study_results.AUGMENT_SPEED_FORMAT  # read by experiments.report
AUGMENTATIONS = {"weak": augment.weak_augment, "strong_fixmatch": augment.strong_fixmatch,
                 "strong_uda": augment.strong_uda}

FLAGS = flags.FLAGS
# The digits FixMatch unlabeled batch (32 · 3), a CIFAR-10 batch of 64 and FixMatch's CIFAR-10 unlabeled batch (64 · 7).
flags.DEFINE_list("settings", ["96x8x8x1", "64x32x32x3", "448x32x32x3"], "Batches to time, as BxHxWxC.")
flags.DEFINE_integer("repeats", 10, "Timed calls per function after one warm-up call (which includes tracing).")
flags.DEFINE_integer("threads", 1, "TensorFlow intra- and inter-op threads (1: as each lane of a study sweep).")
flags.DEFINE_string("json_out", "", f"Also write the timings to this JSON (format {FORMAT}, with provenance).")


def parse_setting(text):
    try:
        batch, height, width, channels = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--settings entry {text!r} is not BxHxWxC (e.g. 96x8x8x1).") from None
    if min(batch, height, width) < 1 or channels not in (1, 3):
        raise ConfigError(f"--settings entry {text!r}: sizes must be positive and C 1 or 3.")
    return batch, height, width, channels


def functions(name):
    """{"batched": f, "per_image": f} of one augmentation, each (images, seed) -> images, compiled."""
    fn = AUGMENTATIONS[name]
    batched = tf.function(lambda images, seed: fn(images, seed), autograph=False)
    per_image = tf.function(lambda images, seed: map_batch(fn, images, seed), autograph=False)
    return {"batched": batched, "per_image": per_image}


def run_setting(shape):
    """{augmentation: {way: {"median_ms", "warmup_s"}, "per_image_over_batched"}} of one batch shape."""
    images = tf.constant(np.random.default_rng(0).integers(0, 256, shape).astype(np.float32) / 127.5 - 1.0)
    seed = tf.constant([0, 1], tf.int64)
    out = {}
    for name in AUGMENTATIONS:
        timings = time_round_robin(functions(name), (images, seed), FLAGS.repeats)
        ways = {way: {"median_ms": 1e3 * float(np.median(calls)), "warmup_s": warmup}
                for way, (warmup, calls) in timings.items()}
        ratio = ways["per_image"]["median_ms"] / ways["batched"]["median_ms"]
        out[name] = {**ways, "per_image_over_batched": ratio}
        print(f"| {'x'.join(map(str, shape))} | {name} | {ways['per_image']['median_ms']:.2f} | "
              f"{ways['batched']['median_ms']:.2f} | {ratio:.1f} |", flush=True)
    return out


def main(argv):
    del argv
    shapes = [parse_setting(s) for s in FLAGS.settings]
    if FLAGS.threads < 1:
        raise ConfigError("--threads must be at least 1.")
    if FLAGS.json_out:  # before the timings, not after them
        writable_dir(os.path.dirname(os.path.abspath(FLAGS.json_out)), "--json_out")
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    print("| batch | augmentation | per image, ms | batched, ms | per image / batched |")
    print("|---|---|---|---|---|")
    results = [{"shape": list(shape), "augmentations": run_setting(shape)} for shape in shapes]
    if FLAGS.json_out:
        write_json(FLAGS.json_out, {"format": FORMAT, "settings": {"repeats": FLAGS.repeats, "threads": FLAGS.threads},
                                    "results": results,
                                    "timing": "median of --repeats interleaved calls after one warm-up call; "
                                              "tf.function"})
        print(f"results: {FLAGS.json_out}")


if __name__ == "__main__":
    run_main(main)
