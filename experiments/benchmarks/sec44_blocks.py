"""The measurement blocks of experiments.benchmarks.sec44 that need no trainer: per-example gradients and the
Λ update alone, with the helpers every block shares (the model, GPU and child-process peak memory, ratios).

The Λ step and Alg. 1 overhead blocks are in sec44_train_blocks, the printed report in sec44_report.
"""
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from experiments.benchmarks.timing import fetch, time_round_robin, xent
from influence_ssl import models
from influence_ssl.optimizers import MaskedAdam
from influence_ssl.pergrad import fastest_method, make_per_example_gradients_fn
from influence_ssl.weights import ExampleWeights

PERGRAD_METHODS = ("fast", "layerwise", "vmap", "loop")  # fast: the faster of layerwise and vmap (measured)
CHILD_PREFIX = "SEC44_CHILD "  # the line of a child process (sec44 --_only) that carries its peak memory


def build_model(arch, seed):
    if arch == "small_cnn":
        return models.small_cnn(10, input_shape=(32, 32, 3), seed=seed)
    return models.wide_resnet_28_2(10, variant="fixmatch", input_shape=(32, 32, 3), seed=seed)


OOM = (tf.errors.ResourceExhaustedError, MemoryError)


def gpu_peak(fn):
    """{peak_bytes, peak_above_start_bytes} of one call of fn (GPU:0), or "oom"."""
    tf.config.experimental.reset_memory_stats("GPU:0")
    start = tf.config.experimental.get_memory_info("GPU:0")["current"]
    try:
        fetch(fn())
    except OOM:
        return "oom"
    peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
    return {"peak_bytes": int(peak), "peak_above_start_bytes": int(peak - start)}


def child_peak_rss(block, method, settings, batch=None):
    """Peak RSS (bytes) of a child process that builds the block's model and runs only `method` twice;
    "oom" if it runs out of memory; {"value": None, "reason": ...} if it fails otherwise."""
    args = [sys.executable, "-m", "experiments.benchmarks.sec44", f"--_only={block}:{method}",
            f"--seed={settings['seed']}", f"--arch={settings['arch'][block]}",
            "--lambda_batches=" + ",".join(str(v) for v in settings["lambda_batches"].values())]
    if batch is not None:
        args.append(f"--batch={batch}")
    result = subprocess.run(args, capture_output=True, text=True, cwd=os.getcwd())
    if result.returncode in (-9, 137):  # SIGKILL: the kernel's out-of-memory killer
        return "oom"
    for line in result.stdout.splitlines():
        if line.startswith(CHILD_PREFIX):
            return json.loads(line[len(CHILD_PREFIX):])["peak_rss_bytes"]
    return {"value": None, "reason": f"child exited {result.returncode}: {result.stderr.strip()[-300:]}"}


def ratio(a, b):
    return float(a / b) if isinstance(a, float) and isinstance(b, float) else None


# ----- block 1: per-example gradients ----------------------------------------------------------


def pergrad_functions(model, methods):
    """{name: tf.function(x, y)}. Each returns squared norms of its gradients: every gradient is
    computed and read, but only [B] (or one) numbers are fetched, so no B×|θ| device-to-host copy
    is timed (at B=256, 1.5 GB)."""
    variables = model.trainable_variables

    def squared_norms(grads, per_example):
        axis = (lambda g: list(range(1, g.shape.rank))) if per_example else (lambda g: None)
        return tf.add_n([tf.reduce_sum(tf.square(g), axis=axis(g)) for g in grads])

    @tf.function
    def batched_backward(x, y):  # an ordinary training backward: one gradient of the summed loss
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(xent(model(x, training=False), y))
        return squared_norms(tape.gradient(total, variables), per_example=False)

    fns = {"batched_backward": batched_backward}
    for method in methods:
        per_example = make_per_example_gradients_fn(model, xent, training=False, method=method, variables=variables)
        fns[method] = tf.function(lambda x, y, f=per_example: squared_norms(f(x, y), per_example=True))
    return fns


def pergrad_inputs(batch, seed):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.uniform(-1, 1, size=(batch, 32, 32, 3)), tf.float32)
    y = tf.constant(rng.integers(0, 10, batch), tf.int32)
    return x, y


def run_per_example_gradients(settings):
    arch = settings["arch"]["per_example_gradients"]
    tf.random.set_seed(settings["seed"])
    model = build_model(arch, settings["seed"])
    fns = pergrad_functions(model, PERGRAD_METHODS)
    num_params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    out, memory = {}, {}
    for batch in settings["pergrad_batches"]:
        x, y = pergrad_inputs(batch, settings["seed"])
        failed = {}
        results = time_round_robin(fns, (x, y), settings["repeats"], catch=OOM, failed=failed)
        medians = {name: float(np.median(results[name][1])) if name in results else "oom" for name in fns}
        entry = {m: medians[m] for m in (*PERGRAD_METHODS, "batched_backward")}
        for m in PERGRAD_METHODS:
            entry[f"{m}_vs_batched_backward"] = ratio(medians[m], medians["batched_backward"])
        entry["loop_vs_fast"] = ratio(medians["loop"], medians["fast"])
        entry["vmap_vs_fast"] = ratio(medians["vmap"], medians["fast"])
        entry["layerwise_vs_fast"] = ratio(medians["layerwise"], medians["fast"])
        # The pick fast made (cached by its timed calls; this reads it).
        entry["fast_runs"] = fastest_method(model, xent, x, y, model.trainable_variables, False, "auto")
        entry["setup"] = {"batch": batch, "warmup_s": {name: round(results[name][0], 3) for name in results}}
        if settings["gpu"]:
            mem = {name: ("oom" if name in failed else gpu_peak(lambda f=fn: f(x, y))) for name, fn in fns.items()}
            mem["kind"] = "gpu_peak_bytes: allocator peak of one call, in this process (model and inputs included)"
        elif "per_example_gradients" in settings["cpu_memory"]:
            mem = {name: child_peak_rss("per_example_gradients", name, settings, batch)
                   for name in ("baseline", "batched_backward", *PERGRAD_METHODS)}
            mem["kind"] = ("cpu_peak_rss_bytes: VmHWM of a child process that runs only this method twice "
                           "(baseline: TensorFlow, the model and the inputs, no call)")
        else:
            mem = {"value": None, "reason": "not measured: per_example_gradients not in --cpu_memory"}
        if batch == settings["pergrad_batches"][0]:
            out.update(entry)
            memory["per_example_gradients"] = mem
        else:
            out[f"batch_{batch}"] = entry
            memory[f"per_example_gradients_batch_{batch}"] = mem
    out["setup"].update({"arch": arch, "num_params": num_params, "bn": "inference mode",
                         "variables": "all trainable",
                         "forced_by": "squared norm of every (per-example) gradient, fetched"})
    return out, memory


# ----- block 3: the Λ update alone -------------------------------------------------------------


def run_lambda_update(settings):
    rng = np.random.default_rng(settings["seed"])
    fns, tables = {}, []
    for size in settings["table_sizes"]:
        table = ExampleWeights(size, 1.0, MaskedAdam(0.01))
        ids = tf.constant(rng.integers(0, size, settings["update_batch"]), tf.int64)
        grads = tf.constant(rng.normal(size=settings["update_batch"]), tf.float32)

        @tf.function
        def update(table=table, ids=ids, grads=grads):
            table.apply_gradients(ids, grads)
            return table.gather(ids)  # [batch] numbers fetched: the update has happened

        fns[str(size)] = update
        tables.append(table)
    results = time_round_robin(fns, (), settings["update_repeats"])
    out = {name: float(np.median(t)) for name, (_, t) in results.items()}
    sizes = list(fns)
    out["largest_over_smallest"] = out[sizes[-1]] / out[sizes[0]]
    out["setup"] = {"update_batch": settings["update_batch"], "repeats": settings["update_repeats"],
                    "largest_over_smallest": f"|U| = {sizes[-1]} over |U| = {sizes[0]}",
                    "optimizer": "MaskedAdam (M-Adam), lr 0.01; gather, sparse step, projection to λ >= 0"}
    return out
