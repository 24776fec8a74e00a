"""The flags of the hypergradient variants (TrainConfig fields of the same names, whose defaults
are the paper's method), defined by each entry point that offers them (experiments.image_ssl, experiments.synthetic:
never in one process, as their other flags clash)."""
from absl import flags

from influence_ssl.trainer import TrainConfig
from influence_ssl.trainer.config import HYPERGRADIENT_VARIANTS, INFLUENCE_VIEWS, NORMALIZATIONS, PARAMETRIZATIONS

FLAGS = flags.FLAGS
PAPER_METHOD = TrainConfig.defaults(HYPERGRADIENT_VARIANTS)
# Run flags, older than the variants, that also shape only the hypergradient: base and a fixed λ never read them.
HYPERGRADIENT_RUN_FLAGS = ("influence", "influence_scope")
# The paper's hypergradient (the variants' defaults, the exact inverse Hessian over the head): describe() names a
# run by what it sets away from this.
PAPER_HYPERGRADIENT = TrainConfig.defaults(HYPERGRADIENT_VARIANTS + HYPERGRADIENT_RUN_FLAGS)

_HELP = {
    "hypergradient_normalization": "Variant (none = the paper): batch or class standardises the "
    "hypergradient over the batch or within each pseudo-label class; example divides it by the example's "
    "gradient norm.",
    "weight_parametrization": "Variant (projection = the paper): λ = softplus(φ) or 2·λ0·sigmoid(φ), "
    "φ stepped.",
    "influence_view": "Variant (strong = the paper): whose features make ∇ℓ_u in the influence.",
    "influence_target_temperature": "Variant (0 = the algorithm's targets): the influence's targets "
    "are softmax(z_target / T) times the mask (with Pseudo-Label's single view, T = 1 makes ∇ℓ_u vanish).",
}
_CHOICES = {"hypergradient_normalization": NORMALIZATIONS, "weight_parametrization": PARAMETRIZATIONS,
            "influence_view": INFLUENCE_VIEWS}


def define(names=HYPERGRADIENT_VARIANTS):
    """Define the named variant flags, each with the paper's method as its default."""
    for name in names:
        if name in _CHOICES:
            flags.DEFINE_enum(name, PAPER_METHOD[name], _CHOICES[name], _HELP[name])
        else:
            flags.DEFINE_float(name, PAPER_METHOD[name], _HELP[name])


def set_away_from_paper():
    """{name: value} of the defined variant flags whose value is not the paper's method."""
    return {name: FLAGS[name].value for name in HYPERGRADIENT_VARIANTS
            if name in FLAGS and FLAGS[name].value != PAPER_METHOD[name]}


def describe(run_flags):
    """'name=value, ...' of a saved run's `flags` (a results JSON's) away from the paper's hypergradient;
    '' for the paper's method."""
    changed = {k: run_flags[k] for k, v in PAPER_HYPERGRADIENT.items() if k in run_flags and run_flags[k] != v}
    return ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))
