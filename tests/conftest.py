"""Shared helpers: entry points run in-process on parsed flags (fast), or as real processes (end to end)."""
import contextlib
import importlib
import io
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several test processes on few cores (the README runs two on CI's two): one intra-op thread each, or their
    # thread pools spin against each other (the entry points that tests start inherit it).
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module, args, timeout=300, env=None):
    """`python -m module args...` from the repository root: the CompletedProcess (text stdout, stderr). The
    process does not inherit TF_CPP_MIN_LOG_LEVEL: hiding TensorFlow's C++ start-up logs is the entry point's job
    (experiments/__init__.py), and the tests check that it does."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_one_line_error(result, message):
    """A refused command line, end to end: exit code 2, one stderr line `error: ...` holding `message`, no
    traceback, none of TensorFlow's C++ start-up logs."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "cuInit" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr[-3000:]


def entry_point(module):
    """The module of an entry point (`experiments.train`, ...), imported: its flags are defined in absl's FLAGS."""
    return importlib.import_module(module)


@contextlib.contextmanager
def parsed(module, args):
    """absl's FLAGS parsed from `args` as `python -m module args` would, restored afterwards (flagsaver); yields
    the argv that absl leaves to main (the program and the positional arguments)."""
    from absl import flags
    from absl.testing import flagsaver

    entry_point(module)
    with flagsaver.flagsaver():
        flags.FLAGS.unparse_flags()
        argv = flags.FLAGS([module, *map(str, args)])
        try:
            yield argv
        finally:
            flags.FLAGS.unparse_flags()


def refusal(module, args, errors=None, one_line=True):
    """The message with which `module`'s main refuses `args`, run in-process: the exception's text. Fails if main
    does not raise one of `errors` (default: ConfigError and the entry point's input errors) or, with one_line, if
    the message is more than one line."""
    from influence_ssl.runs.text import ERRORS
    from influence_ssl.trainer import ConfigError

    errors = errors or (ConfigError, *ERRORS)
    with parsed(module, args) as argv:
        with pytest.raises(errors) as caught:
            entry_point(module).main(argv)
    message = str(caught.value)
    assert message and (not one_line or "\n" not in message), message
    return message


def run_main(module, args):
    """`module`'s main run in-process on `args`; its stdout as text (what a user reads)."""
    out = io.StringIO()
    with parsed(module, args) as argv, contextlib.redirect_stdout(out):
        entry_point(module).main(argv)
    return out.getvalue()


def fresh_flags(args=()):
    """A new FlagValues holding only the configuration flags (influence_ssl.runs.flags), parsed from `args`."""
    from absl import flags

    from influence_ssl.runs import flags as run_flags

    flag_values = flags.FlagValues()
    run_flags.define(flag_values)
    flag_values(["test", *map(str, args)])
    return flag_values


def config_of(args=(), defaults=None):
    """The checked RunConfig of a command line of configuration flags (ConfigError if it cannot run)."""
    from influence_ssl.runs import flags as run_flags

    return run_flags.from_flags(fresh_flags(args), defaults=defaults)


# ----- a crash in the middle of a run (the resume tests)
class Killed(Exception):
    """A run stopped on purpose."""


def kill_at(step):
    """A Trainer callback `cb(trainer, k)` (run after each Λ step) that stops the run when `step` θ steps are
    done, as a crash would."""

    def kill(trainer, k):
        if int(trainer.step.numpy()) == step:
            raise Killed()

    return kill


# ----- a fake training: influence_ssl.runs.execute.run and build.load_data replaced (studies in milliseconds)
def record(validation_loss, test_accuracy=0.5):
    """A study's record of one finished run (influence_ssl.runs.execute.record_of)."""
    return {"test_accuracy": test_accuracy, "validation_accuracy": 0.5, "validation_loss": validation_loss,
            "curve_steps": [10, 20], "curve_validation_error": [0.6, 0.5], "lambda_mean": 1.0,
            "lambda_zero_fraction": 0.0, "lambda_step_abs_mean": 0.01, "seconds": 0.1}


def arrays(seed=0, n=40, ood=False):
    """Per-example arrays of one run (influence_ssl.runs.execute.weight_arrays)."""
    rng = np.random.default_rng(seed)
    return {"lambda": rng.uniform(0, 2, n), "counts": rng.integers(0, 3, n), "wrong": np.arange(n) % 3 == 0,
            "ood": (np.arange(n) % 2 == 0) if ood else np.zeros(n, bool), "confidence": rng.uniform(0.1, 1, n),
            "rule_weight": np.ones(n)}


class FakeTraining:
    """Stands in for execute.run and build.load_data: `rule(config)` gives each run's (record, arrays); every
    training and every split loaded is counted."""

    def __init__(self, rule):
        self.rule, self.trained, self.loaded = rule, [], []

    def run(self, config, data, callbacks=()):
        self.trained.append(config)
        return self.rule(config)

    def load_data(self, config):
        self.loaded.append(config.data)
        return object(), None, {}


@pytest.fixture()
def fake_training(monkeypatch):
    """install(rule) -> FakeTraining, in place of the real training for this test."""
    from influence_ssl.runs import build, execute

    def install(rule=lambda config: (record(0.5), arrays(config.seed))):
        fake = FakeTraining(rule)
        monkeypatch.setattr(execute, "run", fake.run)
        monkeypatch.setattr(build, "load_data", fake.load_data)
        return fake

    return install
