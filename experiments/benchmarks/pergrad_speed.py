"""Per-example gradient speed on a WRN-28-2-sized network (Ren et al. Sec. 4.4).

--mode=model times, in one run and all compiled with tf.function: one ordinary batched backward
pass (all parameters), and per-example gradients of --variables by "fast" (the faster of "layerwise" and
"vmap", measured once; the pick is printed), "layerwise" (the paper's rules, per --conv_impl), "vmap"
and "loop".
--mode=layers times only the Conv2D filter-gradient alternatives on WRN-28-2 layer shapes.

    python -m experiments.benchmarks.pergrad_speed                      # batch 16, under a minute on 2 cores
    python -m experiments.benchmarks.pergrad_speed --batches=16,64,256 --repeats=3
    python -m experiments.benchmarks.pergrad_speed --conv_impl=shifted,patches,vmap --methods=layerwise
    python -m experiments.benchmarks.pergrad_speed --mode=layers --batch=16
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from absl import flags  # noqa: E402

from experiments.benchmarks.timing import time_round_robin, xent  # noqa: E402
from experiments.checks import run_main  # noqa: E402
from influence_ssl.pergrad import CONV_IMPLS, conv2d_filter_grads, fastest_method, make_per_example_gradients_fn  # noqa: E402
from influence_ssl.studies import results as study_results  # noqa: E402
from influence_ssl.studies.protocol import write_json  # noqa: E402
from influence_ssl.trainer import ConfigError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "model", ["model", "layers"], "Whole-model timings, or Conv2D filter-gradient alternatives.")
flags.DEFINE_integer("batch", 16, "Examples per batch (the paper uses 256 on a V100).")
flags.DEFINE_list("batches", [], "Several batch sizes in one run (e.g. 16,64,256); overrides --batch.")
flags.DEFINE_integer("repeats", 5, "Timed calls per method after one warm-up call (which includes tracing).")
flags.DEFINE_list("methods", ["fast", "layerwise", "vmap", "loop"], "Per-example methods to time.")
flags.DEFINE_list("conv_impl", ["auto"], f"Conv2D implementations of 'fast'/'layerwise' to time, from {CONV_IMPLS}.")
flags.DEFINE_integer("width", 2, "WRN widening factor k (WRN-28-k).")
flags.DEFINE_integer("depth", 28, "WRN depth (6n+4).")
flags.DEFINE_integer("num_classes", 10, "Classifier outputs.")
flags.DEFINE_enum("variables", "all", ["all", "head"], "Per-example gradients of all parameters or of the classifier.")
flags.DEFINE_bool("training", False, "Run BatchNormalization in training mode (only 'fast' allows it).")
flags.DEFINE_integer("seed", 0, "Random seed of inputs and weights.")
flags.DEFINE_string("json_out", "", "--mode=model: also write the timings to this JSON (format "
                    f"{study_results.PERGRAD_SPEED_FORMAT}, with provenance).")

FORMAT = study_results.PERGRAD_SPEED_FORMAT  # read by experiments.report


def wide_resnet(depth=28, width=2, num_classes=10, input_shape=(32, 32, 3)):
    """A WRN-28-2-like pre-activation network (FixMatch layout: leaky ReLU 0.1, 1x1 projection shortcut
    when the shape changes). Local to this benchmark on purpose; the project's model lives in
    influence_ssl.models (a later issue), and this module must not depend on it."""
    blocks_per_stage = (depth - 4) // 6
    act = lambda: keras.layers.LeakyReLU(0.1)  # noqa: E731
    bn = lambda: keras.layers.BatchNormalization(momentum=0.999, epsilon=1e-3)  # noqa: E731
    inputs = keras.Input(input_shape)
    h = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    for stage, filters in enumerate([16 * width, 32 * width, 64 * width]):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            pre = act()(bn()(h))
            r = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(pre)
            r = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(act()(bn()(r)))
            if stride != 1 or h.shape[-1] != filters:
                h = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False)(pre)
            h = keras.layers.Add()([h, r])
    h = keras.layers.GlobalAveragePooling2D()(act()(bn()(h)))
    return keras.Model(inputs, keras.layers.Dense(num_classes)(h), name=f"wrn_{depth}_{width}")


def run_model(batch):
    tf.random.set_seed(FLAGS.seed)
    model = wide_resnet(FLAGS.depth, FLAGS.width, FLAGS.num_classes)
    rng = np.random.default_rng(FLAGS.seed)
    x = tf.constant(rng.normal(size=(batch, 32, 32, 3)), tf.float32)
    y = tf.constant(rng.integers(0, FLAGS.num_classes, batch), tf.int32)
    variables = model.trainable_variables if FLAGS.variables == "all" else model.layers[-1].trainable_variables
    print(
        f"{model.name}: {model.count_params():,} params, per-example over {FLAGS.variables} "
        f"({sum(int(np.prod(v.shape)) for v in variables):,}), batch {batch}, training={FLAGS.training}, "
        f"{FLAGS.repeats} repeats, TF {tf.__version__}, {os.cpu_count()} CPUs, "
        f"GPUs: {len(tf.config.list_physical_devices('GPU'))}"
    )

    @tf.function
    def batched_backward(x, y):
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(xent(model(x, training=FLAGS.training), y))
        return tape.gradient(total, model.trainable_variables)  # an ordinary step: all parameters

    fns = {"batched backward (sum loss)": batched_backward}
    for method in FLAGS.methods:
        for impl in FLAGS.conv_impl if method in ("fast", "layerwise") else [None]:
            name = f"per-example {method}" + (f" (conv_impl={impl})" if impl else "")
            fns[name] = make_per_example_gradients_fn(
                model, xent, training=FLAGS.training, method=method, variables=variables, conv_impl=impl or "auto"
            )
    results = time_round_robin(fns, (x, y), FLAGS.repeats)
    base = np.median(results["batched backward (sum loss)"][1])
    fast = [np.median(t) for name, (_, t) in results.items() if name.startswith("per-example fast")]
    print("\n| method | warm-up+trace s | median ms | mean ms (±std) | x batched backward | x first fast |")
    print("|---|---|---|---|---|---|")
    for name, (warmup, t) in results.items():
        median = np.median(t)
        vs_fast = f"{median / fast[0]:.2f}" if fast else "-"
        print(
            f"| {name} | {warmup:.1f} | {median * 1e3:.1f} | {np.mean(t) * 1e3:.1f} (±{np.std(t) * 1e3:.1f}) "
            f"| {median / base:.2f} | {vs_fast} |"
        )
    picks = {}
    if "fast" in FLAGS.methods:
        for impl in FLAGS.conv_impl:  # cached by the timed calls: this only reads the pick
            picks[impl] = pick = fastest_method(model, xent, x, y, variables, FLAGS.training, impl)
            print(f"batch {batch}: 'fast' (conv_impl={impl}) runs '{pick}'")
    return {"batch": batch, "fast_picks": picks,
            "methods": {name: {"median_ms": float(np.median(t) * 1e3), "mean_ms": float(np.mean(t) * 1e3),
                               "std_ms": float(np.std(t) * 1e3), "warmup_s": float(warmup),
                               "vs_batched_backward": float(np.median(t) / base)}
                        for name, (warmup, t) in results.items()}}


def run_layers():
    """Conv2D filter-gradient alternatives on the WRN-28-2 3x3 layer shapes: (H, Cin, Cout, stride)."""
    shapes = [(32, 16, 32, 1), (32, 32, 32, 1), (32, 32, 64, 2), (16, 64, 64, 1), (16, 64, 128, 2), (8, 128, 128, 1)]
    rng = np.random.default_rng(FLAGS.seed)
    print(
        f"Conv2D per-example filter gradients, 3x3 'same', batch {FLAGS.batch}, "
        f"median ms over {FLAGS.repeats} interleaved calls"
    )
    print("| layer | " + " | ".join(CONV_IMPLS) + " | batched filter grad (not per-example) | max rel. err vs vmap |")
    print("|---" * (len(CONV_IMPLS) + 3) + "|")
    for size, cin, cout, stride in shapes:
        x = tf.constant(rng.normal(size=(FLAGS.batch, size, size, cin)), tf.float32)
        g = tf.constant(rng.normal(size=(FLAGS.batch, size // stride, size // stride, cout)), tf.float32)
        fns = {
            impl: tf.function(lambda a, b, impl=impl: conv2d_filter_grads(a, b, (3, 3), (stride, stride), "same", impl))
            for impl in CONV_IMPLS
        }
        fns["batched"] = tf.function(
            lambda a, b: tf.compat.v1.nn.conv2d_backprop_filter(a, [3, 3, cin, cout], b, [1, stride, stride, 1], "SAME")
        )
        results = time_round_robin(fns, (x, g), FLAGS.repeats)
        ref = fns["vmap"](x, g).numpy()
        err = max(np.abs(fns[i](x, g).numpy() - ref).max() / np.abs(ref).max() for i in CONV_IMPLS)
        cells = [f"{np.median(results[name][1]) * 1e3:.1f}" for name in fns]
        print(f"| {size}x{size}x{cin}->{cout} s{stride} | " + " | ".join(cells) + f" | {err:.0e} |", flush=True)


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")  # pfor's "Conv2DBackpropFilter uses a while_loop" repeats per layer
    for impl in FLAGS.conv_impl:
        if impl not in CONV_IMPLS:
            raise ConfigError(f"--conv_impl {impl!r} not in {CONV_IMPLS}.")
    if FLAGS.mode == "layers":
        if FLAGS.json_out:
            raise ConfigError("--json_out applies to --mode=model only.")
        run_layers()
        return
    timings = [run_model(batch) for batch in [int(b) for b in FLAGS.batches] or [FLAGS.batch]]
    if FLAGS.json_out:
        settings = {name: FLAGS[name].value for name in ("methods", "conv_impl", "width", "depth", "num_classes",
                                                          "variables", "training", "repeats", "seed")}
        write_json(FLAGS.json_out, {"format": FORMAT, "settings": settings, "batches": timings,
                                    "timing": "median of --repeats interleaved calls after one warm-up call; "
                                              "tf.function"})
        print(f"results: {FLAGS.json_out}")


if __name__ == "__main__":
    run_main(main)
