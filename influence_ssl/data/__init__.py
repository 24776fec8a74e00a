"""Datasets: in-memory SSL splits with stable unlabeled IDs, and stateless batch sampling."""
from influence_ssl.data.sampling import batch_indices
from influence_ssl.data.ssl_data import SSLData, class_balanced_split
from influence_ssl.data.synthetic import SYNTHETIC_DATASETS, make_synthetic

__all__ = ["SSLData", "class_balanced_split", "batch_indices", "SYNTHETIC_DATASETS", "make_synthetic"]
