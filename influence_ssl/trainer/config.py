"""Configuration of one run of Algorithm 1, validated before anything is built."""
import dataclasses
import json
import math

from influence_ssl.fields import DERIVED, flag_name, option
from influence_ssl.influence import DEFAULT_DAMPING, METHOD_OPTIONS, NORMALIZATIONS
from influence_ssl.influence.weight_step import FORWARD_MODES, ROWS
from influence_ssl.optimizers.masked_adam import DEFAULT_EPSILON
from influence_ssl.trainer.schedules import LR_SCHEDULES
from influence_ssl.weights import PARAMETRIZATIONS

# The one definition of every choice list: the config checks them, the command-line flags offer them.
WEIGHTING_MODES = ("per_example", "single", "none")
WEIGHT_OPTIMIZERS = ("madam", "adam", "sgd")
INFLUENCE_METHODS = tuple(METHOD_OPTIONS)  # exact, identity, neumann, cg
INFLUENCE_SCOPES = ("head", "last_block")
INFLUENCE_VIEWS = ("strong", "weak")
# The hypergradient variants (not the paper's method); their TrainConfig defaults are the paper's method.
HYPERGRADIENT_VARIANTS = ("hypergradient_normalization", "weight_parametrization", "influence_view",
                          "influence_target_temperature")
# An exact (dense) Hessian over more parameters than this is refused (P² floats).
MAX_EXACT_BLOCK_PARAMETERS = 20_000
THETA_OPTIMIZERS = ("adam", "sgd", "momentum", "nesterov", "adamw")
# How the authors' code (jason718/semi-sup) runs Alg. 1, one switch per difference from the paper's text; the
# first choice of each is the paper's (docs/deviations.md argues each).
WEIGHT_BATCHES = ("fresh", "theta")
VALIDATION_DRAWS = ("permutation", "replacement")
MADAM_STEP_COUNTS = ("global", "per_example")
MADAM_ROWS = ("nonzero", "sampled")
HESSIAN_L2 = ("wd", "unit")
WEIGHT_DECAY_SCOPES = ("kernels", "all")
EMA_SCOPES = ("trainable", "all")


class ConfigError(ValueError):
    """A configuration that cannot run. The message says which value and why."""


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a run of Alg. 1 (paper names in brackets).

    steps: θ steps in all.
    inner_steps: θ steps between two Λ steps [N].
    weight_lr: step size of Λ [η].
    weight_init: initial λ_u (paper: 1; 5 for UDA with 250 CIFAR-10 labels).
    weight_warmup: θ steps before the first Λ step (paper: 20k UDA, 1k IMDb).
    weighting: per_example (ours), single (one learned λ, Fig. 4 left) or none (fixed λ).
    weight_optimizer: madam (App. C), adam or sgd (Fig. 4 centre).
    influence: exact (last layer, exact inverse Hessian), identity, neumann or cg (Sec. 4.3).
    influence_scope: head (the paper's method: the classifier layer) or last_block (the model's last
      block plus the head, through Hessian-vector products: the Sec. 4.3 baselines' scope).
    influence_damping: damping of the last-layer Hessian (see influence_ssl.influence).
    reverse_hypergradient: flip the hypergradient's sign (a control, not the method).
    permute_weights: each θ step shuffles the batch's λ among its examples (a control: the learned
      weights' distribution without their assignment).
    binary_reparam: two classes only: the influence uses one logit f with logits (f, -f) (App. D), whose
      last-layer Hessian has no logit-shift null space; the network itself is unchanged.
    Variants of the hypergradient (the defaults are the paper's method):
    hypergradient_normalization: none, batch, class or example (influence.normalization).
    weight_parametrization: projection (the paper), softplus or sigmoid (λ = f(φ); weights.py).
    influence_view: strong (the view ℓ_U trains, the paper) or weak (the view the targets come from):
      whose features enter ∇ℓ_u in the influence (head scope only).
    influence_target_temperature: 0 (the algorithm's targets) or T > 0: the influence's targets are
      softmax(z_target / T) times the mask; T = 1 with Pseudo-Label's single view makes ∇ℓ_u ≡ 0.
    As the authors' code runs Alg. 1 (the defaults are the paper's text; `--recipe=authors_code` sets them all):
    weight_batch: fresh (Alg. 1 line 7: the Λ step samples its own D', U', V') or theta (the Λ step before a
      θ step uses that step's D' and U', and that θ step trains with λ as it was before).
    weight_step_at_start: a Λ step also at the end of the warm-up itself (with none: before any θ step).
    validation_draw: V' as a slice of a permutation of the validation set, or drawn with replacement.
    madam_step_count, madam_epsilon, madam_rows: M-Adam's step count (one global t as Alg. 2, or one per
      example), its ε, and which rows it steps (those with g != 0 as Alg. 2, or every sampled row).
    weight_max: λ's upper bound (0: none; the authors' code clips λ to [0, 2]).
    influence_rows: ∇ℓ_u of the influence: of the training loss's term (mask and 1/|U'| in it), or the raw
      cross-entropy against the arg-max of the target logits (no mask, no scale).
    influence_kernel_only: the influence's parameters are the head's kernel, not kernel and bias.
    influence_hessian_l2: the L2 term of the influence's H: wd (the training loss's) or unit (H + I over the
      influence's parameters, bias included where it has it).
    influence_forward_mode: batch-norm mode of the influence's forwards (training: batch statistics, each
      forward its own; the running statistics are left as they were).
    unlabeled_rampup: θ steps over which the unsupervised term ramps linearly to full weight.
    optimizer, lr, lr_schedule, lr_warmup, min_lr_ratio: θ's optimizer and schedule (schedules.py);
      adamw is BERT's Adam (optimizers.BertAdam, UDA's text runs).
    weight_decay, weight_decay_on: L2 term wd·Σ½||w||² on kernels (FixMatch) or all trainable
      variables (UDA); the influence's l2 follows it. Under adamw, wd is instead BERT's decoupled
      decay (not on LayerNorm or biases; weight_decay_on unused): no L2 term in the loss, so none
      in the influence either (`loss_l2`).
    clip_norm: clip θ's gradient to this global norm (0: off; BERT / UDA text: 1).
    ema_decay, ema_scope: EMA of the weights used for evaluation (0: off); "trainable" (FixMatch)
      or "all" (UDA HEAD: batch-norm statistics too).
    mixed_precision: the model computes in float16 (build it under keras' 'mixed_float16' policy;
      the head stays float32), variables stay float32, the θ loss is dynamically scaled. The Λ step
      keeps its float64 solve.
    jit_compile: XLA-compile the θ update (loss, gradients, optimizer, EMA; not the batch sampling).
    """

    steps: int = option(1000, "θ training steps (FixMatch: 2^20 = 1024 epochs of 1024 steps; UDA: 400k).")
    labeled_batch: int = option(64, "Labeled batch B (paper: 64); larger than the labeled set, it repeats the set.",
                                flag="batch")
    unlabeled_batch: int = option(448, "Unlabeled batch μ·B.", flag=DERIVED)
    validation_batch: int = option(1024, "Validation batch V' of a Λ step (paper: 320).")
    inner_steps: int = option(100, "θ steps per Λ step [N] (paper: 100 UDA, 512 FixMatch).")
    weight_lr: float = option(0.01, "Step size of Λ [η] (paper: 0.01).")
    weight_init: float = option(1.0, "Initial λ (paper: 5 for UDA, CIFAR-10, 250 labels; else 1).")
    weight_warmup: int = option(0, "θ steps before the first Λ step (paper: 20k UDA, 1k IMDb).")
    weighting: str = option("per_example", "per_example (ours), single (one learned λ, Fig. 4 left) or none "
                            "(the base algorithm, fixed λ).", choices=WEIGHTING_MODES)
    weight_optimizer: str = option("madam", "Optimizer of Λ: M-Adam (App. C), Adam or SGD (Fig. 4 centre).",
                                   choices=WEIGHT_OPTIMIZERS)
    influence: str = option("exact", "Inverse Hessian (Sec. 4.3): exact, identity, neumann or cg.",
                            choices=INFLUENCE_METHODS)
    influence_scope: str = option("head", "head (the paper's method: the classifier layer) or last_block (the "
                                  "model's last block + head, by HVPs: the Sec. 4.3 baselines; use with "
                                  "--influence=neumann|cg).", choices=INFLUENCE_SCOPES)
    influence_damping: float = option(DEFAULT_DAMPING, "Damping of the influence's Hessian, relative to "
                                      "mean(diag H).")
    reverse_hypergradient: bool = option(False, "Control: flip the hypergradient's sign.")
    permute_weights: bool = option(False, "Control: each θ step shuffles the batch's learned λ among its examples "
                                   "(the same weights, no per-example assignment).")
    binary_reparam: bool = option(False, "Two classes only: influence on one logit f with logits (f, -f) (App. D).")
    hypergradient_normalization: str = option(
        "none", "Variant (none = the paper): batch or class standardises the hypergradient over the batch or "
        "within each pseudo-label class; example divides it by the example's gradient norm.", choices=NORMALIZATIONS)
    weight_parametrization: str = option(
        "projection", "Variant (projection = the paper): λ = softplus(φ) or 2·λ0·sigmoid(φ), φ stepped.",
        choices=PARAMETRIZATIONS)
    influence_view: str = option("strong", "Variant (strong = the paper): whose features make ∇ℓ_u in the "
                                 "influence.", choices=INFLUENCE_VIEWS)
    influence_target_temperature: float = option(
        0.0, "Variant (0 = the algorithm's targets): the influence's targets are softmax(z_target / T) times the "
        "mask (with Pseudo-Label's single view, T = 1 makes ∇ℓ_u vanish).")
    weight_batch: str = option("fresh", "Λ batch: fresh (Alg. 1: its own D', U', V') or theta (the authors' code: the "
                               "next θ step's D' and U', which trains with the λ before the Λ step).",
                               choices=WEIGHT_BATCHES)
    weight_step_at_start: bool = option(False, "Also a Λ step at the end of the warm-up itself; with no warm-up, "
                                        "before the first θ step (the authors' code).")
    validation_draw: str = option("permutation", "How V' is drawn: a slice of a permutation of the validation set, "
                                  "or with replacement (the authors' code).", choices=VALIDATION_DRAWS)
    madam_step_count: str = option("global", "M-Adam's step count t: global (Alg. 2) or per_example (the authors' "
                                   "code: each λ's own, for its bias correction).", choices=MADAM_STEP_COUNTS)
    madam_epsilon: float = option(DEFAULT_EPSILON, "M-Adam's ε (the authors' code: 1e-8).")
    madam_rows: str = option("nonzero", "Rows M-Adam steps: nonzero (Alg. 2: g != 0) or sampled (the authors' "
                             "code: every sampled row).", choices=MADAM_ROWS)
    weight_max: float = option(0.0, "Upper bound of λ (0: none; the authors' code: 2).")
    influence_rows: str = option("training_loss", "∇ℓ_u of the influence: training_loss (the paper: dL/dλ_u, mask "
                                 "and 1/|U'| in it) or raw_ce (the authors' code: CE of the strong view against "
                                 "the arg-max of the weak one, unmasked, unscaled).", choices=ROWS)
    influence_kernel_only: bool = option(False, "Influence over the head's kernel only, no bias (the authors' code).")
    influence_hessian_l2: str = option("wd", "L2 term of the influence's Hessian: wd (the training loss's) or unit "
                                       "(the authors' code: coefficient 1).", choices=HESSIAN_L2)
    influence_forward_mode: str = option("inference", "Batch-norm mode of the influence's forwards: inference or "
                                         "training (the authors' code: batch statistics).", choices=FORWARD_MODES)
    unlabeled_rampup: int = option(0, "θ steps over which the unsupervised term ramps linearly to full weight.")
    optimizer: str = option("adam", "θ optimizer: adam, sgd, TF1 momentum or nesterov (FixMatch, UDA; μ = 0.9), "
                            "adamw (BERT's).", choices=THETA_OPTIMIZERS)
    lr: float = option(1e-3, "θ learning rate (paper: 0.03 images, 2e-5 IMDb).")
    lr_schedule: str = option("constant", "θ learning-rate schedule.", choices=LR_SCHEDULES)
    lr_warmup: int = option(0, "θ steps of linear learning-rate warm-up.")
    min_lr_ratio: float = option(0.0, "Floor of the decayed learning rate, as a share of --lr (UDA: 0.004).")
    weight_decay: float = option(0.0, "L2 coefficient (FixMatch: kernels only; UDA: every variable; adamw: "
                                 "decoupled decay).", flag="wd")
    weight_decay_on: str = option("kernels", "What the L2 term decays: kernels (FixMatch) or all (UDA).",
                                  choices=WEIGHT_DECAY_SCOPES)
    clip_norm: float = option(0.0, "Global-norm clip of θ's gradient (0: off; UDA text: 1).")
    ema_decay: float = option(0.0, "EMA decay of the evaluated weights (0: none).", flag="ema")
    ema_scope: str = option("trainable", "EMA of the trainable variables (FixMatch) or all (UDA HEAD).",
                            choices=EMA_SCOPES)
    mixed_precision: bool = option(False, "θ step in float16 with float32 variables and loss scaling (GPU).")
    jit_compile: bool = option(False, "XLA-compile the θ update (loss, gradients, optimizer, EMA).")
    seed: int = option(0, "Seed of the split, the initialisation, the data order and augmentation.")
    log_every: int = option(100, "Progress line every this many steps.")
    eval_every: int = option(500, "Evaluate every this many steps (FixMatch: 1024 = 64 kimg).")
    checkpoint_every: int = option(500, "Checkpoint every this many steps.")

    # Fields that may differ between a run and its resumption. Not `steps`: the cosine schedule and
    # UDA's TSA depend on it, so a longer or shorter resumed run would follow another schedule.
    RESUMABLE_CHANGES = ("log_every", "eval_every", "checkpoint_every")

    def validate(self, num_labeled, num_unlabeled, num_validation):
        """Raise ConfigError for a value that cannot run on data of these sizes."""
        choices = [("weighting", WEIGHTING_MODES), ("weight_optimizer", WEIGHT_OPTIMIZERS),
                   ("influence", INFLUENCE_METHODS), ("influence_scope", INFLUENCE_SCOPES),
                   ("hypergradient_normalization", NORMALIZATIONS), ("weight_parametrization", PARAMETRIZATIONS),
                   ("influence_view", INFLUENCE_VIEWS), ("weight_batch", WEIGHT_BATCHES),
                   ("validation_draw", VALIDATION_DRAWS), ("madam_step_count", MADAM_STEP_COUNTS),
                   ("madam_rows", MADAM_ROWS), ("influence_rows", ROWS), ("influence_hessian_l2", HESSIAN_L2),
                   ("influence_forward_mode", FORWARD_MODES),
                   ("optimizer", THETA_OPTIMIZERS),
                   ("lr_schedule", LR_SCHEDULES), ("weight_decay_on", WEIGHT_DECAY_SCOPES),
                   ("ema_scope", EMA_SCOPES)]
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{flag_of(name)}={getattr(self, name)!r} is not one of {', '.join(allowed)}.")
        positive = ["steps", "labeled_batch", "unlabeled_batch", "validation_batch", "inner_steps",
                    "log_every", "eval_every", "checkpoint_every"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{flag_of(name)} must be >= 1, got {getattr(self, name)}.")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type is float and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ConfigError(f"{flag_of(field.name)} must be a finite number, got {value!r}.")
        for name in ["weight_lr", "weight_init", "weight_warmup", "unlabeled_rampup", "lr_warmup",
                     "weight_decay", "influence_damping", "clip_norm", "influence_target_temperature", "madam_epsilon",
                     "weight_max"]:
            if getattr(self, name) < 0:
                raise ConfigError(f"{flag_of(name)} must be >= 0, got {getattr(self, name)}.")
        if self.weighting == "single" and self.hypergradient_normalization != "none":
            raise ConfigError("--hypergradient_normalization acts on per-example hypergradients; with "
                              "--weighting=single their normalised sum (batch, class) is 0 or meaningless.")
        if self.influence_scope == "last_block" and self.influence_view != "strong":
            raise ConfigError("--influence_view=weak is implemented for --influence_scope=head only.")
        self._validate_authors_switches()
        if self.weighting != "none" and self.weight_parametrization != "projection" and self.weight_init <= 0:
            raise ConfigError(f"--weight_parametrization={self.weight_parametrization} needs --weight_init > 0, "
                              f"got {self.weight_init}.")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}.")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"--min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}.")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"{flag_of('ema_decay')} must be in [0, 1), got {self.ema_decay}.")
        # A labeled batch larger than the labeled set repeats it (FixMatch and USB do: 40 CIFAR-10 labels in batches
        # of 64); the sampler's epochs are permutations, so over whole epochs every example comes equally often.
        sizes = [("unlabeled_batch", num_unlabeled, "unlabeled")]
        if self.validation_draw == "permutation":  # a draw with replacement may be larger than the set
            sizes.append(("validation_batch", num_validation, "validation"))
        for name, size, what in sizes:
            if getattr(self, name) > size:
                raise ConfigError(f"{flag_of(name)}={getattr(self, name)} is larger than the {size} "
                                  f"{what} examples.")

    def _validate_authors_switches(self):
        """The switches of the authors' code that need a particular path."""
        head_only = [("influence_rows", "raw_ce"), ("influence_kernel_only", True),
                     ("influence_forward_mode", "training")]
        for name, value in head_only:
            if getattr(self, name) == value and self.influence_scope != "head":
                raise ConfigError(f"{flag_of(name)}={value} is implemented for --influence_scope=head only.")
        if self.influence_rows == "raw_ce" and (self.influence_view != "strong" or self.influence_target_temperature):
            raise ConfigError("--influence_rows=raw_ce makes its own rows: it cannot be combined with --influence_view "
                              "or --influence_target_temperature.")
        if self.influence_kernel_only and self.binary_reparam:
            raise ConfigError("--influence_kernel_only and --binary_reparam cannot be combined.")
        if self.weight_max and self.weight_max < self.weight_init:
            raise ConfigError(f"--weight_max={self.weight_max} is below --weight_init={self.weight_init}.")
        if self.weight_max and self.weight_parametrization != "projection":
            raise ConfigError("--weight_max bounds the projection; with --weight_parametrization="
                              f"{self.weight_parametrization} it does not apply.")
        madam_only = [("madam_step_count", "global"), ("madam_epsilon", DEFAULT_EPSILON), ("madam_rows", "nonzero")]
        for name, default in madam_only:
            if getattr(self, name) != default and self.weight_optimizer != "madam":
                raise ConfigError(f"{flag_of(name)} applies to --weight_optimizer=madam only.")

    @property
    def loss_l2(self):
        """The coefficient of the loss's L2 term (adamw decays outside the loss)."""
        return 0.0 if self.optimizer == "adamw" else self.weight_decay

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def defaults(cls, names):
        """{name: default} of the named fields."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.name in names}

    def check_resumable_from(self, saved):
        """Raise ConfigError if a checkpoint written under `saved` (a dict) cannot resume here."""
        mine = self.to_dict()
        # A field added after the checkpoint was written had its default then.
        saved = {**{f.name: f.default for f in dataclasses.fields(self)}, **saved}
        differ = sorted(k for k in set(mine) | set(saved)
                        if k not in self.RESUMABLE_CHANGES and mine.get(k) != saved.get(k))
        if differ:
            details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {mine.get(k)!r}" for k in differ)
            raise ConfigError(
                "The train directory holds a checkpoint of a different configuration "
                f"({details}). Use a new --train_dir or the same flags.")

    def dumps(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def flag_of(name):
    """How a message names TrainConfig field `name`: its flag (--batch for labeled_batch, --wd, --ema), or,
    for a field derived from others (the unlabeled batch, μ·B), the bare field name."""
    field = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    flag = flag_name(field)
    return name if flag == DERIVED else f"--{flag}"
