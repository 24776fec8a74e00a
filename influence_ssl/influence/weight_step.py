"""The Λ step of Alg. 1 (lines 7-12): g_u = dL_val/dλ_u for one batch by the influence function, then λ's update.

    g_u = -∇L_val(V')ᵀ H⁻¹ ∇θ ℓ_U(u) · scale                  (Eq. 6; H of the batch's training loss)
    λ_u <- Π_{λ>=0}(λ_u - η·step(g_u))  for u in U'           (M-Adam, App. C, or another optimizer)

θ is the classifier layer (scope "head", Sec. 3.1: closed form, H exact or approximated) or the model's last
block plus the head (scope "last_block", the Sec. 4.3 baselines': Hessian-vector products). The Λ batch's
training loss is mean-normalised, (1/|D'|) Σ ℓ_S + (1/|U'|) Σ_u r·λ_u ℓ_U(u) + decay: an unlabeled row weighs
w_u = scale·λ_u with scale = r/|U'|, and dL_val/dλ_u = scale · dL_val/dw_u.

Inputs are duck-typed: the model has `features(x, training)`, `head` (a Dense layer), is callable on inputs and,
for the last-block scope, has `last_block_variables()` and `last_block_split()` (influence_ssl.models.Classifier);
the SSL outputs have the fields of influence_ssl.ssl.SSLLosses; the options are an InfluenceOptions.
"""
import dataclasses

import tensorflow as tf

from influence_ssl.influence.block import BlockBatch, block_hypergradient
from influence_ssl.influence.hypergradient import DEFAULT_DAMPING, METHOD_OPTIONS, last_layer_weight_gradients
from influence_ssl.influence.normalization import NORMALIZATIONS, head_gradient_norms, normalize_hypergradient

SCOPES = ("head", "last_block")
VIEWS = ("strong", "weak")
# ∇ℓ_u of the influence: of the training loss's term (its targets, mask folded in; the paper's dL_val/dλ_u),
# or the raw cross-entropy against the arg-max of the target logits, unmasked and unscaled (the authors' code).
ROWS = ("training_loss", "raw_ce")
# The batch-norm mode of the influence's forwards: inference (running statistics), or training (batch
# statistics, the authors' code; the running statistics are left as they were).
FORWARD_MODES = ("inference", "training")


@dataclasses.dataclass(frozen=True)
class InfluenceOptions:
    """How the Λ step computes g (the defaults are the paper's method).

    method: "exact", "identity", "neumann" or "cg" (see last_layer_weight_gradients, block_hypergradient).
    scope: "head" (the classifier layer) or "last_block" (the model's last block and the head).
    damping: solve with H + damping·mean(diag H)·I.
    l2: the training loss's decay coefficient (on the head's kernel; over the last block, on its decayed
      variables).
    bias_l2: its decay coefficient on the head's bias (0 when only kernels decay).
    binary_reparam: two classes only: H over one logit f with logits (f, -f) (App. D; head scope).
    normalization: none, batch, class or example (influence.normalization).
    reverse: flip g's sign (a control, not the method).
    view: "strong" (features of the view ℓ_U trains) or "weak" (of the view its targets come from; head scope).
    target_temperature: 0 (the algorithm's targets) or T > 0: softmax(z_target / T) times the mask.
    rows: "training_loss" (g_u = scale·dL_val/dw_u of the training loss's term) or "raw_ce" (the authors'
      code: -∇L_valᵀ H⁻¹ ∇CE(onehot(argmax z_target), z_u), no mask, no scale; head scope).
    kernel_only: the influence's parameters are the head's kernel alone (the authors' code; head scope).
    forward_mode: "inference" or "training": batch-norm mode of the influence's forwards.
    solver (not an argument): the solver's options, built once from method and damping.
    """

    method: str = "exact"
    scope: str = "head"
    damping: float = DEFAULT_DAMPING
    l2: float = 0.0
    bias_l2: float = 0.0
    binary_reparam: bool = False
    normalization: str = "none"
    reverse: bool = False
    view: str = "strong"
    target_temperature: float = 0.0
    rows: str = "training_loss"
    kernel_only: bool = False
    forward_mode: str = "inference"
    solver: dict = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        for name, allowed in (("method", tuple(METHOD_OPTIONS)), ("scope", SCOPES), ("normalization", NORMALIZATIONS),
                              ("view", VIEWS), ("rows", ROWS), ("forward_mode", FORWARD_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"InfluenceOptions.{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}.")
        solver = {} if self.method == "identity" else {"damping": self.damping}
        if self.method == "exact":
            solver["check_factorization"] = False  # a failed factorization gives NaNs: the step is skipped
        object.__setattr__(self, "solver", solver)


class MissingSSLOutput(ValueError):
    """The SSL outputs lack a field that the chosen influence variant reads."""


def block_parameters(model):
    """The last block's variables and the head's kernel and bias: θ of the last-block scope."""
    return model.last_block_variables() + [model.head.kernel, model.head.bias]


def influence_targets(out, options, producer="the SSL algorithm"):
    """The unlabeled targets of ∇ℓ_u in the influence [U, K]: the algorithm's, or with a target temperature T,
    softmax(z_target / T) times the algorithm's mask (its row sums)."""
    temperature = options.target_temperature
    if temperature == 0:
        return out.unlabeled_targets
    if out.unlabeled_target_logits is None:
        raise MissingSSLOutput(f"--influence_target_temperature needs target logits, which {producer} does not "
                               "return (SSLLosses.unlabeled_target_logits).")
    mask = tf.reduce_sum(out.unlabeled_targets, axis=-1, keepdims=True)
    logits = tf.cast(out.unlabeled_target_logits, out.unlabeled_targets.dtype)
    return tf.nn.softmax(logits / temperature, axis=-1) * mask


def raw_targets(out, producer="the SSL algorithm"):
    """One-hot arg-max of the target logits, unmasked [U, K]: the targets of the authors' J_u."""
    if out.unlabeled_target_logits is None:
        raise MissingSSLOutput(f"--influence_rows=raw_ce needs target logits, which {producer} does not "
                               "return (SSLLosses.unlabeled_target_logits).")
    classes = tf.shape(out.unlabeled_targets)[-1]
    return tf.one_hot(tf.argmax(out.unlabeled_target_logits, axis=-1), classes, dtype=out.unlabeled_targets.dtype)


def influence_features(out, options, producer="the SSL algorithm"):
    """The unlabeled features of ∇ℓ_u in the influence [U, D]: the trained (strong) view's or the weak one's."""
    if options.view == "strong":
        return out.unlabeled_features
    if out.unlabeled_weak_features is None:
        raise MissingSSLOutput(f"--influence_view=weak needs weak-view features, which {producer} does not "
                               "return (SSLLosses.unlabeled_weak_features).")
    return out.unlabeled_weak_features


def head_influence(model, batch, out, lam, scale, features, targets, options):
    """dL_val/dw_u over the classifier layer, its Hessian exact or approximated -> [U].

    H is always the training loss's (labeled rows at 1/|D'|, trained unlabeled rows at scale·λ_u); `features`
    [U, D] and `targets` [U, K] only make the rows ∇ℓ_u (a variant's). batch: val_x [V, ...], val_y [V];
    lam [U]; scale: scalar.
    """
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
    val_features = model.features(batch["val_x"], training=options.forward_mode == "training")
    val_targets = tf.one_hot(batch["val_y"], tf.shape(out.labeled_targets)[-1])
    # With the binary reparametrization (App. D) the decay of the 2-logit head, (wd/2)(|W1|²+|W2|²), is
    # wd·|θ'|² on θ' = (W1 - W2)/2 at its optimum W1 = -W2: a decay of 2·wd on θ'.
    l2_factor = 2.0 if options.binary_reparam else 1.0
    bias = {} if options.method == "identity" else {"bias_l2": l2_factor * options.bias_l2}
    return last_layer_weight_gradients(
        x_fit, t_fit, features, targets, unlabeled_weights, val_features, val_targets,
        model.head.kernel, model.head.bias, labeled_weights=w_fit, l2=l2_factor * options.l2,
        method=options.method, binary_reparam=options.binary_reparam, kernel_only=options.kernel_only, **bias,
        **options.solver)


def block_influence(model, batch, out, lam, scale, targets, options, decayed=(), producer="the SSL algorithm"):
    """(-∇ℓ_uᵀ H⁻¹ ∇L_val [U], ||∇ℓ_u|| [U] or None) over the last block and the head, from one trunk forward
    (influence.block.block_hypergradient on the model's split).

    H is the Hessian of the batch's training loss in inference mode, targets constant: mean over D' of
    CE(labeled targets), Σ_u scale·λ_u·CE(targets_u) over U', and options.l2·Σ½||p||² over the block's
    `decayed` variables. The rows ∇ℓ_u are of CE(targets_u, f(unlabeled_inputs_u)), without scale·λ_u.
    batch: labeled_x, val_x [V, ...], val_y [V]; lam [U]; targets [U, K]; scale: scalar.
    """
    if out.unlabeled_inputs is None:
        raise MissingSSLOutput(f"--influence_scope=last_block needs the unlabeled inputs, which {producer} does not "
                               "return (SSLLosses.unlabeled_inputs).")
    params = block_parameters(model)
    trunk, block = model.last_block_split()
    inputs = BlockBatch(labeled_x=batch["labeled_x"], labeled_targets=out.labeled_targets,
                        unlabeled_x=out.unlabeled_inputs, unlabeled_targets=out.unlabeled_targets,
                        unlabeled_weights=scale * lam, val_x=batch["val_x"], val_y=batch["val_y"])
    decayed_refs = {v.ref() for v in decayed} if options.l2 > 0 else set()
    return block_hypergradient(trunk, block, params, inputs, targets, l2=options.l2,
                               decayed=[p for p in params if p.ref() in decayed_refs], method=options.method,
                               with_norms=options.normalization == "example", **options.solver)


def hypergradient(model, batch, out, lam, scale, options, decayed=(), producer="the SSL algorithm",
                  row_outputs=None):
    """g = dL_val/dλ [U] for the unlabeled rows of one Λ batch, at the current θ (Alg. 1 lines 8-11).

    Args:
      model: the classifier (module docstring).
      batch: dict with val_x [V, ...] and val_y [V] (int), the validation batch V'.
      out: the SSL outputs (SSLLosses) of the batch's D' and U', in inference mode.
      lam: [U] λ of the unlabeled rows.
      scale: scalar, the training loss's factor on λ_u ℓ_U(u): r(t)/|U'|.
      options: InfluenceOptions.
      decayed: the variables of the training loss's L2 term (the last-block scope's H has it; the head
        scope reads options.l2 and options.bias_l2 instead).
      producer: who made `out`, for the messages of MissingSSLOutput.
      row_outputs: SSLLosses of a separate forward of the unlabeled views alone, whose strong features and
        target logits make the raw_ce rows (the authors' per-example forward); None: `out`'s.
    Returns:
      [U], normalised and signed as the options say. Negative: up-weighting u lowers the validation loss.
    """
    if options.scope == "last_block":
        targets = influence_targets(out, options, producer)
        grads, norms = block_influence(model, batch, out, lam, scale, targets, options, decayed, producer)
        grads *= scale  # ∂²L/∂θ∂λ_u = scale·∇ℓ_u
    else:
        if options.rows == "raw_ce":  # the raw CE's gradient: no mask, no scale (the authors' J_u)
            source = out if row_outputs is None else row_outputs
            features, targets, row_scale = source.unlabeled_features, raw_targets(source, producer), 1.0
        else:
            features, row_scale = influence_features(out, options, producer), scale
            targets = influence_targets(out, options, producer)
        grads = head_influence(model, batch, out, lam, scale, features, targets, options) * row_scale
        norms = None
        if options.normalization == "example":
            norms = head_gradient_norms(features, targets, model.head.kernel, model.head.bias)
    grads = normalize_hypergradient(grads, options.normalization, targets, norms)
    return -grads if options.reverse else grads


def apply_weight_step(weights, ids, grads):
    """λ's update (Alg. 1 line 12) on the rows `ids`, skipped unless every g is finite.

    Args:
      weights: an influence_ssl.weights.ExampleWeights (Λ and its optimizer).
      ids: [U] integer rows of Λ; grads: [U] their dL_val/dλ.
    Returns:
      (finite: scalar bool, moved: mean |Δλ| over the rows, scalar, 0 when skipped). `moved` compares
      optimizers' step sizes (Fig. 4 centre).
    """
    finite = tf.reduce_all(tf.math.is_finite(grads))

    def step():
        before = weights.gather(ids)
        with tf.control_dependencies([before]):
            weights.apply_gradients(ids, grads)
        return tf.reduce_mean(tf.abs(weights.gather(ids) - before))

    return finite, tf.cond(finite, step, lambda: tf.zeros([], weights.values.dtype))
