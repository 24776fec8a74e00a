"""Flags of the paired studies (experiments.compare, .synthetic, .ablate): seeds, outputs, the run cache.

Defined once here, so that the entry points can live in one process (a test, a notebook).
"""
import importlib
import os

from absl import flags

from influence_ssl.runs import flags as run_flags
from influence_ssl.studies import protocol
from influence_ssl.studies.runner import RunCache

FLAGS = flags.FLAGS
run_flags.define()
flags.DEFINE_integer("seeds", 10, "Number of seeds (accuracy claims need at least 10); every method runs on each "
                     "(same split, init, data order).")
flags.DEFINE_integer("first_seed", 0, "First seed; the seeds are first_seed .. first_seed + seeds - 1.")
flags.DEFINE_string("json_out", None, "Where the results JSON goes (each entry point names its default).")
flags.DEFINE_string("run_cache", "out/runs", "One small record per finished run, named by the hash of its "
                    "configuration: a restarted study, or another study that needs the same run, reads it instead "
                    "of training again.")
flags.DEFINE_list("tuned_lambda_grid", None, "Also run the base algorithm with one fixed λ for every unlabeled "
                  "example, chosen per seed from this grid on validation (e.g. 0.1,0.3,1,3; experiments.synthetic "
                  "runs 0.1,0.3,1,3 unless told otherwise, experiments.compare none).")
flags.DEFINE_list("weight_lr_grid", [], "Λ step sizes η to choose from per seed on validation: numbers, or "
                  "'default' (the grid of --weight_optimizer; empty: --weight_lr only).")
flags.DEFINE_enum("metric", "test_accuracy", ["test_accuracy", "median_last20_test_accuracy"],
                  "Per-run number compared: the final test accuracy, or the median of the last 20 evaluations.")


def define_plot_dir():
    """--plot_dir of the studies that draw (experiments.synthetic, .ablate): defined once per process."""
    if "plot_dir" not in FLAGS:
        flags.DEFINE_string("plot_dir", "out/plots", "Where the pictures go ('' for none).")


def define_label_counts():
    """--label_counts of the studies over labeled-set sizes (experiments.ablate --study=weighting,
    experiments.label_curve): defined once per process, empty for the entry point's own default."""
    if "label_counts" not in FLAGS:
        flags.DEFINE_list("label_counts", [], "Labeled-set sizes (empty: the entry point's default).")


def check_outputs(json_out):
    """--json_out's folder and --plot_dir (when set) writable, or one line, before anything is trained."""
    from experiments.checks import writable_dir

    writable_dir(os.path.dirname(os.path.abspath(json_out)), "--json_out")
    if FLAGS.plot_dir:
        writable_dir(FLAGS.plot_dir, "--plot_dir")


def report(json_out, results, config, heading, text, plots_module=None):
    """Write the study's JSON (with provenance), print `heading` and its report `text`, draw its picture with
    `plots_module` (imported only then) into --plot_dir, named as the JSON (out/x.json -> PLOT_DIR/x.png), and
    say where everything went."""
    protocol.write_json(json_out, results, config)
    print(f"\n{heading}:")
    print(text)
    if plots_module is not None and FLAGS.plot_dir:
        plots = importlib.import_module(plots_module)
        print(f"picture: {plots.draw(results, picture_path(json_out))}")
    print(f"results: {json_out}")


def picture_path(json_out):
    """The picture of the study whose JSON is `json_out`: PLOT_DIR/<its name>.png."""
    return os.path.join(FLAGS.plot_dir, os.path.splitext(os.path.basename(json_out))[0] + ".png")


def tuned_lambda_grid(default=()):
    """--tuned_lambda_grid, or `default` when it is not given."""
    values = FLAGS.tuned_lambda_grid if FLAGS.tuned_lambda_grid is not None else list(default)
    return protocol.parse_grid(values, "tuned_lambda_grid")


def seed_list():
    return protocol.seed_list(FLAGS.seeds, FLAGS.first_seed)


def json_out(default, **fields):
    """--json_out, or `default`; either with {fields} filled in."""
    return (FLAGS.json_out or default).format(**fields)


def run_cache():
    from experiments.checks import writable_dir

    return RunCache(writable_dir(FLAGS.run_cache, "--run_cache"))
