"""SSL algorithms: each returns per-example losses and the influence inputs (see base.py)."""
from influence_ssl.ssl.base import SSLAlgorithm, SSLLosses
from influence_ssl.ssl.fixmatch import FixMatch
from influence_ssl.ssl.pseudo_label import PseudoLabel
from influence_ssl.ssl.uda import UDA

__all__ = ["SSLAlgorithm", "SSLLosses", "PseudoLabel", "UDA", "FixMatch"]
