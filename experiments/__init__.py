"""Thin absl entry points of the paper's experiments and benchmarks.

TensorFlow 2.21 writes its C++ start-up messages (oneDNN notices, and on a machine without a GPU the
CUDA probe's "failed call to cuInit ... UNKNOWN ERROR (303)") straight to stderr, before any log level
applies. They are noise in front of every results table, so the entry points import TensorFlow with
stderr silenced, raise TF's C++ log level to 3 and absl's Python verbosity to WARNING. `--tf_logs`
shows all of them again. A Python error during the import is still printed: stderr is restored before
it propagates; real failures reach the user as Python exceptions.
"""
import os
import sys

from absl import flags

flags.DEFINE_bool("tf_logs", False, "Show TensorFlow's C++ start-up logs and absl INFO lines (hidden by default).")

_SHOW_TF_LOGS = any(arg in ("--tf_logs", "--tf_logs=true", "--tf_logs=True", "--tf_logs=1") for arg in sys.argv)


def _import_tensorflow_quietly():
    if _SHOW_TF_LOGS or "tensorflow" in sys.modules:
        return
    # 3 hides TF's C++ ERROR-level notices too (e.g. "oneDNN supports DT_INT32 only on ... AVX-512").
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs here
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_absl_info():
    """Call at the start of main (after absl has parsed the flags): no absl INFO lines (e.g. TF's
    checkpoint sharding notices) between the progress lines, unless --tf_logs."""
    if not _SHOW_TF_LOGS:
        from absl import logging

        logging.set_verbosity(logging.WARNING)


_import_tensorflow_quietly()


def define_markdown():
    """--markdown of the entry points that print a table (experiments.report, .variants_table): defined once per
    process, so that both can live in one (a test, a notebook)."""
    if "markdown" not in flags.FLAGS:
        flags.DEFINE_string("markdown", None, "Also write the table(s) as Markdown here (the report: with the "
                            "ablations' PNGs beside it).")
