"""Influence-function hypergradients of a classifier (last) layer: dL_val / d(per-example weight), and the
Λ step of Alg. 1 built on them (weight_step).

Math layer: imports only the other math parts of influence_ssl (pergrad, optimizers, weights).
"""
from influence_ssl.influence.block import (
    BLOCK_METHOD_OPTIONS,
    BlockBatch,
    block_hypergradient,
    block_weight_gradients,
)
from influence_ssl.influence.hypergradient import DEFAULT_DAMPING, METHOD_OPTIONS, last_layer_weight_gradients
from influence_ssl.influence.last_layer import hessian, hessian_vector_product, per_example_gradients
from influence_ssl.influence.losses import soft_cross_entropy
from influence_ssl.influence.normalization import NORMALIZATIONS, head_gradient_norms, normalize_hypergradient
from influence_ssl.influence.solvers import (
                                             HessianFactorizationError,
                                             cholesky_solve,
                                             conjugate_gradient,
                                             neumann_solve,
                                             power_iteration,
)
from influence_ssl.influence.weight_step import (
                                                 InfluenceOptions,
                                                 MissingSSLOutput,
                                                 apply_weight_step,
                                                 block_parameters,
                                                 hypergradient,
)

__all__ = [
    "BLOCK_METHOD_OPTIONS", "BlockBatch", "block_hypergradient", "block_weight_gradients",
    "DEFAULT_DAMPING", "METHOD_OPTIONS", "HessianFactorizationError", "last_layer_weight_gradients",
    "hessian", "hessian_vector_product", "per_example_gradients",
    "NORMALIZATIONS", "head_gradient_norms", "normalize_hypergradient",
    "cholesky_solve", "conjugate_gradient", "neumann_solve", "power_iteration",
    "soft_cross_entropy",
    "InfluenceOptions", "MissingSSLOutput", "apply_weight_step", "block_parameters", "hypergradient",
]
