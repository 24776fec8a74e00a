"""Influence-function hypergradients of a classifier (last) layer: dL_val / d(per-example weight).

Math layer: imports nothing else from influence_ssl.
"""
from influence_ssl.influence.block import (
    BLOCK_METHOD_OPTIONS,
    BlockBatch,
    block_hypergradient,
    block_weight_gradients,
)
from influence_ssl.influence.hypergradient import DEFAULT_DAMPING, METHOD_OPTIONS, last_layer_weight_gradients
from influence_ssl.influence.last_layer import hessian, hessian_vector_product, per_example_gradients
from influence_ssl.influence.normalization import NORMALIZATIONS, head_gradient_norms, normalize_hypergradient
from influence_ssl.influence.solvers import (
                                             HessianFactorizationError,
                                             cholesky_solve,
                                             conjugate_gradient,
                                             neumann_solve,
                                             power_iteration,
)

__all__ = [
    "BLOCK_METHOD_OPTIONS", "BlockBatch", "block_hypergradient", "block_weight_gradients",
    "DEFAULT_DAMPING", "METHOD_OPTIONS", "HessianFactorizationError", "last_layer_weight_gradients",
    "hessian", "hessian_vector_product", "per_example_gradients",
    "NORMALIZATIONS", "head_gradient_norms", "normalize_hypergradient",
    "cholesky_solve", "conjugate_gradient", "neumann_solve", "power_iteration",
]
