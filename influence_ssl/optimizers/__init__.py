"""Optimizers: M-Adam for the per-example weights Λ; TF1-style momentum and BERT's Adam for θ."""
from influence_ssl.optimizers.bert_adam import BertAdam
from influence_ssl.optimizers.masked_adam import MaskedAdam
from influence_ssl.optimizers.tf1_momentum import TF1Momentum

__all__ = ["BertAdam", "MaskedAdam", "TF1Momentum"]
