"""The optimizers a TrainConfig names: θ's (with its learning-rate schedule) and Λ's."""
import tf_keras as keras

from influence_ssl.optimizers import BertAdam, MaskedAdam, TF1Momentum
from influence_ssl.trainer.schedules import ThetaSchedule


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
    """The optimizer of Λ: M-Adam (the paper's, or as the authors' code runs it), or plain Adam / SGD for
    Fig. 4 (centre)."""
    if config.weight_optimizer == "madam":
        return MaskedAdam(config.weight_lr, epsilon=config.madam_epsilon,
                          per_entry_steps=config.madam_step_count == "per_example",
                          mask_zero_gradients=config.madam_rows == "nonzero")
    if config.weight_optimizer == "adam":
        return keras.optimizers.Adam(config.weight_lr, weight_decay=None)
    return keras.optimizers.SGD(config.weight_lr)
