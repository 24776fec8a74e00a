r"""Regenerate every CPU-scale result of the project: one resumable command.

  python -m experiments.reproduce --list                 # the studies, their estimated time and status
  python -m experiments.reproduce                        # run all that are not done, two at a time
  python -m experiments.reproduce --only=ood,recipe_moons
  python -m experiments.reproduce --quick --only=synthetic_moons   # 2 seeds, short runs, into out/quick/

Each study writes results/<group>/<name>.json (with its provenance: commit, command, config, versions, device,
threads, date) and its pictures beside it; every run goes to the run cache results/runs/, so an interrupted
command restarts where it stopped. A study whose JSON already holds the seeds asked for is skipped
(--rewrite: write it again, from the cache); a study of more than 5 seeds runs as shards of seeds side by side,
then writes its JSON from the cache. Each study's output goes to out/logs/<name>.log; the progress
lines (a seed finished, a study finished, the time left) come here. The catalogue is
influence_ssl.studies.reproduce.
"""
import sys

from absl import flags

from experiments import quiet_absl_info
from experiments.checks import run_main
from influence_ssl.runs.layout import RESULTS_DIR
from influence_ssl.studies import reproduce
from influence_ssl.trainer import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_bool("list", False, "Print the studies with their estimated time on 2 cores and status, and stop.")
flags.DEFINE_list("only", [], f"Studies or groups to run ({', '.join(reproduce.GROUPS)}); default: all.")
flags.DEFINE_bool("quick", False, f"A smoke test: {reproduce.QUICK_SEEDS} seeds and short runs, into "
                  f"{reproduce.QUICK_DIR}/ (not a result).")
flags.DEFINE_integer("seeds", None, f"Seeds per study (default {reproduce.FULL_SEEDS}; with --quick "
                     f"{reproduce.QUICK_SEEDS}).")
flags.DEFINE_integer("lanes", 2, "Studies (or shards of one study's seeds) run side by side, one TF thread each.")
flags.DEFINE_bool("rewrite", False, "Run the studies that are done too (their runs come from the cache).")


def main(argv):
    del argv
    quiet_absl_info()
    try:
        entries = reproduce.select(FLAGS.only)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    seeds = FLAGS.seeds or (reproduce.QUICK_SEEDS if FLAGS.quick else reproduce.FULL_SEEDS)
    if seeds < 1 or FLAGS.lanes < 1:
        raise ConfigError(f"--seeds and --lanes must be >= 1, got {seeds} and {FLAGS.lanes}.")
    root = reproduce.QUICK_DIR if FLAGS.quick else RESULTS_DIR
    print(reproduce.listing(entries, root, seeds, FLAGS.quick))
    if FLAGS.list:
        return
    codes = reproduce.run_all(entries, root, seeds, FLAGS.quick, lanes=FLAGS.lanes, rewrite=FLAGS.rewrite,
                              log=lambda line: print(line, flush=True))
    failed = [name for name, code in codes.items() if code != 0]
    if failed:
        print(f"error: {len(failed)} stud{'y' if len(failed) == 1 else 'ies'} failed: {', '.join(failed)} "
              "(their logs: out/logs/NAME.log)", file=sys.stderr)
        sys.exit(1)


def run():
    run_main(main)


if __name__ == "__main__":
    run()
