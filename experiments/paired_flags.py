"""Flags shared by the paired-comparison entry points (experiments.compare, experiments.ablate).

Defined once here, so that both modules can live in one process (a test, a notebook).
"""
from absl import flags

from influence_ssl.trainer import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 5, "Number of seeds; every method runs on each (same split, init, data order).")
flags.DEFINE_integer("first_seed", 0, "First seed; the seeds are first_seed .. first_seed + seeds - 1.")
flags.DEFINE_string("json_out", None, "Where the results JSON goes (each entry point names its default).")


def seed_list():
    """The seeds of --seeds and --first_seed; ConfigError for fewer than one."""
    if FLAGS.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {FLAGS.seeds}.")
    return list(range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds))


def json_out(default, **fields):
    """--json_out, or `default`; either with {fields} filled in."""
    return (FLAGS.json_out or default).format(**fields)
