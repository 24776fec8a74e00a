"""influence_ssl: per-example weights for semi-supervised learning (Ren, Yeh, Schwing, NeurIPS 2020)."""
from setuptools import find_packages, setup

setup(
    name="influence_ssl",
    version="0.1.0",
    license="Apache-2.0",
    description=(
        "TensorFlow 2 reimplementation of 'Not All Unlabeled Data are Equal: "
        "Learning to Weight Data in Semi-supervised Learning'"
    ),
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["influence_ssl", "influence_ssl.*"]),
    install_requires=[
        # Tested with TF 2.21.0 / tf-keras 2.21.0. tf-keras must match TF's minor version.
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "tensorboard>=2.20",
        "tensorflow-datasets>=4.9,<5",
        "absl-py>=2.0",
        "numpy>=1.26",
        "scikit-learn>=1.3",
        "matplotlib>=3.8",
    ],
    extras_require={
        # The text tests run a tiny BERT, so CI needs transformers too (about 15 s more to install).
        "test": ["pytest>=8", "pytest-xdist>=3", "ruff>=0.6", "transformers>=4.57,<5"],
        # BERT on IMDb (experiments.train --dataset=imdb); v5 removed the TensorFlow models.
        "text": ["transformers>=4.57,<5"],
    },
)
