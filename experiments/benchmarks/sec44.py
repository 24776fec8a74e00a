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

    python -m experiments.benchmarks.sec44                               # CPU-sized, a few minutes
    python -m experiments.benchmarks.sec44 --paper_sizes                 # the paper's sizes (a GPU job)
    python -m experiments.benchmarks.sec44 --blocks=per_example_gradients,lambda_update --repeats=10
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf  # `python -m experiments...` has run experiments/__init__: TF's start-up logs are hidden
import tf_keras as keras
from absl import flags

from experiments import quiet_absl_info
from experiments.benchmarks.timing import fetch, peak_rss_bytes, time_round_robin, xent
from experiments.checks import run_main, writable_dir
from influence_ssl import models
from influence_ssl.data import SSLData
from influence_ssl.optimizers import MaskedAdam
from influence_ssl.pergrad import fastest_method, make_per_example_gradients_fn
from influence_ssl.ssl import FixMatch
from influence_ssl.trainer import ConfigError, TrainConfig, Trainer
from influence_ssl.trainer.image_source import AugmentedImageSource
from influence_ssl.trainer.optimizers import make_theta_optimizer
from influence_ssl.trainer.steps import decayed_variables, l2_term
from influence_ssl.weights import ExampleWeights

BLOCKS = ("per_example_gradients", "lambda_step", "lambda_update", "alg1_overhead")
PERGRAD_METHODS = ("fast", "layerwise", "vmap", "loop")  # fast: the faster of layerwise and vmap (measured)
PAPER_PERGRAD_BATCH = 256  # Sec. 4.4: "a batch of unlabeled examples", 256
# Sec. 4.4: "a batch size of 64, 256, 320 for labeled, unlabeled and validation data respectively".
PAPER_LAMBDA_BATCHES = (64, 256, 320)
CPU_LAMBDA_BATCHES = (8, 16, 32)
# App. D, UDA: θ batches 64 labeled / 320 unlabeled, a Λ step every N = 100 θ steps; V' = 320.
PAPER_OVERHEAD_BATCHES = (64, 320, 320)
CPU_OVERHEAD_BATCHES = (8, 16, 32)
TABLE_SIZES = ("10000", "100000", "1000000", "10000000")
CHILD_PREFIX = "SEC44_CHILD "
# Sec. 4.4 (one V100 16GB), for the printed comparison.
PAPER = {"loop_s": 18.17, "fast_s": 0.94, "exact_s": 0.455, "identity_s": 0.399, "neumann_vs_exact": 4.6,
         "exact_gb": 9.0, "neumann_gb": 15.8}

FORMAT = "influence_ssl.sec44/1"  # read by experiments.report
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
            entry[f"{m}_vs_batched_backward"] = _ratio(medians[m], medians["batched_backward"])
        entry["loop_vs_fast"] = _ratio(medians["loop"], medians["fast"])
        entry["vmap_vs_fast"] = _ratio(medians["vmap"], medians["fast"])
        entry["layerwise_vs_fast"] = _ratio(medians["layerwise"], medians["fast"])
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


def _ratio(a, b):
    return float(a / b) if isinstance(a, float) and isinstance(b, float) else None


# ----- block 2: the Λ step ---------------------------------------------------------------------


def random_ssl_data(labeled, unlabeled, validation, seed):
    """Random uint8 32x32x3 images; twice the unlabeled batch of unlabeled examples."""
    rng = np.random.default_rng(seed)
    images = lambda n: rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)  # noqa: E731
    labels = lambda n: rng.integers(0, 10, n).astype(np.int64)  # noqa: E731
    num_unlabeled = 2 * unlabeled
    return SSLData(name="random", num_classes=10, labeled_x=images(labeled), labeled_y=labels(labeled),
                   unlabeled_x=images(num_unlabeled), unlabeled_ids=np.arange(num_unlabeled, dtype=np.int64),
                   unlabeled_true_y=labels(num_unlabeled), val_x=images(validation), val_y=labels(validation),
                   test_x=images(1), test_y=labels(1))


def _identity_augmentation(images, seed):
    del seed
    return images


SOURCE_NOTE = ("AugmentedImageSource over random uint8 images with identity weak/strong augmentations: the step "
               "gathers and scales its batch in-graph, with no augmentation cost; FixMatch with confidence "
               "threshold 0, so every unlabeled row has a pseudo-label (a random network is never 95% confident)")


# (entry name, influence method, influence_scope): the paper's exact head step, Luketina's identity, and
# the Sec. 4.3 baselines over the last block plus the head.
LAMBDA_ENTRIES = (("exact", "exact", "head"), ("identity", "identity", "head"),
                  ("neumann_last_block", "neumann", "last_block"), ("cg_last_block", "cg", "last_block"))


def make_trainer(model, source, batches, seed, method="exact", scope="head", weighting="per_example"):
    config = dict(steps=10**6, labeled_batch=batches["labeled"], unlabeled_batch=batches["unlabeled"],
                  validation_batch=batches["validation"], inner_steps=FLAGS.inner_steps, weighting=weighting,
                  influence=method, optimizer="nesterov", lr=0.03, weight_decay=5e-4, seed=seed,
                  influence_scope=scope, log_every=10**6, eval_every=10**6, checkpoint_every=10**6)
    return Trainer(model, FixMatch(threshold=0.0), source, TrainConfig(**config), verbose=False)


def model_and_source(arch, batches, seed):
    """A seeded model and a source of random uint8 images with identity augmentations."""
    tf.random.set_seed(seed)
    model = build_model(arch, seed)
    data = random_ssl_data(batches["labeled"], batches["unlabeled"], batches["validation"], seed)
    source = AugmentedImageSource(data, batches["labeled"], batches["unlabeled"], batches["validation"],
                                  seed=seed, weak=_identity_augmentation, strong=_identity_augmentation)
    return model, source


def lambda_setup(settings):
    arch = settings["arch"]["lambda_step"]
    batches = settings["lambda_batches"]
    return (arch, batches, *model_and_source(arch, batches, settings["seed"]))


def outer_step_fn(trainer):
    batch = tf.constant(0, tf.int64)  # outer batch 0, sampled in-graph: the same D', U', V' every call
    return lambda: trainer.outer_step(batch)


def run_lambda_step(settings):
    arch, batches, model, source = lambda_setup(settings)
    entries = LAMBDA_ENTRIES
    fns = {name: outer_step_fn(make_trainer(model, source, batches, settings["seed"], method, scope))
           for name, method, scope in entries}
    failed = {}
    results = time_round_robin(fns, (), settings["repeats"], catch=OOM, failed=failed)
    out = {name: float(np.median(results[name][1])) if name in results else "oom" for name in fns}
    for name in fns:
        if name != "exact":
            out[f"{name}_vs_exact"] = _ratio(out[name], out["exact"])
    out["setup"] = {"arch": arch, "batches": batches,
                    "entries": {name: {"method": method, "scope": scope} for name, method, scope in entries},
                    "warmup_s": {name: round(results[name][0], 3) for name in results}, "source": SOURCE_NOTE}
    if settings["gpu"]:
        memory = {name: ("oom" if name in failed else gpu_peak(fn)) for name, fn in fns.items()}
        memory["kind"] = "gpu_peak_bytes: allocator peak of one Λ step, in this process (model and data included)"
    elif "lambda_step" in settings["cpu_memory"]:
        memory = {name: child_peak_rss("lambda_step", name, settings) for name in ("baseline", *fns)}
        memory["kind"] = ("cpu_peak_rss_bytes: VmHWM of a child process that runs only this Λ step twice "
                          "(baseline: TensorFlow, the model, the data and the trainer, no call)")
    else:
        memory = {name: None for name in fns}
        memory["reason"] = ("CPU: not measured by default (each method needs its own process, which rebuilds the "
                            "model and retraces the step); add lambda_step to --cpu_memory to measure")
    return out, {"lambda_step": memory}


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


# ----- block 4: Alg. 1 overhead ----------------------------------------------------------------


def run_alg1_overhead(settings):
    arch = settings["arch"]["alg1_overhead"]
    batches = settings["overhead_batches"]
    n = settings["inner_steps"]
    model, source = model_and_source(arch, batches, settings["seed"])
    base = make_trainer(model, source, batches, settings["seed"], weighting="none")
    weighted = make_trainer(model, source, batches, settings["seed"], method="exact")
    steps = range(n)
    outer = tf.constant(1, tf.int64)

    def chunk(trainer, with_lambda_step):
        batches = trainer.train_batches(0)  # the trainer's own input pipeline

        def run():  # as Trainer.run: θ steps are not fetched one by one
            for _ in steps:
                metrics = trainer.train_step(next(batches))
            if with_lambda_step:
                metrics = trainer.outer_step(outer)
            return [metrics, trainer.step.value()]
        return run

    keras_model = KerasStep(model, base.algorithm, base.config)
    keras_model.compile(optimizer=make_theta_optimizer(base.config))
    keras_train = keras_model.make_train_function()
    keras_batches = iter(tf.data.Dataset.range(n).map(source.train_batch).repeat())

    def keras_chunk():
        for _ in steps:
            logs = keras_train(keras_batches)
        return logs

    fns = {"base": chunk(base, False), "weighted": chunk(weighted, True), "keras": keras_chunk}
    results = time_round_robin(fns, (), settings["repeats"])
    base_step, weighted_step, keras_step = (float(np.median(results[k][1])) / n for k in ("base", "weighted", "keras"))
    return {"base_step": base_step, "weighted_step": weighted_step, "ratio": weighted_step / base_step,
            "keras_step": keras_step, "base_vs_keras": base_step / keras_step,
            "setup": {"inner_steps": n, "arch": arch, "batches": batches, "influence": "exact",
                      "measured": f"median over repeats of the wall time of {n} θ steps (+ 1 Λ step for weighted), "
                                  f"/ {n}", "source": SOURCE_NOTE}}


class KerasStep(keras.Model):
    """The base algorithm's θ step as a plain compiled Keras training step (Model.train_step on batches from
    tf.data): the same model, loss (supervised + unsupervised means + L2) and optimizer as the trainer's
    base step, without its machinery (in-graph sampling, λ, EMA, finiteness flags): the bar it must meet."""

    def __init__(self, classifier, algorithm, config):
        super().__init__()
        self.classifier, self.algorithm, self.config = classifier, algorithm, config
        self.decayed = decayed_variables(classifier, config.weight_decay_on)

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            out = self.algorithm.losses(self.classifier, batch, training=True, step=self.optimizer.iterations)
            loss = (tf.reduce_mean(out.labeled) + tf.reduce_mean(out.unlabeled)
                    + self.config.weight_decay * l2_term(self.decayed))
        variables = self.classifier.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss}


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
        step = outer_step_fn(make_trainer(model, source, batches, settings["seed"], m, scope))
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


# ----- report ----------------------------------------------------------------------------------


def _seconds(value):
    if not isinstance(value, float):
        return str(value)
    return f"{value:.4f}" if value >= 1e-3 else f"{value * 1e6:.1f} µs"


def _times(value):
    return f"{value:.2f}x" if isinstance(value, float) else "-"


def _memory(value, baseline=None):
    if isinstance(value, dict):
        value = value.get("peak_bytes", value.get("value"))
    if not isinstance(value, int):
        return "-" if value is None else str(value)
    text = f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"
    if isinstance(baseline, int):
        text += f" (+{(value - baseline) / 2**20:.0f} MiB)"
    return text


def format_report(results):
    s = results["settings"]
    lines = [f"Sec. 4.4 efficiency, {s['device']}, TF {s['tf_version']}, median of {s['repeats']} timed calls "
             f"after a warm-up, paper sizes: {s['paper_sizes']}"]
    memory = results["memory"]
    if "per_example_gradients" in results:
        r = results["per_example_gradients"]
        setup = r["setup"]
        entries = [("", r)] + [(k, r[k]) for k in r if k.startswith("batch_")]
        for key, e in entries:
            mem = memory.get("per_example_gradients" + (f"_{key}" if key else ""), {})
            baseline = mem.get("baseline")
            lines += ["", f"per_example_gradients: {setup['arch']} ({setup['num_params']:,} parameters, all of them), "
                          f"batch {e['setup']['batch']}, inference-mode BN",
                      "| method | median s | x batched backward | x fast | peak memory |", "|---|---|---|---|---|"]
            for m in ("batched_backward", *PERGRAD_METHODS):
                vs = _times(e.get(f"{m}_vs_batched_backward", 1.0 if m == "batched_backward" else None))
                vs_fast = _times(_ratio(e[m], e["fast"]))
                lines.append(f"| {m} | {_seconds(e[m])} | {vs} | {vs_fast} | {_memory(mem.get(m), baseline)} |")
            lines.append(f"(fast ran {e.get('fast_runs', '?')}; its peak memory includes timing both candidates once)")
            if isinstance(baseline, int):
                lines.append(f"(memory: peak RSS of a process running only that method; (+...) is above a process "
                             f"that builds the model and inputs and runs nothing, {_memory(baseline)})")
            elif "reason" in mem:
                lines.append(f"(memory: {mem['reason']})")
        lines.append(f"paper (V100, B=256): fast {PAPER['fast_s']} s, loop {PAPER['loop_s']} s "
                     f"({PAPER['loop_s'] / PAPER['fast_s']:.1f}x fast), vmap out of memory on 16 GB")
    if "lambda_step" in results:
        r = results["lambda_step"]
        setup = r["setup"]
        mem = memory.get("lambda_step", {})
        b = setup["batches"]
        lines += ["", f"lambda_step: one Λ step (trainer.outer_step), {setup['arch']}, batches {b['labeled']} "
                      f"labeled / {b['unlabeled']} unlabeled (weak + strong view) / {b['validation']} validation",
                  "| method | median s | x exact | peak memory |", "|---|---|---|---|"]
        for name in setup["entries"]:
            lines.append(f"| {name} | {_seconds(r[name])} | {_times(r.get(f'{name}_vs_exact', 1.0))} "
                         f"| {_memory(mem.get(name), mem.get('baseline'))} |")
        if "reason" in mem:
            lines.append(f"(memory: {mem['reason']})")
        lines.append(f"paper (V100, 64/256/320): exact {PAPER['exact_s']} s, identity {PAPER['identity_s']} s, "
                     f"Neumann (last block) {PAPER['neumann_vs_exact']}x exact; memory {PAPER['exact_gb']} GB exact vs "
                     f"{PAPER['neumann_gb']} GB Neumann")
    if "lambda_update" in results:
        r = results["lambda_update"]
        sizes = [k for k in r if k.isdigit()]
        lines += ["", f"lambda_update: ExampleWeights.apply_gradients with M-Adam, {r['setup']['update_batch']} ids, "
                      f"median of {r['setup']['repeats']}",
                  "| U | median per update |", "|---|---|"]
        lines += [f"| {int(k):,} | {_seconds(r[k])} |" for k in sizes]
        lines.append(f"largest / smallest table: {r['largest_over_smallest']:.2f}x")
    if "alg1_overhead" in results:
        r = results["alg1_overhead"]
        setup = r["setup"]
        b = setup["batches"]
        lines += ["", f"alg1_overhead: {setup['arch']}, batches {b['labeled']}/{b['unlabeled']}/{b['validation']}, "
                      f"a Λ step ({setup['influence']}) every N = {setup['inner_steps']} θ steps",
                  "| | median s per θ step |", "|---|---|",
                  f"| base (no weights) | {_seconds(r['base_step'])} |",
                  f"| with weights ((N θ + 1 Λ) / N) | {_seconds(r['weighted_step'])} |",
                  f"| plain compiled Keras train_step (same model, loss, batch) | {_seconds(r['keras_step'])} |",
                  f"ratio with / without weights: {r['ratio']:.3f}; base / Keras: {r['base_vs_keras']:.3f}"]
    return "\n".join(lines)


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
    with open(FLAGS.json_out, "w") as f:
        json.dump(results, f, indent=2)
    print("\n" + format_report(results))
    print(f"\nresults: {FLAGS.json_out} (total {time.time() - start:.0f}s)")


def parse_flags(argv):
    """absl's parsing, with a bad flag as one line `error: ...` and exit code 2."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def run():
    run_main(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
