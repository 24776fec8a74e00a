"""The two steps of Alg. 1 as functions of a batch: one engine for Trainer.run and for Keras' fit.

    θ step:  θ <- θ - α ∇θ [ mean_{D'} ℓ_S + (1/|U'|) Σ_{u∈U'} r(t) λ_u ℓ_U(u) + wd·Σ½||w||² ]
    Λ step:  g = dL_val/dλ on a batch (D', U', V') (influence.weight_step); λ <- Π_{λ>=0}(λ - η·M-Adam(g))

r(t) is an optional linear ramp of the unsupervised term, the same for every method. The state is variables
only (θ step counter, first non-finite step, λ's movement), so the steps trace into tf.function, XLA (the θ
update) and tf.distribute replicas with no Python state. Whoever runs the loop (Trainer, WeightedSSLModel)
makes the batches, counts θ steps and decides when a Λ step follows (`is_outer_step`).
"""
import tensorflow as tf
import tf_keras as keras

from influence_ssl.influence import (
    InfluenceOptions,
    MissingSSLOutput,
    apply_weight_step,
    block_parameters,
    hypergradient,
)
from influence_ssl.trainer.config import MAX_EXACT_BLOCK_PARAMETERS, ConfigError


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


def influence_options(config):
    """The influence.InfluenceOptions of a TrainConfig."""
    if config.influence_hessian_l2 == "unit":
        # The authors' code puts the L2 term in H without its coefficient: H + I over its parameters (the kernel;
        # the bias too where the influence has it, or the logit shift would leave H singular).
        l2 = bias_l2 = 1.0
    else:  # the training loss's: the head's bias is decayed only when the loss decays every variable (UDA)
        l2 = config.loss_l2
        bias_l2 = l2 if config.weight_decay_on == "all" else 0.0
    return InfluenceOptions(
        method=config.influence, scope=config.influence_scope, damping=config.influence_damping,
        l2=l2, bias_l2=bias_l2, binary_reparam=config.binary_reparam,
        normalization=config.hypergradient_normalization, reverse=config.reverse_hypergradient,
        view=config.influence_view, target_temperature=config.influence_target_temperature,
        rows=config.influence_rows, kernel_only=config.influence_kernel_only,
        forward_mode=config.influence_forward_mode)


def check_influence(model, options):
    """ConfigError for an influence that cannot run on this model (options: an InfluenceOptions)."""
    if options.binary_reparam and model.head.units != 2:
        raise ConfigError(f"--binary_reparam needs a two-class head, got {model.head.units} classes.")
    if options.scope == "head":
        return
    if options.binary_reparam:
        raise ConfigError("--binary_reparam applies to --influence_scope=head only.")
    try:
        model.last_block_split()  # cut once (cached): a model that cannot be cut is refused here
        size = sum(v.shape.num_elements() for v in block_parameters(model))
    except ValueError as e:
        raise ConfigError(f"--influence_scope=last_block: {e}") from None
    if options.method == "exact" and size > MAX_EXACT_BLOCK_PARAMETERS:
        raise ConfigError(f"--influence=exact over the last block would form a dense {size}x{size} Hessian; "
                          f"use neumann or cg (exact allows at most {MAX_EXACT_BLOCK_PARAMETERS} parameters).")


def unlabeled_only(batch):
    """The batch with an empty labeled part: a forward of its unlabeled views alone."""
    return {**batch, "labeled_x": batch["labeled_x"][:0], "labeled_y": batch["labeled_y"][:0]}


class Alg1Steps:
    """The θ step and the Λ step of one model, SSL algorithm and table Λ.

    Args:
      model: a built influence_ssl.models.Classifier (`features`, `head`).
      algorithm: an influence_ssl.ssl.SSLAlgorithm.
      weights: an influence_ssl.weights.ExampleWeights (Λ and its optimizer).
      influence: an influence.InfluenceOptions (how g is computed).
      theta_optimizer: θ's optimizer; a LossScaleOptimizer means mixed precision. May be set later (Keras'
        compile), before the first θ step.
      per_example: λ is indexed by the unlabeled ids (else every example shares row 0, Fig. 4 left).
      weighted: whether Λ steps run at all; inner_steps [N], weight_warmup, weight_step_at_start: when
        (is_outer_step).
      weight_batch: "fresh" (Alg. 1: a Λ step after θ step k samples its own D', U', V') or "theta" (the
        authors' code: the Λ step before θ step k + 1 uses that step's D' and U' and a validation draw;
        the θ step then uses λ as it was before the Λ step). The loop's to honour (Trainer.run).
      permute_weights: a control: each θ step shuffles the batch's λ among its examples (the same weights, no
        per-example assignment), by a permutation drawn from (permutation_seed, step).
      unlabeled_rampup: θ steps over which r(t) ramps linearly to 1 (0: r = 1).
      loss_l2, decayed: wd and the variables of the L2 term.
      ema: an ema.WeightEMA updated after every applied θ step, or None.
      num_replicas: replicas that each step a slice of the global batch (their gradients are summed).

    Build it inside the distribution strategy's scope: its counters are written once per step whatever the
    number of replicas.
    """

    def __init__(self, model, algorithm, weights, influence, theta_optimizer=None, *, per_example=True,
                 weighted=True, inner_steps=1, weight_warmup=0, weight_step_at_start=False, weight_batch="fresh",
                 permute_weights=False, permutation_seed=0, unlabeled_rampup=0, loss_l2=0.0, decayed=(), ema=None,
                 num_replicas=1):
        self.model, self.algorithm, self.weights, self.influence = model, algorithm, weights, influence
        self.theta_optimizer, self.ema, self.num_replicas = theta_optimizer, ema, num_replicas
        self.per_example, self.weighted = per_example, weighted
        self.inner_steps, self.weight_warmup, self.unlabeled_rampup = inner_steps, weight_warmup, unlabeled_rampup
        self.weight_step_at_start, self.weight_batch = weight_step_at_start, weight_batch
        self.permute_weights, self.permutation_seed = permute_weights, permutation_seed
        self.loss_l2, self.decayed = loss_l2, list(decayed)
        once = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step", aggregation=once)
        # First θ step or Λ step whose loss / hypergradient was not finite (-1: none).
        self.bad_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="bad_step", aggregation=once)
        # Σ over Λ steps of mean |Δλ| over the step's rows: how far each optimizer moves λ (Fig. 4 centre).
        self.lambda_movement = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="lambda_movement",
                                           aggregation=once)

    def is_outer_step(self, step):
        """Whether a Λ step is taken when `step` θ steps are done (a Python int or a scalar tensor): every N
        steps after the warm-up (Alg. 1), or from its last step on (weight_step_at_start: at step 0 with no
        warm-up, as the authors' code). With weight_batch "theta" it runs on θ step step + 1's batch."""
        started = (step >= self.weight_warmup) if self.weight_step_at_start else (step > self.weight_warmup)
        return self.weighted and started & (step % self.inner_steps == 0)

    def num_outer_steps(self, step):
        """How many Λ steps have been applied when `step` θ steps are done (Python ints)."""
        if not self.weighted:
            return 0
        first = self.weight_warmup if self.weight_step_at_start else self.weight_warmup + 1
        # A "theta" Λ step taken at count s is applied together with θ step s + 1.
        last = step if self.weight_batch == "fresh" else step - 1
        n = self.inner_steps
        return max(0, last // n - (first - 1) // n)

    def weight_ids(self, ids):
        """Rows of Λ [U] for unlabeled ids [U]."""
        return ids if self.per_example else tf.zeros_like(ids)

    def batch_weights(self, ids):
        """λ [U] of the θ step's unlabeled ids [U]: their own, or under permute_weights the same values shuffled
        among them."""
        lam = self.weights.gather(self.weight_ids(ids))
        if not self.permute_weights:
            return lam
        seed = tf.stack([tf.constant(self.permutation_seed, tf.int64), tf.cast(self.step, tf.int64)])
        return tf.random.experimental.stateless_shuffle(lam, seed)

    def rampup(self, step):
        """r(t), a float32 scalar."""
        if self.unlabeled_rampup == 0:
            return tf.constant(1.0)
        return tf.minimum(1.0, tf.cast(step, tf.float32) / float(self.unlabeled_rampup))

    def flag_if_not_finite(self, finite):
        self.bad_step.assign(tf.where((self.bad_step < 0) & ~finite, self.step, self.bad_step))

    def training_loss(self, out, lam):
        """The θ objective of Alg. 1 for one batch: (loss, supervised, unsupervised).

        mean_{D'} ℓ_S + (1/|U'|) Σ_u r(t) λ_u ℓ_U(u) + wd · Σ ½||w||². out: SSLLosses; lam: [U].
        """
        supervised = tf.reduce_mean(out.labeled)
        unsupervised = tf.reduce_mean(self.rampup(self.step) * lam * out.unlabeled)
        loss = supervised + unsupervised
        if self.loss_l2 > 0:
            loss += self.loss_l2 * l2_term(self.decayed)
        return loss, supervised, unsupervised

    def theta_update(self, batch):
        """Loss, gradients and the θ update of one batch (this replica's share); returns scalar metrics.

        A step whose loss or gradients are not finite is not applied and is flagged in bad_step. The step
        counter is the caller's to advance (after whatever else it does with the batch)."""
        optimizer, variables = self.theta_optimizer, self.model.trainable_variables
        mixed = isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
        lam = self.batch_weights(batch["unlabeled_ids"])
        with tf.GradientTape() as tape:
            out = self.algorithm.losses(self.model, batch, training=True, step=self.step)
            loss, supervised, unsupervised = self.training_loss(out, lam)
            # The optimizer sums the replicas' gradients: each contributes 1/n of the mean.
            scaled = loss / self.num_replicas
            if mixed:
                scaled = optimizer.get_scaled_loss(scaled)
        grads = tape.gradient(scaled, variables)
        if mixed:
            # float16 gradients overflow now and then: the loss-scale optimizer skips those steps and
            # lowers its scale, so only a non-finite (float32) loss means divergence.
            grads = optimizer.get_unscaled_gradients(grads)
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
        self.flag_if_not_finite(finite)
        metrics = {"loss": loss, "supervised": supervised, "unsupervised": unsupervised}
        metrics.update(out.metrics)
        return metrics

    def _apply_theta_step(self, grads, variables):
        self.theta_optimizer.apply_gradients(zip(grads, variables))
        if self.ema is not None:
            self.ema.update()
        return tf.no_op()

    def hypergradient(self, batch):
        """(rows of Λ [U'], dL_val/dλ [U']) on a Λ batch (D', U', V': labeled_x/y, the unlabeled views and
        ids, val_x/y) at the current θ (Alg. 1 lines 7-11); nothing is updated, the SSL algorithm's state (a
        weighting rule's statistics) included: update_state=False, whatever the forward mode.

        With the influence's forwards in training mode (the authors' code) H comes from a forward of the whole
        batch, the raw-CE rows from one of the unlabeled views alone, the validation gradient from one of V',
        each with its own batch statistics; the running statistics are put back afterwards."""
        training = self.influence.forward_mode == "training"
        kept = self.model.non_trainable_variables if training else []
        saved = [tf.identity(v) for v in kept]
        out = self.algorithm.losses(self.model, batch, training=training, step=self.step, update_state=False)
        row_outputs = None
        if training and self.influence.rows == "raw_ce":
            row_outputs = self.algorithm.losses(self.model, unlabeled_only(batch), training=True, step=self.step,
                                                update_state=False)
        ids = self.weight_ids(batch["unlabeled_ids"])
        lam = self.weights.gather(ids)
        num_unlabeled = tf.cast(tf.shape(out.unlabeled)[0], tf.float32)
        scale = self.rampup(self.step) / num_unlabeled  # the training loss's factor on λ_u ℓ_u
        try:
            grads = hypergradient(self.model, batch, out, lam, scale, self.influence, self.decayed,
                                  self.algorithm.name, row_outputs)
        except MissingSSLOutput as e:
            raise ConfigError(str(e)) from None
        with tf.control_dependencies([grads]):
            for variable, value in zip(kept, saved):
                variable.assign(value)
        return ids, tf.identity(grads)

    def outer_update(self, batch):
        """One Λ step (Alg. 1 lines 7-12) at the current θ; returns scalar metrics. A non-finite
        hypergradient is not applied and is flagged in bad_step."""
        return self.weight_update(*self.hypergradient(batch))

    def weight_update(self, ids, grads):
        """λ's update from hypergradients `grads` [U'] of rows `ids` [U'] (computed before, maybe at an
        earlier θ); returns scalar metrics. A non-finite hypergradient is not applied and is flagged."""
        finite, moved = apply_weight_step(self.weights, ids, grads)
        self.flag_if_not_finite(finite)
        self.lambda_movement.assign_add(tf.cast(moved, tf.float64))
        return {"hypergradient_abs_mean": tf.reduce_mean(tf.abs(grads)), "lambda_step_abs_mean": moved}
