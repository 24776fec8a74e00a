"""The measurement blocks of experiments.benchmarks.sec44 that run the Trainer's public steps: one Λ step
(Trainer.outer_step) per influence method, and the Alg. 1 overhead (Trainer.train_step, with a Λ step every N θ
steps, vs the base θ step and a plain compiled Keras train_step), on random data.
"""
import numpy as np
import tensorflow as tf
import tf_keras as keras

from experiments.benchmarks.sec44_blocks import OOM, build_model, child_peak_rss, gpu_peak, ratio
from experiments.benchmarks.timing import time_round_robin
from influence_ssl.data import SSLData
from influence_ssl.ssl import FixMatch
from influence_ssl.trainer import TrainConfig, Trainer
from influence_ssl.trainer.image_source import AugmentedImageSource
from influence_ssl.trainer.optimizers import make_theta_optimizer
from influence_ssl.trainer.steps import decayed_variables, l2_term

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


def make_trainer(model, source, batches, seed, inner_steps, method="exact", scope="head",
                 weighting="per_example"):
    config = dict(steps=10**6, labeled_batch=batches["labeled"], unlabeled_batch=batches["unlabeled"],
                  validation_batch=batches["validation"], inner_steps=inner_steps, weighting=weighting,
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
    fns = {name: outer_step_fn(make_trainer(model, source, batches, settings["seed"], settings["inner_steps"], method,
                                            scope))
           for name, method, scope in entries}
    failed = {}
    results = time_round_robin(fns, (), settings["repeats"], catch=OOM, failed=failed)
    out = {name: float(np.median(results[name][1])) if name in results else "oom" for name in fns}
    for name in fns:
        if name != "exact":
            out[f"{name}_vs_exact"] = ratio(out[name], out["exact"])
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


# ----- block 4: Alg. 1 overhead ----------------------------------------------------------------


def run_alg1_overhead(settings):
    arch = settings["arch"]["alg1_overhead"]
    batches = settings["overhead_batches"]
    n = settings["inner_steps"]
    model, source = model_and_source(arch, batches, settings["seed"])
    base = make_trainer(model, source, batches, settings["seed"], n, weighting="none")
    weighted = make_trainer(model, source, batches, settings["seed"], n, method="exact")
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
