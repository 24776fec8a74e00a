"""The Sec. 4.1 recipe without flags: defaults, the TrainConfig and the trainer of one synthetic run.

experiments.synthetic (the Fig. 1/2 experiment) and experiments.ablate (the Sec. 4.3 studies on the
2-D problems) both build their runs here, so the two cannot drift apart. Sec. 4.1: 10 labeled,
30 validation and 1000 unlabeled examples, an MLP of two hidden layers of 100 ReLU units, Adam,
Pseudo-Label as the base algorithm. The θ values are chosen for a fast CPU run.
"""
import dataclasses

from influence_ssl.data import make_synthetic
from influence_ssl.influence import DEFAULT_DAMPING
from influence_ssl.models import two_layer_mlp
from influence_ssl.ssl import PseudoLabel
from influence_ssl.trainer import InMemorySource, TrainConfig, Trainer
from influence_ssl.trainer.config import HYPERGRADIENT_VARIANTS

DEFAULTS = dict(
    num_labeled=10, num_validation=30, num_unlabeled=1000, num_test=10000,
    steps=1000, lr=3e-3, weight_decay=1e-3,
    unlabeled_batch=1000,  # all of U: a full batch
    unlabeled_rampup=200, pl_threshold=0.0,
    inner_steps=10, weight_lr=0.01, weight_init=1.0, weight_warmup=200,
    weight_optimizer="madam", influence="exact", influence_scope="head",
    influence_damping=DEFAULT_DAMPING, binary_reparam=False,
)


def load_data(dataset, settings, seed):
    """The seeded draw of `dataset` at the sizes of `settings`."""
    return make_synthetic(dataset, seed, settings["num_labeled"], settings["num_validation"],
                          settings["num_unlabeled"], settings["num_test"])


def train_config(settings, seed, **overrides):
    """Pseudo-Label without weights (λ = weight_init for all); overrides select the method."""
    s = settings
    config = TrainConfig(
        steps=s["steps"], labeled_batch=s["num_labeled"], unlabeled_batch=s["unlabeled_batch"],
        validation_batch=s["num_validation"], inner_steps=s["inner_steps"],
        weight_lr=s["weight_lr"], weight_init=s["weight_init"], weight_warmup=s["weight_warmup"],
        weighting="none", weight_optimizer=s["weight_optimizer"], influence=s["influence"],
        influence_scope=s["influence_scope"], influence_damping=s["influence_damping"],
        unlabeled_rampup=s["unlabeled_rampup"], binary_reparam=s["binary_reparam"], optimizer="adam",
        lr=s["lr"], weight_decay=s["weight_decay"], seed=seed,
        # An evaluation (validation and test accuracy into results["history"]) every eval_every steps.
        log_every=s.get("eval_every", s["steps"]), eval_every=s.get("eval_every", s["steps"]),
        checkpoint_every=s["steps"],
        # A hypergradient variant only where settings name it: not in DEFAULTS, so that the paper's
        # method keeps the settings (and the ablation cache keys) it had before them.
        **{name: s[name] for name in HYPERGRADIENT_VARIANTS if name in s})
    return dataclasses.replace(config, **overrides)


def make_trainer(settings, data, config, callbacks=()):
    """The model's initialisation and the data order depend only on config.seed."""
    source = InMemorySource(data, config.labeled_batch, config.unlabeled_batch, config.validation_batch,
                            seed=config.seed)
    return Trainer(two_layer_mlp(num_classes=data.num_classes, seed=config.seed),
                   PseudoLabel(settings["pl_threshold"]), source, config, callbacks=callbacks, verbose=False)
