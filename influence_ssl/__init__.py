"""influence_ssl: learn one weight per unlabeled example by influence-function hypergradients.

Reimplements Ren, Yeh, Schwing, "Not All Unlabeled Data are Equal: Learning to Weight
Data in Semi-supervised Learning" (NeurIPS 2020) in TensorFlow 2 with Keras 2 (tf_keras).

Layering (dependencies point one way, checked by tests/test_layering.py):
  math:     pergrad, influence, optimizers, weights   (import nothing else of the package)
  ssl:      the SSL algorithms                          (import math only)
  models, data                                          (independent of each other)
  trainer:  joins them
"""
import os

# transformers' TensorFlow models and tf.keras must resolve to Keras 2 (tf_keras), never Keras 3.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
