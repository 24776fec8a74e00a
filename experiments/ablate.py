r"""The ablations of Sec. 4.3, each one command with the paired protocol of experiments.compare.

  python -m experiments.ablate --study=influence --dataset=digits --seeds=5 --json_out=out/ablate_influence_digits.json

Studies: influence (Fig. 3), weighting (Fig. 4 left), optimizer (Fig. 4 centre), validation_size (Fig. 4 right),
sensitivity (Table 3), recipe (the paper's Alg. 1 against the authors' code, switch by switch; e.g.
--study=recipe --dataset=digits --algorithm=fixmatch --augment=cta); see influence_ssl.studies.ablation. Every
study also runs the base algorithm and ours with the hypergradient reversed on the same seeds. The algorithm
defaults to UDA on images, as in the paper ("All the experiments are conducted using ... the UDA baseline"); the
2-D problems run Pseudo-Label. Every configuration flag of experiments.train applies; every run is kept in
--run_cache.
"""

from absl import flags

from experiments import paired_flags, quiet_absl_info
from experiments.checks import run_main
from influence_ssl.runs import build
from influence_ssl.runs import flags as run_flags
from influence_ssl.runs.config import family
from influence_ssl.runs.text import ERRORS
from influence_ssl.studies import ablation, protocol
from influence_ssl.trainer import ConfigError

FLAGS = flags.FLAGS
paired_flags.define_plot_dir()
flags.DEFINE_enum("study", "influence", ablation.STUDIES, "Which ablation of Sec. 4.3.")
paired_flags.define_label_counts()  # weighting: default 20,50,100 on digits, 4,10,30 on the 2-D problems
flags.DEFINE_list("validation_sizes", [], "validation_size: sizes (default: 20,50,100,200,400 digits; "
                  "10,30,100,300 2-D; the paper: 64 ... 5000).")
flags.DEFINE_list("weight_lr_grids", [], "optimizer: per-optimizer η grids as opt:η1/η2/..., e.g. "
                  "madam:0.01/0.04/0.1 (default: the grids of influence_ssl.studies.protocol).")


def weight_lr_grids():
    grids = {}
    for item in FLAGS.weight_lr_grids:
        name, _, values = item.partition(":")
        try:
            grid = protocol.parse_grid(values.split("/"), "weight_lr_grids", strict=True)
        except ConfigError:
            grid = ()
        if name not in ("madam", "adam", "sgd") or not grid:
            raise ConfigError(f"--weight_lr_grids entries are opt:η1/η2/... with opt in madam, adam, sgd and η > 0, "
                              f"got {item!r}.")
        grids[name] = tuple(grid)
    return grids


def sizes(flag):
    values = protocol.parse_grid(FLAGS[flag].value, flag, minimum=1, kind=int)
    return values or None


def main(argv):
    del argv
    quiet_absl_info()
    explicit = run_flags.explicit_values()
    kind = family(explicit.get("dataset", "digits"))
    # Sec. 4.3 runs UDA; a validation curve point every 50 steps on the 2-D problems.
    defaults = {"eval_every": 50} if kind == "2d" else {"algorithm": "uda"}
    config = run_flags.from_flags(defaults=defaults)
    build.check_inputs(config)
    seeds = paired_flags.seed_list()
    options = dict(label_counts=sizes("label_counts"), validation_sizes=sizes("validation_sizes"),
                   weight_lr_grids=weight_lr_grids(), tuned_lambda_grid=paired_flags.tuned_lambda_grid() or None)
    json_out = paired_flags.json_out("out/ablate_{study}_{dataset}.json", study=FLAGS.study,
                                     dataset=config.data.dataset)
    paired_flags.check_outputs(json_out)
    results = ablation.run(FLAGS.study, config, seeds, paired_flags.run_cache(), **options)
    paired_flags.report(json_out, results, config,
                        f"{FLAGS.study} ablation, {config.algorithm.algorithm} on {config.data.dataset}",
                        ablation.format_report(results),
                        "experiments.ablation_plots")


def run():
    run_main(main, *ERRORS)


if __name__ == "__main__":
    run()
