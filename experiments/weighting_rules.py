r"""The field's weighting rules (SoftMatch, FreeMatch, FlexMatch, UASD) against learned per-example λ, paired.

  python -m experiments.weighting_rules --dataset=digits --num_labeled=20 --seeds=10 \
      --json_out=out/weighting_rules_digits.json --plot_dir=out/plots

FixMatch (default) or Pseudo-Label on images; every configuration flag of experiments.train applies. ours' η is
chosen per seed on validation from --weight_lr_grid (default: the grid of --weight_optimizer), FlexMatch's τ
from --flexmatch_confidence_grid, UASD's threshold from --uasd_threshold_grid, SoftMatch's and FreeMatch's EMA
momentum from --weighting_ema_grid, the tuned λ from --tuned_lambda_grid. The study is
influence_ssl.studies.weighting_rules; every run is kept in --run_cache.
"""

from absl import flags

from experiments import paired_flags, quiet_absl_info
from experiments.checks import run_main
from influence_ssl.runs import build
from influence_ssl.runs import flags as run_flags
from influence_ssl.runs.text import ERRORS
from influence_ssl.studies import protocol, weighting_rules
from influence_ssl.studies.protocol import DEFAULT_TUNED_LAMBDA_GRID
from influence_ssl.trainer import ConfigError

FLAGS = flags.FLAGS
paired_flags.define_plot_dir()
flags.DEFINE_list("uasd_threshold_grid", list(map(str, weighting_rules.DEFAULT_UASD_THRESHOLDS)),
                  "UASD's thresholds to choose from per seed on validation.")
flags.DEFINE_list("flexmatch_confidence_grid", list(map(str, weighting_rules.DEFAULT_FLEXMATCH_CONFIDENCES)),
                  "FlexMatch's τ to choose from per seed on validation.")
flags.DEFINE_list("weighting_ema_grid", list(map(str, weighting_rules.DEFAULT_WEIGHTING_EMAS)),
                  "SoftMatch's and FreeMatch's EMA momentum m to choose from per seed on validation.")


def unit_grid(flag, what="thresholds in [0, 1]", top_open=False):
    """A grid of numbers in [0, 1] (or [0, 1)); ConfigError (one line) otherwise."""
    grid = protocol.parse_grid(FLAGS[flag].value, flag)
    if not grid or max(grid) > 1 or (top_open and max(grid) >= 1):
        raise ConfigError(f"--{flag} must hold {what}, got {','.join(FLAGS[flag].value)}.")
    return grid


def main(argv):
    del argv
    quiet_absl_info()
    config = run_flags.from_flags(defaults={"algorithm": "fixmatch"})
    weighting_rules.check_base(config)
    build.check_inputs(config)
    lr_grid = protocol.weight_lr_grid(FLAGS.weight_lr_grid if FLAGS["weight_lr_grid"].present else ["default"], config)
    grids = dict(tuned_lambda_grid=paired_flags.tuned_lambda_grid(DEFAULT_TUNED_LAMBDA_GRID),
                 uasd_thresholds=unit_grid("uasd_threshold_grid"),
                 flexmatch_confidences=unit_grid("flexmatch_confidence_grid"),
                 weighting_emas=unit_grid("weighting_ema_grid", "momenta in [0, 1)", top_open=True))
    seeds = paired_flags.seed_list()
    json_out = paired_flags.json_out("out/weighting_rules_{dataset}.json", dataset=config.data.dataset)
    paired_flags.check_outputs(json_out)
    results = weighting_rules.run(config, seeds, paired_flags.run_cache(), lr_grid, metric=FLAGS.metric, **grids)
    paired_flags.report(json_out, results, config,
                        f"{config.algorithm.algorithm} on {config.data.dataset}, {config.data.num_labeled} labels, "
                        f"{len(seeds)} seeds, {FLAGS.metric}", weighting_rules.format_report(results),
                        "experiments.weighting_rules_plots")


def run():
    run_main(main, *ERRORS)


if __name__ == "__main__":
    run()
