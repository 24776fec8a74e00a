"""Datasets: in-memory SSL splits with stable unlabeled IDs, and stateless batch sampling."""
from influence_ssl.data.sampling import batch_indices
from influence_ssl.data.ssl_data import SSLData, class_balanced_split
from influence_ssl.data.synthetic import SYNTHETIC_DATASETS, make_synthetic

__all__ = ["SSLData", "class_balanced_split", "batch_indices", "SYNTHETIC_DATASETS", "make_synthetic"]
from influence_ssl.data.images import (
    HORIZONTAL_FLIP,
    IMAGE_DATASETS,
    NORMALIZATIONS,
    UDA_MEAN_STD,
    DatasetNotFoundError,
    ImageDataset,
    flips_horizontally,
    image_ssl_data,
    load_image_dataset,
    prepared_tfds_builder,
    scale_images,
    svhn_labels_as,
)
from influence_ssl.data.ood import ood_ssl_data
from influence_ssl.data.splits import ImageSplit, SplitSizeError, load_split, make_image_ssl_split, save_split

__all__ += [
    "HORIZONTAL_FLIP",
    "flips_horizontally",
    "IMAGE_DATASETS",
    "NORMALIZATIONS",
    "UDA_MEAN_STD",
    "DatasetNotFoundError",
    "ImageDataset",
    "image_ssl_data",
    "load_image_dataset",
    "prepared_tfds_builder",
    "scale_images",
    "svhn_labels_as",
    "ood_ssl_data",
    "ImageSplit",
    "SplitSizeError",
    "load_split",
    "make_image_ssl_split",
    "save_split",
]
