"""Presets: the original codebases' settings (and this project's CPU-scale ones) as overrides of RunConfig.

A run's configuration is resolved in layers, each an override of the one before, all by flag name:
  RunConfig's defaults <- the algorithm's preset <- the dataset's scale (digits, 2-D, IMDb) <- the recipe
  <- explicit values.
Sources: shared/ref/ssl_anchors.md §2-§4 (FixMatch's and UDA's code), Ren et al. App. D, and FixMatch's
pseudo_label.py for Pseudo-Label on images.
"""
from influence_ssl.runs.config import RunConfig, derive, family, leaves, value_of, with_values

# Alg. 1's and the θ step's settings of each original codebase (images).
ALGORITHM_PRESETS = {
    # FixMatch's pseudo_label.py: μ = 1, threshold 0.95, the unsupervised term ramped up over the first 40% of
    # training (warmup_pos). The paper runs Pseudo-Label only on the synthetic data; N is FixMatch's.
    "pseudo_label": dict(steps=2**20, batch=64, uratio=1, lr=0.03, wd=5e-4, ema=0.999, lr_schedule="fixmatch_cosine",
                         unlabeled_rampup=int(0.4 * 2**20), inner_steps=512),
    "fixmatch": dict(steps=2**20, batch=64, uratio=7, lr=0.03, wd=5e-4, ema=0.999, lr_schedule="fixmatch_cosine",
                     inner_steps=512),
    "uda_paper": dict(steps=400_000, batch=64, uratio=5, lr=0.03, wd=5e-4, ema=0.0, lr_schedule="uda_cosine",
                      lr_warmup=20_000, min_lr_ratio=0.004, weight_decay_on="all", inner_steps=100,
                      eval_every=10_000, log_every=1000, checkpoint_every=10_000),
    "uda_current": dict(steps=500_000, batch=64, uratio=7, lr=0.03, wd=5e-4, ema=0.9999, lr_schedule="uda_current",
                        weight_decay_on="all", ema_scope="all", uda_softmax_temp=0.4, uda_confidence_thresh=0.8,
                        inner_steps=100, eval_every=10_000, log_every=1000, checkpoint_every=10_000),
}
# What every image preset shares (Ren et al. App. D: λ by M-Adam 0.01 after a 20k warm-up, validation 1024,
# V' = 320; FixMatch's 64-kimg evaluations), under the presets above.
IMAGE_COMMON = dict(optimizer="nesterov", weight_lr=0.01, weight_warmup=20_000, num_labeled=4000,
                    num_validation=1024, validation_batch=320, eval_every=1024, log_every=1024,
                    checkpoint_every=1024 * 16, arch="wrn28_2")
# CPU-scale default on scikit-learn digits (1,297 train / 500 test, 8x8): about half a minute a run on 2 cores.
# Λ: each unlabeled example is visited ~steps·|U'|/(N·|U|) ≈ 6 times here against ~25 in the paper's UDA runs
# (400k/100 · 320/50k), so η is raised to 0.04 to give λ a comparable total movement.
DIGITS = dict(steps=1000, batch=32, uratio=3, lr=0.03, num_labeled=50, num_validation=200, validation_batch=200,
              inner_steps=10, weight_lr=0.04, weight_warmup=300, eval_every=100, log_every=250, checkpoint_every=500,
              arch="small_cnn")
# Sec. 4.1: 10 labeled, 30 validation and 1000 unlabeled examples, an MLP of two hidden layers of 100 ReLU units,
# Adam, Pseudo-Label (threshold 0: every example) as the base algorithm; full batches. θ values chosen for a
# fast CPU run.
SYNTHETIC = dict(algorithm="pseudo_label", confidence=0.0, arch="mlp", num_labeled=10, num_validation=30,
                 num_unlabeled=1000, num_test=10_000, steps=1000, optimizer="adam", lr=3e-3, wd=1e-3,
                 unlabeled_rampup=200, inner_steps=10, weight_lr=0.01, weight_init=1.0, weight_warmup=200,
                 ema=0.0, lr_schedule="constant", eval_every=1000, log_every=1000, checkpoint_every=1000)
# Ren et al.'s IMDb setup (App. D) on UDA's text recipe: BERT's Adam (decoupled decay 0.01, clip 1), lr 2e-5
# with 1k warm-up then linear decay to 0 at 10k, TSA linear, no sharpening or mask; batches 8 labeled / 32
# unlabeled; Λ by M-Adam 0.01 every 5 θ steps after 1k; the 25k test reviews every 500.
IMDB = dict(algorithm="uda", arch="bert", steps=10_000, batch=8, uratio=4, optimizer="adamw", lr=2e-5, wd=0.01,
            clip_norm=1.0, lr_schedule="bert_linear", lr_warmup=1000, tsa="linear", uda_softmax_temp=1.0,
            uda_confidence_thresh=0.0, inner_steps=5, weight_lr=0.01, weight_init=1.0, weight_warmup=1000,
            num_labeled=20, num_validation=20, validation_batch=20, eval_every=500, log_every=100,
            checkpoint_every=500, ema=0.0)


# Alg. 1 as the authors' code (jason718/semi-sup main.py) runs it: one switch per difference from the paper's text
# (docs/deviations.md gives each with its file and line), each a group of fields that go together.
AUTHORS_SWITCHES = {
    "theta_batch": dict(weight_batch="theta"),
    "step_at_start": dict(weight_step_at_start=True, weight_warmup=0),
    "validation_draw": dict(validation_draw="replacement"),  # V' as large as the unlabeled batch (below)
    "per_example_steps": dict(madam_step_count="per_example"),
    "epsilon": dict(madam_epsilon=1e-8),
    "sampled_rows": dict(madam_rows="sampled"),
    "lambda_max": dict(weight_max=2.0),
    "raw_ce_rows": dict(influence_rows="raw_ce"),
    "kernel_only": dict(influence_kernel_only=True),
    "unit_l2": dict(influence_hessian_l2="unit", influence_damping=0.0),
    "training_forwards": dict(influence_forward_mode="training"),  # batch norm: image networks only
    "frozen_cta": dict(cta_frozen=True),  # FixMatch with CTAugment only
}


def authors_switches(values):
    """{switch: {flag: value}} of the switches that apply to a run of flag `values` (dataset, algorithm,
    augment, batch, uratio), in AUTHORS_SWITCHES' order."""
    image = family(values["dataset"]) == "image"
    out = {}
    for name, fields in AUTHORS_SWITCHES.items():
        if name == "training_forwards" and not image:
            continue
        if name == "frozen_cta" and not (image and values["algorithm"] == "fixmatch" and values["augment"] == "cta"):
            continue
        fields = dict(fields)
        if name == "validation_draw" and image:
            fields["validation_batch"] = values["batch"] * values["uratio"]
        out[name] = fields
    return out


def recipe_values(recipe, values):
    """{flag: value} of `recipe` for a run of preset and explicit flag `values` (every switch that applies)."""
    if recipe == "paper":
        return {}
    return {flag: value for fields in authors_switches(values).values() for flag, value in fields.items()}


def algorithm_preset(algorithm, uda_preset):
    return ALGORITHM_PRESETS[f"uda_{uda_preset}" if algorithm == "uda" else algorithm]


def preset_values(dataset, algorithm, uda_preset):
    """{flag: value} of the presets of (dataset, algorithm), before explicit values."""
    kind = family(dataset)
    if kind == "2d":
        return dict(SYNTHETIC)
    if kind == "text":
        return dict(IMDB)
    preset = algorithm_preset(algorithm, uda_preset)
    values = {**IMAGE_COMMON, **preset}
    if dataset == "digits":
        values.update(DIGITS)
        # The preset's shape at the shorter length: the same warm-up fractions, and an EMA (if any) short
        # enough to follow 1,000 steps.
        values["lr_warmup"] = round(preset.get("lr_warmup", 0) * DIGITS["steps"] / preset["steps"])
        values["unlabeled_rampup"] = round(preset.get("unlabeled_rampup", 0) * DIGITS["steps"] / preset["steps"])
        values["ema"] = 0.99 if preset["ema"] > 0 else 0.0
    return values


def resolve(explicit=None):
    """The RunConfig of `explicit` ({flag: value}) over the presets its dataset and algorithm select.

    The batch sizes follow `config.derive`; λ starts at 5 for UDA on CIFAR-10 with 250 labels (App. D) unless
    --weight_init is given."""
    explicit = dict(explicit or {})
    base = RunConfig()
    dataset = explicit.get("dataset", base.data.dataset)
    kind = family(dataset)
    default_algorithm = {"2d": "pseudo_label", "text": "uda"}.get(kind, base.algorithm.algorithm)
    algorithm = explicit.get("algorithm", default_algorithm)
    uda_preset = explicit.get("uda_preset", base.algorithm.uda_preset)
    values = preset_values(dataset, algorithm, uda_preset)
    recipe = explicit.get("recipe", base.recipe)
    merged = {**{name: value_of(base, name) for name in leaves()}, "algorithm": algorithm, **values, **explicit}
    values = {**values, **recipe_values(recipe, merged), **explicit}
    if kind != "2d" and "weight_init" not in explicit:
        values["weight_init"] = 5.0 if (algorithm == "uda" and dataset == "cifar10"
                                        and values["num_labeled"] == 250) else 1.0
    return derive(with_values(base, values))
