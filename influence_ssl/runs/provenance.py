"""Provenance: what produced a result, written by the run itself beside every result it saves.

{"commit", "command", "config", "versions", "device", "threads", "date"}; `commit` is the git commit of the
package's checkout with "-dirty" when its tracked files differ from it (None outside a git checkout). Changes
under results/ do not count: a result regenerated there is output, not a change to what made it.
"""
import datetime
import os
import platform
import shlex
import subprocess
import sys

import numpy as np
import tensorflow as tf

import influence_ssl
from influence_ssl.runs.layout import RESULTS_DIR

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(influence_ssl.__file__)))


OUTPUT_DIRS = (RESULTS_DIR,)  # tracked, but written by the runs themselves


def git_commit(root=PACKAGE_ROOT):
    """HEAD of the checkout at `root` ('<sha>-dirty' with uncommitted changes to tracked files outside
    OUTPUT_DIRS), or None."""
    try:
        sha = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        pathspec = ["--", ".", *(f":(exclude){d}" for d in OUTPUT_DIRS)]
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", *pathspec],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def versions():
    out = {"python": platform.python_version(), "influence_ssl": influence_ssl.__version__,
           "tensorflow": tf.__version__, "numpy": np.__version__}
    for name in ("tf_keras", "scipy", "sklearn", "transformers"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "?")
    return out


def cpu_model(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name (Linux's cpuinfo; else platform.processor(), or None): float results differ in their
    last digits from one CPU to another, so a result names the one it was made on."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def device():
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu_model(),
            "cpus": os.cpu_count(), "gpus": gpus}


def threads():
    """TensorFlow's thread pools as set (0: TensorFlow's choice) and the environment that sets them."""
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            **{k: os.environ[k] for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
               if k in os.environ}}


def command(argv=None):
    """The full command line of this process, as one shell-quoted string."""
    argv = sys.argv if argv is None else argv
    program = "python -m " + _module_name() if argv and argv[0].endswith(".py") and _module_name() else argv[0]
    return " ".join([program] + [shlex.quote(a) for a in argv[1:]])


def _module_name():
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None)


def provenance(config=None):
    """The provenance object of a result made now by this process (config: a dict, or None)."""
    return {"commit": git_commit(), "command": command(), "config": config, "versions": versions(),
            "device": device(), "threads": threads(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
