"""Optimizers: M-Adam for the per-example weights Λ, TF1-style momentum for θ."""
from influence_ssl.optimizers.masked_adam import MaskedAdam
from influence_ssl.optimizers.tf1_momentum import TF1Momentum

__all__ = ["MaskedAdam", "TF1Momentum"]
