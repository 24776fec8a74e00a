"""Thin absl entry points of the paper's experiments and benchmarks."""
import os

# Keep TensorFlow's C++ start-up chatter out of the results tables (set the variable to override).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
