r"""The base algorithm's accuracy against the number of labels (where is there headroom?), paired over seeds.

  python -m experiments.label_curve --dataset=digits --algorithm=fixmatch --label_counts=10,20,40,80,160 \
      --seeds=10 --json_out=out/label_curve_digits.json --plot_dir=out/plots

Every configuration flag of experiments.train applies (but --num_labeled, which --label_counts sets); learned
weights are off. The study is influence_ssl.studies.label_curve; every run is kept in --run_cache.
"""

from absl import flags

from experiments import paired_flags, quiet_absl_info
from experiments.checks import run_main
from influence_ssl.runs import build
from influence_ssl.runs import flags as run_flags
from influence_ssl.runs.text import ERRORS
from influence_ssl.studies import label_curve, protocol
from influence_ssl.trainer import ConfigError

FLAGS = flags.FLAGS
paired_flags.define_plot_dir()
paired_flags.define_label_counts()  # default: label_curve.DEFAULT_LABEL_COUNTS


def main(argv):
    del argv
    quiet_absl_info()
    if FLAGS["num_labeled"].present:
        raise ConfigError("--label_counts sets the labeled-set sizes: remove --num_labeled.")
    config = run_flags.from_flags()
    build.check_inputs(config)
    counts = (protocol.parse_grid(FLAGS.label_counts, "label_counts", minimum=1, kind=int)
              or list(label_curve.DEFAULT_LABEL_COUNTS))
    seeds = paired_flags.seed_list()
    json_out = paired_flags.json_out("out/label_curve_{dataset}.json", dataset=config.data.dataset)
    paired_flags.check_outputs(json_out)
    results = label_curve.run(config, seeds, paired_flags.run_cache(), counts, metric=FLAGS.metric)
    paired_flags.report(json_out, results, config,
                        f"base {config.algorithm.algorithm} on {config.data.dataset} against labels, "
                        f"{len(seeds)} seeds, {FLAGS.metric}", label_curve.format_report(results),
                        "experiments.label_curve_plots")


def run():
    run_main(main, *ERRORS)


if __name__ == "__main__":
    run()
