"""Optimizers for the per-example weights Λ."""
from influence_ssl.optimizers.masked_adam import MaskedAdam

__all__ = ["MaskedAdam"]
