"""Algorithm 1 of Ren et al.: θ steps on the λ-weighted SSL loss, Λ steps on the validation loss.

Inner loop (N = inner_steps θ steps):
    θ <- θ - α ∇θ [ mean_{D'} ℓ_S + (1/|U'|) Σ_{u∈U'} r(t) λ_u ℓ_U(u) ]
Outer step (after warm-up, every N θ steps):
    sample D', U', V'; g_u = dL_S(V')/dλ_u by the last-layer influence (Eq. 6, Sec. 3.1);
    λ_u <- Π_{λ>=0}(λ_u - η·Adam-step(g_u)) for u in U' (M-Adam, App. C).
r(t) is an optional linear ramp of the unsupervised term, the same for every method.

Both steps are tf.functions without Python state; the data of step k depends only on
(seed, k); θ, its optimizer, the EMA, Λ with its optimizer, the data source's state (e.g.
CTAugment's rates) and the step counter are one tf.train.Checkpoint. So a run resumed from any
checkpoint ends exactly where an uninterrupted one does.
"""
import json
import os

import numpy as np
import tensorflow as tf
import tf_keras as keras

from influence_ssl.influence import (
    BlockBatch,
    block_hypergradient,
    head_gradient_norms,
    last_layer_weight_gradients,
    normalize_hypergradient,
)
from influence_ssl.optimizers import BertAdam, MaskedAdam, TF1Momentum
from influence_ssl.trainer.config import MAX_EXACT_BLOCK_PARAMETERS, ConfigError
from influence_ssl.trainer.data_source import DataSource
from influence_ssl.trainer.ema import WeightEMA
from influence_ssl.trainer.progress import ProgressLog
from influence_ssl.trainer.schedules import ThetaSchedule
from influence_ssl.weights import ExampleWeights

# results.json's format; experiments.report refuses files of another (or no) format.
RESULTS_FORMAT = "influence_ssl.run/1"


def worker_role(strategy):
    """(is_chief, (task type, task id)) of this process: under a multi-worker strategy the chief is the
    'chief' task, or worker 0 if the cluster has none; a single-process run is its own chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return True, ("chief", 0)
    task_id = int(resolver.task_id or 0)
    if "chief" in resolver.cluster_spec().as_dict():
        return task_type == "chief", (task_type, task_id)
    return task_type == "worker" and task_id == 0, (task_type, task_id)


class TrainingDiverged(RuntimeError):
    """A loss or a hypergradient became NaN/Inf. The last checkpoint is left as it was."""


class CheckpointError(RuntimeError):
    """The checkpoint in the train directory cannot be read."""


def make_theta_optimizer(config):
    """The θ optimizer, wrapped in dynamic loss scaling under mixed precision."""
    optimizer = _theta_optimizer(config)
    return keras.mixed_precision.LossScaleOptimizer(optimizer) if config.mixed_precision else optimizer


def _theta_optimizer(config):
    """The optimizer of the network weights θ, with its learning-rate schedule.

    momentum / nesterov are TF1's MomentumOptimizer (μ = 0.9), as in FixMatch and UDA: the current
    lr scales the whole accumulator, which differs from tf_keras SGD while the lr changes. adamw is
    BERT's Adam, whose decoupled decay skips LayerNorm and biases by name, as BERT's code does.
    """
    lr = ThetaSchedule(config.lr_schedule, config.lr, config.steps, config.lr_warmup, config.min_lr_ratio)
    clip = {"global_clipnorm": config.clip_norm} if config.clip_norm > 0 else {}
    if config.optimizer == "adamw":
        optimizer = BertAdam(lr, weight_decay=config.weight_decay, **clip)
        optimizer.exclude_from_weight_decay(var_names=["LayerNorm", "layer_norm", "bias"])
        return optimizer
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, **clip)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, **clip)
    return TF1Momentum(lr, momentum=0.9, nesterov=config.optimizer == "nesterov", **clip)


def make_weight_optimizer(config):
    """The optimizer of Λ: M-Adam (the paper's), or plain Adam / SGD for Fig. 4 (centre)."""
    if config.weight_optimizer == "madam":
        return MaskedAdam(config.weight_lr)
    if config.weight_optimizer == "adam":
        return keras.optimizers.Adam(config.weight_lr, weight_decay=None)
    return keras.optimizers.SGD(config.weight_lr)


def decayed_variables(model, scope):
    """The variables of the L2 term: kernels only (FixMatch) or every trainable variable (UDA).

    A kernel is found by its role, the `kernel` attribute of a Dense or convolution layer, not by
    its name."""
    if scope == "all":
        return model.trainable_variables
    kernels = {id(layer.kernel) for layer in model.submodules
               if isinstance(layer, keras.layers.Layer) and isinstance(getattr(layer, "kernel", None), tf.Variable)}
    return [v for v in model.trainable_variables if id(v) in kernels]


def l2_term(variables):
    """Σ ½||w||²."""
    return tf.add_n([0.5 * tf.reduce_sum(tf.square(v)) for v in variables])


class Trainer:
    """Runs Alg. 1 for one model, SSL algorithm, data source and TrainConfig.

    Args:
      model: an influence_ssl.models.Classifier (built).
      algorithm: an influence_ssl.ssl.SSLAlgorithm.
      source: a DataSource (e.g. InMemorySource, AugmentedImageSource).
      config: a TrainConfig.
      train_dir: where checkpoints, TensorBoard events and results.json go (None: nowhere).
      callbacks: callables `cb(trainer, k)` run after the k-th Λ step (k = 1, 2, ...).
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
        self.is_chief, self._task = worker_role(self.strategy)
        if not isinstance(source, DataSource):
            raise TypeError(f"source must be an influence_ssl.trainer.DataSource, got {type(source).__name__}.")
        config.validate(*source.split_sizes())
        if config.binary_reparam and model.head.units != 2:
            raise ConfigError(f"--binary_reparam needs a two-class head, got {model.head.units} classes.")
        self._check_influence_scope()
        if config.mixed_precision != (model.compute_dtype == "float16"):
            raise ConfigError(f"--mixed_precision={config.mixed_precision} but the model computes in "
                              f"{model.compute_dtype}: build it under the 'mixed_float16' policy exactly when "
                              "mixed precision is on.")
        self._check_replicas()
        source.check_disjoint()
        num_weights = source.num_unlabeled_ids if config.weighting == "per_example" else 1
        # Without weights λ never moves: the table is a constant, which may be 0 (supervised only).
        parametrization = config.weight_parametrization if config.weighting != "none" else "projection"
        self.weights = ExampleWeights(num_weights, config.weight_init, make_weight_optimizer(config),
                                      parametrization=parametrization)
        self._decayed = decayed_variables(model, config.weight_decay_on)
        with self.strategy.scope():
            self.theta_optimizer = make_theta_optimizer(config)
            self.theta_optimizer.build(model.trainable_variables)  # so a restore finds the slots
            self.ema = None
            if config.ema_decay > 0:
                ema_vars = model.trainable_variables if config.ema_scope == "trainable" else model.variables
                self.ema = WeightEMA(ema_vars, config.ema_decay)
            # Counters are written once per step whatever the number of replicas.
            once = tf.VariableAggregation.ONLY_FIRST_REPLICA
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step", aggregation=once)
            # First θ step or Λ step whose loss / hypergradient was not finite (-1: none).
            self.bad_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="bad_step", aggregation=once)
            # Σ over Λ steps of mean |Δλ| over the step's rows: how far each optimizer moves λ (Fig. 4 centre).
            self.lambda_movement = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="lambda_movement",
                                               aggregation=once)
        state = {"model": model, "optimizer": self.theta_optimizer, "weights": self.weights, "step": self.step,
                 "lambda_movement": self.lambda_movement}
        if self.ema is not None:
            state["ema"] = self.ema
        if source.state is not None:
            state["data_state"] = source.state
        self.checkpoint = tf.train.Checkpoint(**state)
        # A source whose batches are pure functions of the step number: θ batches as train_batches says
        # (a prefetching tf.data pipeline or inside the step), Λ batches sampled inside the compiled Λ step.
        self._in_graph_batches = bool(source.stateless)
        self._theta_update = (tf.function(self._theta_update_fn, jit_compile=True) if config.jit_compile
                              else self._theta_update_fn)
        self._train_step = tf.function(self._train_step_fn)
        self._outer_step = tf.function(self._outer_step_fn)
        self._hypergradient = tf.function(self._hypergradient_fn)  # diagnostics: no update
        self._predict = None  # compiled on first use, for any batch size
        self._manager = None
        self._writer = None
        self.history = []  # evaluations: {"step", "<set>": accuracy, ...}, kept across resumes
        self._validation_loss = None  # of the last evaluation

    # ----- the two steps of Alg. 1 -----------------------------------------------------

    def _check_replicas(self):
        if self.num_replicas == 1:
            return
        if not self.source.stateless:
            raise ConfigError("A distributed run needs a stateless source (batches sampled in the step).")
        for name in ("labeled_batch", "unlabeled_batch"):
            if getattr(self.config, name) % self.num_replicas:
                raise ConfigError(f"--{name}={getattr(self.config, name)} is not divisible by the "
                                  f"{self.num_replicas} replicas.")

    def _check_influence_scope(self):
        if self.config.influence_scope == "head":
            return
        if self.config.binary_reparam:
            raise ConfigError("--binary_reparam applies to --influence_scope=head only.")
        try:
            size = sum(v.shape.num_elements() for v in self._block_parameters())
        except ValueError as e:
            raise ConfigError(f"--influence_scope=last_block: {e}") from None
        if self.config.influence == "exact" and size > MAX_EXACT_BLOCK_PARAMETERS:
            raise ConfigError(f"--influence=exact over the last block would form a dense {size}x{size} Hessian; "
                              f"use neumann or cg (exact allows at most {MAX_EXACT_BLOCK_PARAMETERS} parameters).")

    def _block_parameters(self):
        """The last block's variables and the head's: the parameters of --influence_scope=last_block. Also cuts
        the model at the block (cached), so that a model that cannot be cut is refused at set-up."""
        self.model.last_block_split()
        return self.model.last_block_variables() + [self.model.head.kernel, self.model.head.bias]

    def _replica_slice(self, batch):
        """This replica's share of every per-example tensor of the global batch."""
        if self.num_replicas == 1:
            return batch
        index = tf.distribute.get_replica_context().replica_id_in_sync_group

        def take(x):
            size = tf.shape(x)[0] // self.num_replicas
            return x[index * size:(index + 1) * size]

        return {key: take(value) for key, value in batch.items()}

    def _weight_ids(self, ids):
        return ids if self.config.weighting == "per_example" else tf.zeros_like(ids)

    def _rampup(self, step):
        if self.config.unlabeled_rampup == 0:
            return tf.constant(1.0)
        return tf.minimum(1.0, tf.cast(step, tf.float32) / float(self.config.unlabeled_rampup))

    def _flag_if_not_finite(self, finite):
        self.bad_step.assign(tf.where((self.bad_step < 0) & ~finite, self.step, self.bad_step))

    def training_loss(self, out, lam):
        """The θ objective of Alg. 1 for one batch: (loss, supervised, unsupervised).

        mean_{D'} ℓ_S + (1/|U'|) Σ_u r(t) λ_u ℓ_U(u) + wd · Σ ½||w||². out: SSLLosses; lam: [U].
        """
        supervised = tf.reduce_mean(out.labeled)
        unsupervised = tf.reduce_mean(self._rampup(self.step) * lam * out.unlabeled)
        loss = supervised + unsupervised
        if self.config.loss_l2 > 0:
            loss += self.config.loss_l2 * l2_term(self._decayed)
        return loss, supervised, unsupervised

    def _train_step_fn(self, batch):
        if self.num_replicas == 1:
            return self._replica_train_step(batch)
        metrics = self.strategy.run(self._replica_train_step, args=(batch,))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in metrics.items()}

    def _replica_train_step(self, batch):
        if not isinstance(batch, dict):  # a step number: sample inside the step (see train_batches)
            batch = self.source.train_batch(batch)
        batch = self._replica_slice(batch)
        metrics = self._theta_update(batch)
        self.source.observe(self.model, batch)  # e.g. CTAugment's rates from the probes of this batch
        self.step.assign_add(1)
        return metrics

    def _theta_update_fn(self, batch):
        """Loss, gradients and the θ update of one batch (XLA-compiled with --jit_compile: batch sampling
        and augmentation stay outside, as RandomIndexShuffle has no XLA kernel)."""
        variables = self.model.trainable_variables
        lam = self.weights.gather(self._weight_ids(batch["unlabeled_ids"]))
        with tf.GradientTape() as tape:
            out = self.algorithm.losses(self.model, batch, training=True, step=self.step)
            loss, supervised, unsupervised = self.training_loss(out, lam)
            # The optimizer sums the replicas' gradients: each contributes 1/n of the mean.
            scaled = loss / self.num_replicas
            if self.config.mixed_precision:
                scaled = self.theta_optimizer.get_scaled_loss(scaled)
        grads = tape.gradient(scaled, variables)
        if self.config.mixed_precision:
            # float16 gradients overflow now and then: the loss-scale optimizer skips those steps and
            # lowers its scale, so only a non-finite (float32) loss means divergence.
            grads = self.theta_optimizer.get_unscaled_gradients(grads)
            finite = tf.math.is_finite(loss)
        else:
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads]) & tf.math.is_finite(loss)
        if self.num_replicas == 1:
            # A non-finite step is not applied: the model stays at its last good value.
            tf.cond(finite, lambda: self._apply_theta_step(grads, variables), lambda: tf.no_op())
        else:
            # No cross-replica reduction may run inside a tf.cond: zero the update instead. The run
            # stops at the next check and no checkpoint is written after this step.
            grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
            self._apply_theta_step(grads, variables)
        self._flag_if_not_finite(finite)
        metrics = {"loss": loss, "supervised": supervised, "unsupervised": unsupervised}
        metrics.update(out.metrics)
        return metrics

    def _apply_theta_step(self, grads, variables):
        self.theta_optimizer.apply_gradients(zip(grads, variables))
        if self.ema is not None:
            self.ema.update()
        return tf.no_op()

    def _outer_step_fn(self, batch):
        """One Λ step (Alg. 1 lines 7-12) at the current θ."""
        ids, grad_lambda = self._hypergradient_fn(batch)
        finite = tf.reduce_all(tf.math.is_finite(grad_lambda))
        step_size = tf.cond(finite, lambda: self._apply_weight_step(ids, grad_lambda),
                            lambda: tf.zeros([], self.weights.values.dtype))
        self._flag_if_not_finite(finite)
        self.lambda_movement.assign_add(tf.cast(step_size, tf.float64))
        return {"hypergradient_abs_mean": tf.reduce_mean(tf.abs(grad_lambda)), "lambda_step_abs_mean": step_size}

    def _hypergradient_fn(self, batch):
        """(ids [U'] of the Λ table, dL_val/dλ [U']) on the outer batch, at the current θ (lines 7-11)."""
        if self._in_graph_batches:
            batch = self.source.outer_batch(batch)
        out = self.algorithm.losses(self.model, batch, training=False, step=self.step)
        ids = self._weight_ids(batch["unlabeled_ids"])
        lam = self.weights.gather(ids)
        num_unlabeled = tf.cast(tf.shape(out.unlabeled)[0], tf.float32)
        scale = self._rampup(self.step) / num_unlabeled  # the training loss's factor on λ_u ℓ_u
        targets = self._influence_targets(out)
        if self.config.influence_scope == "last_block":
            grad_lambda, norms = self._block_influence(batch, out, lam, targets)
            grad_lambda *= scale  # ∂²L/∂θ∂λ_u = scale·∇ℓ_u
        else:
            features = self._influence_features(out)
            grad_lambda = self._head_influence(batch, out, lam, scale, features, targets) * scale  # w_u = scale·λ_u
            norms = None
            if self.config.hypergradient_normalization == "example":
                norms = head_gradient_norms(features, targets, self.model.head.kernel, self.model.head.bias)
        grad_lambda = normalize_hypergradient(grad_lambda, self.config.hypergradient_normalization, targets, norms)
        return ids, -grad_lambda if self.config.reverse_hypergradient else grad_lambda

    def _influence_targets(self, out):
        """The unlabeled targets of ∇ℓ_u in the influence [U, K]: the algorithm's, or with
        --influence_target_temperature=T, softmax(z_target / T) times the algorithm's mask (its row sums)."""
        temperature = self.config.influence_target_temperature
        if temperature == 0:
            return out.unlabeled_targets
        if out.unlabeled_target_logits is None:
            raise ConfigError(f"--influence_target_temperature needs target logits, which {self.algorithm.name} "
                              "does not return (SSLLosses.unlabeled_target_logits).")
        mask = tf.reduce_sum(out.unlabeled_targets, axis=-1, keepdims=True)
        logits = tf.cast(out.unlabeled_target_logits, out.unlabeled_targets.dtype)
        return tf.nn.softmax(logits / temperature, axis=-1) * mask

    def _influence_features(self, out):
        """The unlabeled features of ∇ℓ_u in the influence [U, D]: the trained (strong) view's or the weak one's."""
        if self.config.influence_view == "strong":
            return out.unlabeled_features
        if out.unlabeled_weak_features is None:
            raise ConfigError(f"--influence_view=weak needs weak-view features, which {self.algorithm.name} "
                              "does not return (SSLLosses.unlabeled_weak_features).")
        return out.unlabeled_weak_features

    def _head_influence(self, batch, out, lam, scale, features, targets):
        """dL_val/dw_u over the classifier layer with its exact (or approximate) inverse Hessian -> [U'].
        H is always the training loss's; `features` and `targets` only make the rows ∇ℓ_u (a variant's)."""
        num_labeled = tf.cast(tf.shape(out.labeled)[0], tf.float32)
        labeled_weights = tf.fill(tf.shape(out.labeled), 1.0 / num_labeled)
        if features is out.unlabeled_features and targets is out.unlabeled_targets:
            x_fit, t_fit, w_fit = out.labeled_features, out.labeled_targets, labeled_weights
            unlabeled_weights = scale * lam
        else:  # the trained rows enter H as weighted "labeled" rows; the variant's rows carry weight 0
            x_fit = tf.concat([out.labeled_features, out.unlabeled_features], 0)
            t_fit = tf.concat([out.labeled_targets, out.unlabeled_targets], 0)
            w_fit = tf.concat([labeled_weights, scale * lam], 0)
            unlabeled_weights = tf.zeros_like(lam)
        val_features = self.model.features(batch["val_x"], training=False)
        val_targets = tf.one_hot(batch["val_y"], tf.shape(out.labeled_targets)[-1])
        # The influence convention is a weighted sum; the training loss is mean-normalised:
        # labeled weight 1/|D'|, unlabeled weight scale·λ_u (influence_ssl.influence docs).
        # With the binary reparametrization (App. D) the decay of the 2-logit head, (wd/2)(|W1|²+|W2|²),
        # is wd·|θ'|² on θ' = (W1 - W2)/2 at its optimum W1 = -W2: a decay of 2·wd on θ'.
        l2_factor = 2.0 if self.config.binary_reparam else 1.0
        return last_layer_weight_gradients(
            x_fit, t_fit, features, targets, unlabeled_weights, val_features, val_targets,
            self.model.head.kernel, self.model.head.bias, labeled_weights=w_fit,
            l2=l2_factor * self.config.loss_l2, method=self.config.influence,
            binary_reparam=self.config.binary_reparam, **self._influence_options(l2_factor))

    def _block_influence(self, batch, out, lam, targets):
        """(-∇ℓ_uᵀ H⁻¹ ∇L_val [U'], ||∇ℓ_u|| [U'] or None) over the last block and the head, H the Hessian of
        this batch's training loss (inference mode, targets constant) on the block's input activations, which
        the trunk computes once; the norms only for --hypergradient_normalization=example.

        The training loss is rebuilt from `out` (the SSLLosses contract: ℓ = CE(targets, logits) up to a
        constant), with the labeled rows at batch["labeled_x"] and the unlabeled at out.unlabeled_inputs."""
        if out.unlabeled_inputs is None:
            raise ConfigError(f"--influence_scope=last_block needs the unlabeled inputs, which {self.algorithm.name} "
                              "does not return (SSLLosses.unlabeled_inputs).")
        params = self._block_parameters()
        trunk, block = self.model.last_block_split()
        scale = self._rampup(self.step) / tf.cast(tf.shape(out.unlabeled)[0], tf.float32)
        inputs = BlockBatch(labeled_x=batch["labeled_x"], labeled_targets=out.labeled_targets,
                            unlabeled_x=out.unlabeled_inputs, unlabeled_targets=out.unlabeled_targets,
                            unlabeled_weights=scale * lam, val_x=batch["val_x"], val_y=batch["val_y"])
        decayed = {v.ref() for v in self._decayed} if self.config.loss_l2 > 0 else set()
        options = {} if self.config.influence == "identity" else {"damping": self.config.influence_damping}
        if self.config.influence == "exact":
            options["check_factorization"] = False  # NaNs -> TrainingDiverged, as for the head
        return block_hypergradient(
            trunk, block, params, inputs, targets, l2=self.config.loss_l2,
            decayed=[p for p in params if p.ref() in decayed], method=self.config.influence,
            with_norms=self.config.hypergradient_normalization == "example", **options)

    def hypergradient(self, outer_step):
        """(ids, dL_val/dλ) as numpy for the Λ batch of outer step `outer_step`, at the current θ;
        nothing is updated (for diagnostics and tests)."""
        ids, grads = self._hypergradient(self._batch(self.source.outer_batch, outer_step))
        return ids.numpy(), grads.numpy()

    def _apply_weight_step(self, ids, grads):
        """The Λ update; returns the mean |Δλ| over the batch's rows (to compare optimizers' step sizes)."""
        before = self.weights.gather(ids)
        with tf.control_dependencies([before]):
            self.weights.apply_gradients(ids, grads)
        return tf.reduce_mean(tf.abs(self.weights.gather(ids) - before))

    def _influence_options(self, l2_factor):
        if self.config.influence == "identity":
            return {}
        # The head's bias is decayed only when the loss decays every variable (UDA).
        bias_l2 = self.config.loss_l2 if self.config.weight_decay_on == "all" else 0.0
        options = {"damping": self.config.influence_damping, "bias_l2": l2_factor * bias_l2}
        if self.config.influence == "exact":
            # A failed factorization gives NaNs, which the finite check turns into TrainingDiverged.
            options["check_factorization"] = False
        return options

    # ----- the loop -------------------------------------------------------------------

    def is_outer_step(self, step):
        """Whether a Λ step follows θ step number `step` (1-based)."""
        c = self.config
        return c.weighting != "none" and step > c.weight_warmup and step % c.inner_steps == 0

    def num_outer_steps(self, step):
        """How many Λ steps have been taken after θ step number `step`."""
        c = self.config
        if c.weighting == "none":
            return 0
        return max(0, step // c.inner_steps - c.weight_warmup // c.inner_steps)

    def run(self):
        """Train to config.steps (resuming from train_dir if it holds a checkpoint). Returns results."""
        self._open_train_dir()
        c = self.config
        step = int(self.step.numpy())
        progress = ProgressLog(c.steps, step, enabled=self.verbose)
        metrics = {}
        batches = self.train_batches(step)
        while step < c.steps:
            metrics = self._train_step(next(batches))
            step += 1
            if self.is_outer_step(step):
                metrics.update(self._outer_step(self._batch(self.source.outer_batch, step // c.inner_steps)))
                for callback in self.callbacks:
                    callback(self, self.num_outer_steps(step))
            # Evaluations follow eval_every alone (not only the steps that are also log steps).
            log_now, evaluate_now = (step % every == 0 or step == c.steps for every in (c.log_every, c.eval_every))
            if log_now or evaluate_now:
                self._check_finite()
                scalars = {k: float(v) for k, v in metrics.items()}
                scalars.update(self.weight_stats())
                if evaluate_now:
                    accuracy = self.evaluate()
                    self._record_evaluation({"step": step, **accuracy})
                    scalars.update({f"{k}_error": 1.0 - v for k, v in accuracy.items()})
                if log_now:
                    progress.log(step, scalars)
                self._summarize(step, scalars)
            if self.train_dir and (step % c.checkpoint_every == 0 or step == c.steps):
                self._check_finite()
                self._save_checkpoint(step)
        self._check_finite()
        return self._finish()

    def train_batches(self, first_step):
        """θ batches (or step numbers) of steps first_step, first_step + 1, ... for _train_step.

        A stateless source that asks for it (`pipelined`, e.g. augmented images) has its batches made by
        tf.data one step ahead of training, as a Keras fit does; each is still a pure function of its step.
        Another stateless source is sampled inside the compiled step (cheaper when a batch is a gather: the
        iterator's per-step cost would dominate); a stateful one (CTAugment) eagerly, step by step."""
        steps = range(first_step, self.config.steps)
        if not self._in_graph_batches:
            return (self.source.train_batch(k) for k in steps)
        if not self.source.pipelined:
            return (tf.constant(k, tf.int64) for k in steps)
        data = tf.data.Dataset.range(first_step, self.config.steps).map(self.source.train_batch)
        return iter(data.prefetch(1))

    def _batch(self, sample, index):
        # Stateless sources sample inside the compiled step (one call per step); others here.
        return tf.constant(index, tf.int64) if self._in_graph_batches else sample(index)

    def evaluate(self):
        """{set name: accuracy} on the source's evaluation sets: of the EMA weights when the run keeps
        an EMA (as FixMatch and UDA report), plus "raw_<set>" of the raw weights. Also keeps the
        validation loss of the evaluated weights (`validation_loss`)."""
        raw, raw_loss = self._accuracies()
        if self.ema is None:
            self._validation_loss = raw_loss
            return raw
        with self.ema.swapped():
            ema, self._validation_loss = self._accuracies()
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
        lam = self.weights.to_numpy()
        num_steps = int(self.weights.optimizer.iterations.numpy())
        return {"lambda_mean": float(lam.mean()), "lambda_min": float(lam.min()),
                "lambda_max": float(lam.max()), "lambda_zero_fraction": float(np.mean(lam == 0)),
                "lambda_step_abs_mean_over_run": float(self.lambda_movement.numpy()) / max(1, num_steps)}

    # ----- state, logs, results ----------------------------------------------------------

    def _open_train_dir(self):
        if not self.train_dir:
            return
        os.makedirs(self.train_dir, exist_ok=True)
        config_path = os.path.join(self.train_dir, "config.json")
        # Every worker restores from the chief's checkpoints (a shared directory).
        self._manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(self.train_dir, "ckpt"),
                                                   max_to_keep=3)
        if self._manager.latest_checkpoint:
            self.config.check_resumable_from(self._saved_config(config_path))
            try:
                self.checkpoint.restore(self._manager.latest_checkpoint).assert_existing_objects_matched()
            except Exception as e:  # noqa: BLE001 -- TF raises OpError, IndexError, ValueError, ...
                raise CheckpointError(
                    f"Cannot restore {self._manager.latest_checkpoint}: {type(e).__name__}: {str(e).splitlines()[0]}. "
                    "The file may be corrupt or from another model; move it away or use a new "
                    "--train_dir.") from None
            if self.verbose:
                print(f"Resumed from {self._manager.latest_checkpoint} at step {int(self.step.numpy())}.",
                      flush=True)
        if not self.is_chief:
            self.history = []  # a non-chief's results hold its own evaluations only; the chief's are the run's
            # Only the chief writes the run directory. Under MultiWorkerMirroredStrategy every worker takes
            # part in a save, so the others save into a scratch directory that is removed right after.
            self._manager = tf.train.CheckpointManager(self.checkpoint, self._scratch_dir(), max_to_keep=1)
            return
        self._load_history(int(self.step.numpy()))
        # Written whole (rename), as other workers may be reading it.
        with open(config_path + ".tmp", "w") as f:
            f.write(self.config.dumps())
        os.replace(config_path + ".tmp", config_path)
        self._writer = tf.summary.create_file_writer(os.path.join(self.train_dir, "tb"))

    def _saved_config(self, config_path):
        """The configuration a checkpoint in train_dir was written with; CheckpointError if there is none."""
        what = (f"{self.train_dir} holds a checkpoint ({self._manager.latest_checkpoint}) but {{}}: it is not a "
                "run of this project, or it is corrupt. Move it away or use a new --train_dir.")
        if not os.path.exists(config_path):
            raise CheckpointError(what.format("no config.json"))
        try:
            with open(config_path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(what.format(f"its config.json cannot be read ({e})")) from None
        if not isinstance(saved, dict) or "steps" not in saved:
            raise CheckpointError(what.format("its config.json is not a TrainConfig"))
        return saved

    def _scratch_dir(self):
        return os.path.join(self.train_dir, f"scratch_{self._task[0]}_{self._task[1]}")

    def _save_checkpoint(self, step):
        self._manager.save(checkpoint_number=step)
        if not self.is_chief:
            tf.io.gfile.rmtree(self._scratch_dir())

    def _history_path(self):
        return os.path.join(self.train_dir, "eval_history.jsonl") if self.train_dir else None

    def _record_evaluation(self, entry):
        self.history.append(entry)
        if self.train_dir and self.is_chief:
            with open(self._history_path(), "a") as f:
                f.write(json.dumps(entry) + "\n")

    def _load_history(self, restored_step):
        """Evaluations up to the restored step (later ones belong to steps that will be redone)."""
        path = self._history_path()
        entries = []
        if os.path.exists(path):
            with open(path) as f:
                entries = [e for e in map(json.loads, f) if e["step"] <= restored_step]
        with open(path + ".tmp", "w") as f:
            f.writelines(json.dumps(e) + "\n" for e in entries)
        os.replace(path + ".tmp", path)
        self.history = entries

    def _check_finite(self):
        bad = int(self.bad_step.numpy())
        if bad >= 0:
            kept = self._manager.latest_checkpoint if self._manager else None
            raise TrainingDiverged(
                f"A loss or hypergradient became NaN/Inf at step {bad} (for a hypergradient, the last-layer "
                "Hessian may also have failed to factorize: see --influence_damping); the step was not applied and "
                f"training stopped. Last good checkpoint: {kept or 'none (no --train_dir)'}. "
                "Lower the learning rates or check the data.")

    def _summarize(self, step, scalars):
        if self._writer is None:
            return
        with self._writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
            if self.config.weighting != "none":
                tf.summary.histogram("lambda", self.weights.values)
        self._writer.flush()

    def _finish(self):
        step = int(self.step.numpy())
        final = self.history[-1] if self.history and self.history[-1]["step"] == step else None
        if final is None or self._validation_loss is None:  # e.g. resumed at the last step
            final = {"step": step, **self.evaluate()}
        results = {f"{name}_accuracy": acc for name, acc in final.items() if name != "step"}
        tests = [h["test"] for h in self.history if "test" in h]
        if tests:
            # FixMatch's protocol: the median of the last 20 evaluations.
            results["median_last20_test_accuracy"] = float(np.median(tests[-20:]))
            # UDA reports the best test accuracy over training: a choice made on the test set, kept
            # apart so that it is never mistaken for (or compared as) a model-selection metric.
            results["test_selected"] = {"best_test_accuracy": float(np.max(tests)),
                                        "note": "maximum over test evaluations (UDA's reporting); test-selected"}
        # What a Λ step size is chosen on (never the test set).
        results.update({"format": RESULTS_FORMAT, "step": final["step"], "validation_loss": self._validation_loss,
                        "lambda": self.weight_stats(), "history": self.history, "config": self.config.to_dict()})
        if self.train_dir and self.is_chief:
            with open(os.path.join(self.train_dir, "results.json"), "w") as f:
                json.dump(results, f, indent=2, sort_keys=True)
            self.weights.export(os.path.join(self.train_dir, "weights.npy"))
            np.save(os.path.join(self.train_dir, "hypergradient_counts.npy"), self.weights.counts_numpy())
        return results


__all__ = ["Trainer", "TrainingDiverged", "CheckpointError", "ConfigError"]
