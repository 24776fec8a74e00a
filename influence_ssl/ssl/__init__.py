"""SSL algorithms: each returns per-example losses and the influence inputs (see base.py)."""
from influence_ssl.ssl.base import SSLAlgorithm, SSLLosses
from influence_ssl.ssl.fixmatch import FixMatch
from influence_ssl.ssl.pseudo_label import PseudoLabel
from influence_ssl.ssl.uda import UDA
from influence_ssl.ssl.weighting import (
    FlexMatchThresholds,
    FreeMatchThresholds,
    SoftMatchWeighting,
    UASDFilter,
    WeightingRule,
)

__all__ = ["SSLAlgorithm", "SSLLosses", "PseudoLabel", "UDA", "FixMatch", "WeightingRule", "SoftMatchWeighting",
           "FreeMatchThresholds", "FlexMatchThresholds", "UASDFilter"]
