r"""The efficiency claims of Ren et al. Sec. 4.4, measured in one run.

Four blocks (`--blocks`, default all), every figure the median over `--repeats` timed calls after one
warm-up call (tracing included); every call is compiled (tf.function) and its result fetched to numpy,
so the time is the real time; every ratio is computed from the medians of this run.

  per_example_gradients  WRN-28-2 (FixMatch variant, 32x32x3, all trainable variables, inference-mode
                         BN): per-example gradients by influence_ssl.pergrad "fast", "vmap" and
                         "loop" vs one ordinary batched backward of the summed loss, at --batch and,
                         with --paper_sizes, also at the paper's 256.
  lambda_step            one whole Λ step of Alg. 1 (the trainer's compiled outer step on a fixed
                         outer batch: forward of D', U' (weak and strong view) and V', the influence
                         solve, the M-Adam update) for the influence methods exact, identity, neumann
                         and cg; exact and identity on the head (the paper's scope), neumann and cg
                         over the last block plus the head (the Sec. 4.3 baselines' scope).
  lambda_update          the Λ update alone (ExampleWeights.apply_gradients with M-Adam: gather,
                         sparse step, projection) for a batch of --update_batch ids, per table size.
  alg1_overhead          time per θ step with a Λ step every N = --inner_steps θ steps, amortised
                         ((N θ steps + 1 Λ step) / N), vs the θ step without weights, and the base θ step
                         vs a plain compiled Keras train_step of the same model, loss and batch.

Memory: on a GPU the allocator's peak (tf.config.experimental.get_memory_info, reset before each
method, one call); on a CPU the peak resident memory (VmHWM) of a child process that runs only that
method, for the blocks in --cpu_memory.

This module is the entry point (flags, settings, the child process of one method, the results JSON); the
blocks are in sec44_blocks (per-example gradients, Λ update, shared helpers) and sec44_train_blocks (Λ step,
Alg. 1 overhead), the printed report in sec44_report.

    python -m experiments.benchmarks.sec44                               # CPU-sized, a few minutes
    python -m experiments.benchmarks.sec44 --paper_sizes                 # the paper's sizes (a GPU job)
    python -m experiments.benchmarks.sec44 --blocks=per_example_gradients,lambda_update --repeats=10
"""
import json
import os
import time

import tensorflow as tf  # `python -m experiments...` has run experiments/__init__: TF's start-up logs are hidden
from absl import flags

from experiments import quiet_absl_info
from experiments.benchmarks.sec44_blocks import (
    CHILD_PREFIX,
    OOM,
    PERGRAD_METHODS,
    build_model,
    pergrad_functions,
    pergrad_inputs,
    run_lambda_update,
    run_per_example_gradients,
)
from experiments.benchmarks.sec44_report import format_report
from experiments.benchmarks.sec44_train_blocks import (
    LAMBDA_ENTRIES,
    lambda_setup,
    make_trainer,
    outer_step_fn,
    run_alg1_overhead,
    run_lambda_step,
)
from experiments.benchmarks.timing import fetch, peak_rss_bytes
from experiments.checks import run_main, writable_dir
from influence_ssl.studies import results as study_results
from influence_ssl.studies.protocol import write_json
from influence_ssl.trainer import ConfigError

BLOCKS = ("per_example_gradients", "lambda_step", "lambda_update", "alg1_overhead")
PAPER_PERGRAD_BATCH = 256  # Sec. 4.4: "a batch of unlabeled examples", 256
# Sec. 4.4: "a batch size of 64, 256, 320 for labeled, unlabeled and validation data respectively".
PAPER_LAMBDA_BATCHES = (64, 256, 320)
CPU_LAMBDA_BATCHES = (8, 16, 32)
# App. D, UDA: θ batches 64 labeled / 320 unlabeled, a Λ step every N = 100 θ steps; V' = 320.
PAPER_OVERHEAD_BATCHES = (64, 320, 320)
CPU_OVERHEAD_BATCHES = (8, 16, 32)
TABLE_SIZES = ("10000", "100000", "1000000", "10000000")

FORMAT = study_results.SEC44_FORMAT  # read by experiments.report
FLAGS = flags.FLAGS
flags.DEFINE_list("blocks", list(BLOCKS), f"Blocks to run, from {', '.join(BLOCKS)}.")
flags.DEFINE_integer("repeats", 3, "Timed calls per figure (after one warm-up call); the median is reported.")
flags.DEFINE_integer("batch", 8, "Batch of the per-example gradients (the paper's 256 is added by --paper_sizes).")
flags.DEFINE_bool("paper_sizes", False,
                  f"Per-example gradients also at B={PAPER_PERGRAD_BATCH}; Λ step at {PAPER_LAMBDA_BATCHES} "
                  f"(labeled, unlabeled, validation); Alg. 1 overhead on WRN-28-2 at {PAPER_OVERHEAD_BATCHES}.")
flags.DEFINE_list("lambda_batches", None,
                  f"Λ step batches labeled,unlabeled,validation (default {CPU_LAMBDA_BATCHES}; "
                  f"{PAPER_LAMBDA_BATCHES} with --paper_sizes).")
flags.DEFINE_list("overhead_batches", None,
                  f"Alg. 1 overhead batches labeled,unlabeled,validation (default {CPU_OVERHEAD_BATCHES}; "
                  f"{PAPER_OVERHEAD_BATCHES} with --paper_sizes).")
flags.DEFINE_integer("inner_steps", 100, "θ steps per Λ step [N] in alg1_overhead.")
flags.DEFINE_list("table_sizes", list(TABLE_SIZES), "|U| of the Λ tables in lambda_update.")
flags.DEFINE_integer("update_batch", 320, "Ids per Λ update in lambda_update.")
flags.DEFINE_integer("update_repeats", 30, "Timed Λ updates per table size (they take well under a millisecond).")
flags.DEFINE_enum("arch", None, ["wrn28_2", "small_cnn"],
                  "Network of every block (default: wrn28_2, except alg1_overhead on a CPU without "
                  "--paper_sizes: small_cnn). small_cnn is for quick checks.")
flags.DEFINE_list("cpu_memory", ["per_example_gradients"],
                  "On a CPU, the blocks whose peak memory is measured in one child process per method "
                  "(per_example_gradients, lambda_step; 'none' for neither). On a GPU memory is always measured.")
flags.DEFINE_string("json_out", "out/sec44.json", "Where the results JSON goes.")
flags.DEFINE_integer("seed", 0, "Seed of the weights and the random data.")
flags.DEFINE_string("_only", None, "Internal: run one method in this process and print its peak memory "
                    "(BLOCK:METHOD).")


# ----- settings -------------------------------------------------------------------------------


def _int_list(name, values, length=None):
    try:
        out = [int(v) for v in values]
    except ValueError:
        raise ConfigError(f"--{name} must be a list of integers, got {','.join(values)}.") from None
    if length is not None and len(out) != length:
        raise ConfigError(f"--{name} needs {length} integers (labeled,unlabeled,validation), got {len(out)}.")
    if any(v < 1 for v in out):
        raise ConfigError(f"--{name} must hold integers >= 1, got {','.join(values)}.")
    return out


def resolved():
    """The effective settings; ConfigError for a value that cannot run (before anything is built)."""
    unknown = [b for b in FLAGS.blocks if b not in BLOCKS]
    if unknown or not FLAGS.blocks:
        raise ConfigError(f"--blocks must be a non-empty list from {', '.join(BLOCKS)}, got {','.join(FLAGS.blocks)}.")
    for name in ("repeats", "batch", "inner_steps", "update_batch", "update_repeats"):
        if FLAGS[name].value < 1:
            raise ConfigError(f"--{name} must be >= 1, got {FLAGS[name].value}.")
    cpu_memory = [b for b in FLAGS.cpu_memory if b != "none"]
    bad = [b for b in cpu_memory if b not in ("per_example_gradients", "lambda_step")]
    if bad:
        raise ConfigError(f"--cpu_memory must list per_example_gradients, lambda_step or none, got {','.join(bad)}.")
    gpus = tf.config.list_physical_devices("GPU")
    paper = FLAGS.paper_sizes
    lambda_batches = (_int_list("lambda_batches", FLAGS.lambda_batches, 3) if FLAGS.lambda_batches
                      else list(PAPER_LAMBDA_BATCHES if paper else CPU_LAMBDA_BATCHES))
    overhead_batches = (_int_list("overhead_batches", FLAGS.overhead_batches, 3) if FLAGS.overhead_batches
                        else list(PAPER_OVERHEAD_BATCHES if paper else CPU_OVERHEAD_BATCHES))
    pergrad_batches = [FLAGS.batch] + ([PAPER_PERGRAD_BATCH] if paper and FLAGS.batch != PAPER_PERGRAD_BATCH else [])
    if FLAGS.json_out and not FLAGS._only:
        writable_dir(os.path.dirname(os.path.abspath(FLAGS.json_out)), "--json_out")
    return {
        "blocks": [b for b in BLOCKS if b in FLAGS.blocks],
        "repeats": FLAGS.repeats,
        "paper_sizes": paper,
        "pergrad_batches": pergrad_batches,
        "lambda_batches": dict(zip(("labeled", "unlabeled", "validation"), lambda_batches)),
        "overhead_batches": dict(zip(("labeled", "unlabeled", "validation"), overhead_batches)),
        "inner_steps": FLAGS.inner_steps,
        "table_sizes": _int_list("table_sizes", FLAGS.table_sizes),
        "update_batch": FLAGS.update_batch,
        "update_repeats": FLAGS.update_repeats,
        "arch": {"per_example_gradients": FLAGS.arch or "wrn28_2", "lambda_step": FLAGS.arch or "wrn28_2",
                 "alg1_overhead": FLAGS.arch or ("wrn28_2" if paper or gpus else "small_cnn")},
        "cpu_memory": cpu_memory,
        "sizes_note": (f"--paper_sizes: per-example gradients at B={PAPER_PERGRAD_BATCH} and Λ step at "
                       f"{'/'.join(map(str, PAPER_LAMBDA_BATCHES))} labeled/unlabeled/validation (Sec. 4.4's text); "
                       f"Alg. 1 overhead at UDA's θ batches {'/'.join(map(str, PAPER_OVERHEAD_BATCHES))} with N = 100 "
                       f"(App. D). Without it: CPU-sized batches {'/'.join(map(str, CPU_LAMBDA_BATCHES))}."),
        "seed": FLAGS.seed,
        "device": _device(gpus),
        "gpu": bool(gpus),
        "tf_version": tf.__version__,
        "cpu_count": os.cpu_count(),
    }


def _device(gpus):
    if not gpus:
        return f"CPU ({os.cpu_count()} cores visible)"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU:0 {details.get('device_name', 'unknown')} ({len(gpus)} visible)"


# ----- one method in a child process (CPU memory) ----------------------------------------------


def run_only(spec):
    block, _, method = spec.partition(":")
    settings = resolved()
    if block == "per_example_gradients":
        tf.random.set_seed(settings["seed"])
        model = build_model(settings["arch"][block], settings["seed"])
        x, y = pergrad_inputs(FLAGS.batch, settings["seed"])
        fns = pergrad_functions(model, [m for m in PERGRAD_METHODS if m == method])
        call = None if method == "baseline" else (lambda: fns[method](x, y))
    elif block == "lambda_step":
        _, batches, model, source = lambda_setup(settings)
        entries = {name: (m, scope) for name, m, scope in LAMBDA_ENTRIES}
        m, scope = entries.get(method, ("exact", "head"))  # baseline: build the step, never call it
        step = outer_step_fn(make_trainer(model, source, batches, settings["seed"], settings["inner_steps"], m, scope))
        call = None if method == "baseline" else step
    else:
        raise ConfigError(f"--_only: unknown block {block!r}.")
    try:
        for _ in range(2 if call else 0):
            fetch(call())
    except OOM:
        print(CHILD_PREFIX + json.dumps({"peak_rss_bytes": "oom"}), flush=True)
        return
    print(CHILD_PREFIX + json.dumps({"peak_rss_bytes": peak_rss_bytes()}), flush=True)


def main(argv):
    del argv
    quiet_absl_info()
    tf.get_logger().setLevel("ERROR")  # pfor's "Conv2DBackpropFilter uses a while_loop" repeats per layer
    if FLAGS._only:
        run_only(FLAGS._only)
        return
    settings = resolved()
    start = time.time()
    results, memory = {"format": FORMAT}, {}
    runners = {"per_example_gradients": run_per_example_gradients, "lambda_step": run_lambda_step,
               "lambda_update": run_lambda_update, "alg1_overhead": run_alg1_overhead}
    for block in settings["blocks"]:
        print(f"[{time.time() - start:.0f}s] {block} ...", flush=True)
        out = runners[block](settings)
        if isinstance(out, tuple):  # (figures, {memory entry: peaks})
            out, peaks = out
            memory.update(peaks)
        results[block] = out
    results["memory"] = memory
    results["settings"] = {**settings, "total_s": round(time.time() - start, 1),
                           "timing": "median of --repeats calls after one warm-up call; compiled tf.functions; "
                                     "every call's result fetched to numpy"}
    write_json(FLAGS.json_out, results)
    print("\n" + format_report(results))
    print(f"\nresults: {FLAGS.json_out} (total {time.time() - start:.0f}s)")


def run():
    run_main(main)


if __name__ == "__main__":
    run()
