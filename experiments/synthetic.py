r"""The synthetic experiments of Sec. 4.1 (Fig. 1 and 2): Pseudo-Label with learned per-example weights.

  python -m experiments.synthetic --dataset=moons --seeds=10 --first_seed=0 \
      --json_out=out/synthetic_moons.json --plot_dir=out/plots

Runs supervised (λ = 0), pseudo_label (fixed λ), pseudo_label_tuned (λ chosen on validation from
--tuned_lambda_grid, default 0.1,0.3,1,3), ours and ours_reversed on every seed (influence_ssl.studies.synthetic),
and draws Fig. 1/2 for the first seed. Every configuration flag of experiments.train applies (--dataset
defaults to moons here); every run is kept in --run_cache.
"""
import os

import numpy as np
from absl import flags

from experiments import diagnostics, paired_flags, quiet_absl_info
from experiments.checks import run_main, writable_dir
from influence_ssl.data import SYNTHETIC_DATASETS
from influence_ssl.runs import build
from influence_ssl.runs import flags as run_flags
from influence_ssl.studies import protocol, synthetic
from influence_ssl.trainer import ConfigError

FLAGS = flags.FLAGS
paired_flags.define_plot_dir()
flags.DEFINE_string("runs_dir", "", "If set, ours' per-example record of every seed goes to RUNS_DIR/seed_<s>/ "
                    "(read by experiments.inspect_weights).")
flags.DEFINE_list("plot_iterations", ["1", "10", "30"], "Λ iterations drawn in Fig. 1/2 (plus final).")


class Snapshots:
    """Callback: λ and the model's class-1 probability on a grid at chosen Λ iterations."""

    def __init__(self, iterations, grid):
        self.iterations, self.grid, self.frames = set(iterations), grid, {}

    def __call__(self, trainer, k):
        if k in self.iterations:
            self.frames[k] = self.capture(trainer)

    def capture(self, trainer):
        logits = trainer.logits(self.grid)
        return {"lambda": trainer.weights.to_numpy().copy(),
                "grid_prob": 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1])),
                "unlabeled_pred": trainer.predict(trainer.source.data.unlabeled_x)}


def ours_run(config, seed, callbacks=(), data=None):
    """ours on `seed` again, with callbacks (the study's run of it is the same configuration); `data`: the
    seed's split if already loaded."""
    config = config.replace(seed=seed, weighting="per_example")
    data = data if data is not None else build.load_data(config)[0]
    trainer = build.make_trainer(config, data, verbose=False, callbacks=callbacks)
    trainer.run()
    return trainer, data


def draw_figures(config, seed):
    from experiments import synthetic_plots

    data = build.load_data(config.replace(seed=seed))[0]
    iterations = protocol.parse_grid(FLAGS.plot_iterations, "plot_iterations", kind=int)
    snapshots = Snapshots(iterations, synthetic_plots.grid_points(data))
    trainer, data = ours_run(config, seed, [snapshots], data)
    snapshots.frames["final"] = snapshots.capture(trainer)
    extras = {"lambda": trainer.weights.to_numpy(), "final_pred": trainer.predict(data.unlabeled_x),
              "logits": trainer.logits(data.unlabeled_x)}
    return synthetic_plots.draw_all(data, snapshots, extras, FLAGS.plot_dir)


def save_records(config, seeds):
    for seed in seeds:
        trainer, data = ours_run(config, seed)
        run_dir = os.path.join(FLAGS.runs_dir, f"seed_{seed}")
        os.makedirs(run_dir, exist_ok=True)
        diagnostics.save(os.path.join(run_dir, diagnostics.RECORD_NAME),
                         diagnostics.collect(trainer, data, seed, data.unlabeled_x, kind="points"))


def main(argv):
    del argv
    quiet_absl_info()
    config = run_flags.from_flags(defaults={"dataset": "moons"})
    if config.data.dataset not in SYNTHETIC_DATASETS:
        raise ConfigError(f"--dataset={config.data.dataset} is not a 2-D problem of Sec. 4.1 "
                          f"({', '.join(SYNTHETIC_DATASETS)}); use experiments.compare.")
    seeds = paired_flags.seed_list()
    tuned = paired_flags.tuned_lambda_grid(protocol.DEFAULT_TUNED_LAMBDA_GRID)
    if not tuned:
        raise ConfigError("--tuned_lambda_grid must name at least one λ here (pseudo_label_tuned).")
    protocol.parse_grid(FLAGS.plot_iterations, "plot_iterations", kind=int)
    json_out = paired_flags.json_out("out/synthetic_{dataset}.json", dataset=config.data.dataset)
    writable_dir(os.path.dirname(os.path.abspath(json_out)), "--json_out")
    for name in ("plot_dir", "runs_dir"):
        if FLAGS[name].value:
            writable_dir(FLAGS[name].value, f"--{name}")
    results = synthetic.run(config, seeds, paired_flags.run_cache(), tuned)
    protocol.write_json(json_out, results, config)
    print(f"\nSynthetic '{config.data.dataset}', {len(seeds)} seeds, test accuracy:")
    print(synthetic.format_report(results))
    print(f"\nresults: {json_out}")
    if FLAGS.runs_dir:
        save_records(config, seeds)
    if FLAGS.plot_dir:
        print("pictures: " + ", ".join(draw_figures(config, seeds[0])))


def run():
    run_main(main)


if __name__ == "__main__":
    run()
