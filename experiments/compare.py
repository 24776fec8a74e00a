r"""Base algorithm vs learned per-example weights, paired over seeds (Sec. 4.2 at CPU scale).

  python -m experiments.compare --algorithm=fixmatch --dataset=digits --seeds=5 \
      --weight_lr_grid=default --tuned_lambda_grid=0.1,0.3,1,3 --json_out=out/compare_fixmatch_digits.json \
      --plot_dir=out/plots

Every configuration flag of experiments.train applies. ours' η is chosen per seed on the final validation
loss from --weight_lr_grid (never the test set), and the reversed control runs at that η. The study is
influence_ssl.studies.compare; every run is kept in --run_cache, so a restarted comparison skips what is done.
"""
from absl import flags

from experiments import paired_flags, quiet_absl_info
from experiments.checks import run_main
from influence_ssl.runs import build
from influence_ssl.runs import flags as run_flags
from influence_ssl.runs.text import ERRORS
from influence_ssl.studies import compare, protocol

FLAGS = flags.FLAGS
paired_flags.define_plot_dir()


def main(argv):
    del argv
    quiet_absl_info()
    config = run_flags.from_flags()
    build.check_inputs(config)
    grid = protocol.weight_lr_grid(FLAGS.weight_lr_grid, config)
    tuned = paired_flags.tuned_lambda_grid()
    seeds = paired_flags.seed_list()
    json_out = paired_flags.json_out("out/compare_{algorithm}_{dataset}.json", algorithm=config.algorithm.algorithm,
                                     dataset=config.data.dataset)
    paired_flags.check_outputs(json_out)
    results = compare.run(config, seeds, paired_flags.run_cache(), grid, tuned, metric=FLAGS.metric)
    paired_flags.report(json_out, results, config,
                        f"{config.algorithm.algorithm} on {config.data.dataset}, {len(seeds)} seeds, {FLAGS.metric}",
                        compare.format_report(results), "experiments.compare_plots")


def run():
    run_main(main, *ERRORS)


if __name__ == "__main__":
    run()
