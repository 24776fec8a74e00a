"""Algorithm 1 of Ren et al.: θ steps on the λ-weighted SSL loss, Λ steps on the validation loss.

Inner loop (N = inner_steps θ steps):
    θ <- θ - α ∇θ [ mean_{D'} ℓ_S + (1/|U'|) Σ_{u∈U'} r(t) λ_u ℓ_U(u) ]
Outer step (after warm-up, every N θ steps):
    sample D', U', V'; g_u = dL_S(V')/dλ_u by the last-layer influence (Eq. 6, Sec. 3.1);
    λ_u <- Π_{λ>=0}(λ_u - η·Adam-step(g_u)) for u in U' (M-Adam, App. C).
r(t) is an optional linear ramp of the unsupervised term, the same for every method.

The steps are steps.Alg1Steps (shared with Keras' fit, keras_model.py), compiled here as tf.functions without
Python state; the data of step k depends only on (seed, k); θ, its optimizer, the EMA, Λ with its optimizer,
the data source's state (e.g. CTAugment's rates), the SSL algorithm's (a weighting rule's statistics) and the
step counter are one tf.train.Checkpoint. So a run resumed from any checkpoint ends exactly where an
uninterrupted one does. Checkpoints, evaluations, logs and the divergence check are callbacks of the loop
(callbacks.py).
"""
import functools

import numpy as np
import tensorflow as tf

from influence_ssl.trainer.callbacks import (
    CheckpointError,
    LoopCallback,
    OuterStepCall,
    TrainingDiverged,
    standard_callbacks,
)
from influence_ssl.trainer.config import ConfigError
from influence_ssl.trainer.data_source import DataSource
from influence_ssl.trainer.distribution import check_replicas, replica_slice, worker_role
from influence_ssl.trainer.ema import WeightEMA
from influence_ssl.trainer.optimizers import make_theta_optimizer, make_weight_optimizer
from influence_ssl.trainer.results import final_results, save_results
from influence_ssl.trainer.steps import Alg1Steps, check_influence, decayed_variables, influence_options
from influence_ssl.weights import ExampleWeights


class Trainer:
    """Runs Alg. 1 for one model, SSL algorithm, data source and TrainConfig.

    Args:
      model: an influence_ssl.models.Classifier (built).
      algorithm: an influence_ssl.ssl.SSLAlgorithm.
      source: a DataSource (e.g. InMemorySource, AugmentedImageSource).
      config: a TrainConfig.
      train_dir: where checkpoints, TensorBoard events and results.json go (None: nowhere).
      callbacks: callables `cb(trainer, k)` run after the k-th Λ step (k = 1, 2, ...); or
        callbacks.LoopCallback objects, whose hooks run before the Trainer's own.
      verbose: print the progress line.
      strategy: a tf.distribute strategy (None: the default, one device). Build the model inside
        `strategy.scope()` and the Trainer outside it. θ steps run on every replica, each on its
        slice of the global batch, gradients summed; Λ steps run once, in cross-replica context, on
        the global batch: one Hessian and one Λ update, equal to the single-device step. Λ and its
        optimizer are not distributed. Batch-norm statistics are per replica (as FixMatch's towers).
    """

    def __init__(self, model, algorithm, source, config, train_dir=None, callbacks=(), verbose=True,
                 strategy=None):
        self.model, self.algorithm, self.source, self.config = model, algorithm, source, config
        self.train_dir, self.callbacks, self.verbose = train_dir, list(callbacks), verbose
        self.strategy = strategy or tf.distribute.get_strategy()
        self.num_replicas = self.strategy.num_replicas_in_sync
        self.is_chief, self.task = worker_role(self.strategy)
        if not isinstance(source, DataSource):
            raise TypeError(f"source must be an influence_ssl.trainer.DataSource, got {type(source).__name__}.")
        config.validate(*source.split_sizes())
        influence = influence_options(config)
        check_influence(model, influence)
        if config.mixed_precision != (model.compute_dtype == "float16"):
            raise ConfigError(f"--mixed_precision={config.mixed_precision} but the model computes in "
                              f"{model.compute_dtype}: build it under the 'mixed_float16' policy exactly when "
                              "mixed precision is on.")
        check_replicas(self.num_replicas, source, config)
        if getattr(algorithm, "state", None) is not None and self.num_replicas > 1:
            # Each replica would update the one copy of the rule's statistics with its own slice.
            raise ConfigError(f"A weighting rule runs on one replica, not {self.num_replicas}.")
        source.check_disjoint()
        num_weights = source.num_unlabeled_ids if config.weighting == "per_example" else 1
        # Without weights λ never moves: the table is a constant, which may be 0 (supervised only).
        parametrization = config.weight_parametrization if config.weighting != "none" else "projection"
        self.weights = ExampleWeights(num_weights, config.weight_init, make_weight_optimizer(config),
                                      parametrization=parametrization, upper_bound=config.weight_max or None)
        decayed = decayed_variables(model, config.weight_decay_on)
        with self.strategy.scope():
            self.theta_optimizer = make_theta_optimizer(config)
            self.theta_optimizer.build(model.trainable_variables)  # so a restore finds the slots
            self.ema = None
            if config.ema_decay > 0:
                ema_vars = model.trainable_variables if config.ema_scope == "trainable" else model.variables
                self.ema = WeightEMA(ema_vars, config.ema_decay)
            self.steps = Alg1Steps(
                model, algorithm, self.weights, influence, self.theta_optimizer,
                per_example=config.weighting == "per_example", weighted=config.weighting != "none",
                inner_steps=config.inner_steps, weight_warmup=config.weight_warmup,
                weight_step_at_start=config.weight_step_at_start, weight_batch=config.weight_batch,
                permute_weights=config.permute_weights, permutation_seed=config.seed,
                unlabeled_rampup=config.unlabeled_rampup, loss_l2=config.loss_l2, decayed=decayed, ema=self.ema,
                num_replicas=self.num_replicas)
        self.step, self.bad_step = self.steps.step, self.steps.bad_step
        self.lambda_movement = self.steps.lambda_movement
        self.training_loss = self.steps.training_loss
        state = {"model": model, "optimizer": self.theta_optimizer, "weights": self.weights, "step": self.step,
                 "lambda_movement": self.lambda_movement}
        if self.ema is not None:
            state["ema"] = self.ema
        if source.state is not None:
            state["data_state"] = source.state
        if getattr(algorithm, "state", None) is not None:  # e.g. a weighting rule's statistics
            state["algorithm_state"] = algorithm.state
        self.checkpoint = tf.train.Checkpoint(**state)
        # A source whose batches are pure functions of the step number: θ batches as train_batches says
        # (a prefetching tf.data pipeline or inside the step), Λ batches sampled inside the compiled Λ step.
        self._in_graph_batches = bool(source.stateless)
        # The steps hold no Python control flow on tensors (tf.cond and tf.while_loop are explicit), so they
        # are traced without AutoGraph, whose source conversion was most of the tracing time. XLA compiles
        # the θ update only: batch sampling and augmentation stay outside (RandomIndexShuffle has no XLA
        # kernel).
        compiled = functools.partial(tf.function, autograph=False)
        theta_update = self.steps.theta_update
        self._theta_update = compiled(theta_update, jit_compile=True) if config.jit_compile else theta_update
        self._train_step = compiled(self._distributed_train_step)
        self._outer_step = compiled(lambda batch: self.steps.outer_update(self._outer_batch(batch)))
        self._hypergradient = compiled(lambda batch: self.steps.hypergradient(self._outer_batch(batch)))
        self._theta_batch_hypergradient = compiled(
            lambda batch, k: self.steps.hypergradient(self._theta_outer_batch(batch, k)))
        self._weight_update = compiled(self.steps.weight_update)
        self._predict = None  # compiled on first use, for any batch size
        self.history = []  # evaluations: {"step", "<set>": accuracy, ...}, kept across resumes
        self.validation_loss = None  # of the last evaluation

    # ----- the two steps of Alg. 1 (steps.Alg1Steps), compiled -----------------------------

    def train_step(self, batch):
        """One θ step on every replica; `batch` as train_batches yields it (a batch, or a step number for a
        source sampled inside the step). Returns the step's metrics (scalar tensors, means over replicas)."""
        return self._train_step(batch)

    def outer_step(self, batch):
        """One Λ step at the current θ on the Λ batch of an outer step (the batch, or the outer step's number
        for a source sampled inside the step). Returns its metrics."""
        return self._outer_step(batch)

    def hypergradient(self, outer_step):
        """(ids, dL_val/dλ) as numpy for the Λ batch of outer step `outer_step`, at the current θ;
        nothing is updated (for diagnostics and tests)."""
        ids, grads = self._hypergradient(self._batch(self.source.outer_batch, outer_step))
        return ids.numpy(), grads.numpy()

    def _distributed_train_step(self, batch):
        if self.num_replicas == 1:
            return self._replica_train_step(batch)
        metrics = self.strategy.run(self._replica_train_step, args=(batch,))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in metrics.items()}

    def _replica_train_step(self, batch):
        if not isinstance(batch, dict):  # a step number: sample inside the step (see train_batches)
            batch = self.source.train_batch(batch)
        batch = replica_slice(batch, self.num_replicas)
        metrics = self._theta_update(batch)
        self.source.observe(self.model, batch)  # e.g. CTAugment's rates from the probes of this batch
        self.step.assign_add(1)
        return metrics

    def _outer_batch(self, batch):
        return self.source.outer_batch(batch) if self._in_graph_batches else batch

    def _theta_outer_batch(self, batch, k):
        """A θ batch (or its step number) with the validation draw of outer step k: the Λ batch of the
        authors' code."""
        if not isinstance(batch, dict):
            batch = self.source.train_batch(batch)
        return {**batch, **self.source.validation_batch(k)}

    # ----- the loop -------------------------------------------------------------------

    def is_outer_step(self, step):
        """Whether a Λ step is taken when `step` θ steps are done (steps.Alg1Steps.is_outer_step)."""
        return bool(self.steps.is_outer_step(step))

    def num_outer_steps(self, step):
        """How many Λ steps have been applied when `step` θ steps are done."""
        return self.steps.num_outer_steps(step)

    def run(self):
        """Train to config.steps (resuming from train_dir if it holds a checkpoint). Returns results."""
        c = self.config
        callbacks = [cb if isinstance(cb, LoopCallback) else OuterStepCall(cb) for cb in self.callbacks]
        callbacks += standard_callbacks(self.train_dir)
        for hook in ("restore", "on_train_begin"):
            for callback in callbacks:
                getattr(callback, hook)(self)
        step = int(self.step.numpy())
        batches = self.train_batches(step)
        on_theta_batch = c.weight_batch == "theta"
        if step == 0 and not on_theta_batch and self.is_outer_step(0):  # a Λ step before any θ step
            self._fresh_outer_step(0, callbacks)
        while step < c.steps:
            batch = next(batches)
            pending = None
            if on_theta_batch and self.is_outer_step(step):
                # At the θ step's parameters, on its batch; applied after it, which so trains with the old λ.
                pending = self._theta_batch_hypergradient(batch, tf.constant(step // c.inner_steps, tf.int64))
            metrics = self.train_step(batch)
            step += 1
            if pending is not None:
                metrics.update(self._weight_update(*pending))
                for callback in callbacks:
                    callback.on_outer_step(self, self.num_outer_steps(step))
            elif not on_theta_batch and self.is_outer_step(step):
                metrics.update(self._fresh_outer_step(step, callbacks))
            logs = None
            # Evaluations follow eval_every alone (not only the steps that are also log steps).
            if any(step % every == 0 or step == c.steps for every in (c.log_every, c.eval_every)):
                logs = {k: float(v) for k, v in metrics.items()}
                logs.update(self.weight_stats())
            for callback in callbacks:
                callback.on_step_end(self, step, logs)
        for callback in callbacks:
            callback.on_train_end(self)
        results = final_results(self)
        if self.train_dir and self.is_chief:
            save_results(self.train_dir, results, self.weights)
        return results

    def _fresh_outer_step(self, step, callbacks):
        """Alg. 1's Λ step when `step` θ steps are done, on its own batch; returns its metrics."""
        metrics = self.outer_step(self._batch(self.source.outer_batch, step // self.config.inner_steps))
        for callback in callbacks:
            callback.on_outer_step(self, self.num_outer_steps(step))
        return metrics

    def train_batches(self, first_step):
        """θ batches (or step numbers) of steps first_step, first_step + 1, ... for train_step.

        A stateless source that asks for it (`pipelined`, e.g. augmented images) has its batches made by
        tf.data one step ahead of training, as a Keras fit does; each is still a pure function of its step.
        Another stateless source (CTAugment's, whose rates are variables the step reads) is sampled inside the
        compiled step (cheaper when a batch is a gather: the iterator's per-step cost would dominate); a
        stateful one eagerly, step by step."""
        steps = range(first_step, self.config.steps)
        if not self._in_graph_batches:
            return (self.source.train_batch(k) for k in steps)
        if not self.source.pipelined:
            return (tf.constant(k, tf.int64) for k in steps)
        sample = tf.autograph.experimental.do_not_convert(self.source.train_batch)
        data = tf.data.Dataset.range(first_step, self.config.steps).map(sample)
        return iter(data.prefetch(1))

    def _batch(self, sample, index):
        # Stateless sources sample inside the compiled step (one call per step); others here.
        return tf.constant(index, tf.int64) if self._in_graph_batches else sample(index)

    # ----- evaluation -------------------------------------------------------------------

    def evaluate(self):
        """{set name: accuracy} on the source's evaluation sets: of the EMA weights when the run keeps
        an EMA (as FixMatch and UDA report), plus "raw_<set>" of the raw weights. Also keeps the
        validation loss of the evaluated weights (`validation_loss`)."""
        raw, raw_loss = self._accuracies()
        if self.ema is None:
            self.validation_loss = raw_loss
            return raw
        with self.ema.swapped():
            ema, self.validation_loss = self._accuracies()
        ema.update({f"raw_{name}": acc for name, acc in raw.items()})
        return ema

    def _accuracies(self):
        """({set name: accuracy}, mean cross-entropy on the validation set) from one pass per set."""
        accuracies, val_loss = {}, None
        for name, (x, y) in self.source.eval_sets().items():
            logits = self.logits(x).astype(np.float64)
            accuracies[name] = float(np.mean(np.argmax(logits, axis=-1) == y))
            if name == "validation":
                shifted = logits - logits.max(axis=1, keepdims=True)
                log_norm = np.log(np.exp(shifted).sum(axis=1))
                val_loss = float(np.mean(log_norm - shifted[np.arange(len(y)), y]))
        return accuracies, val_loss

    def logits(self, x, batch_size=1024):
        """Logits [N, K] of every row of x (numpy), in inference mode."""
        if self._predict is None:  # one trace for every batch size (many trainers live in one process)
            spec = tf.TensorSpec([None, *x.shape[1:]], tf.as_dtype(x.dtype))
            self._predict = tf.function(lambda images: self.model(images, training=False), input_signature=[spec])
        return np.concatenate([self._predict(tf.constant(x[i:i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)])

    def predict(self, x, batch_size=1024):
        """Arg-max class [N] of every row of x (numpy), in inference mode."""
        return np.argmax(self.logits(x, batch_size), axis=-1)

    def weight_stats(self):
        """Statistics of λ: mean, min, max, fraction at 0, mean |Δλ| per Λ step over the run."""
        lam = self.weights.to_numpy()
        num_steps = int(self.weights.optimizer.iterations.numpy())
        return {"lambda_mean": float(lam.mean()), "lambda_min": float(lam.min()),
                "lambda_max": float(lam.max()), "lambda_zero_fraction": float(np.mean(lam == 0)),
                "lambda_step_abs_mean_over_run": float(self.lambda_movement.numpy()) / max(1, num_steps)}


__all__ = ["Trainer", "TrainingDiverged", "CheckpointError", "ConfigError", "influence_options"]
