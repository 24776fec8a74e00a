r"""The ablations of Sec. 4.3, each one command with the paired protocol of experiments.compare.

  python -m experiments.ablate --study=influence --dataset=digits --seeds=5 --json_out=out/ablate_influence_digits.json

Studies (the paper runs all of them with UDA on CIFAR-10; the default algorithm here is UDA too):
  influence        Fig. 3: the exact last-layer influence (ours) vs the identity (Luketina et al.), Neumann
                   (Lorraine et al.) and CG (Koh & Liang) over the last block plus the classifier.
  weighting        Fig. 4 left: per-example λ vs one shared λ learned by the same hypergradient vs the fixed
                   λ of the base algorithm, at several label counts (--label_counts).
  optimizer        Fig. 4 centre: M-Adam vs Adam vs SGD for Λ, each at the step size of its grid with the lowest
                   final validation loss (compare.DEFAULT_WEIGHT_LR_GRIDS-style grids, --weight_lr_grids).
  validation_size  Fig. 4 right: the validation set's size (--validation_sizes).
  sensitivity      Table 3: the paper's (N, η) grid relative to its default (100, 0.01), i.e. N × {0.3, 1, 3} and
                   η × {0.1, 1, 10} applied to this run's defaults (so the paper-scale run gets the paper's values).

Every study also runs the base algorithm (no weights) and ours with the hypergradient reversed (a control) on
the same seeds. Within a seed every run shares the split (for a given label count and validation size), the
initialisation, the data order and the augmentations. Nothing is chosen on the test set.

Each run's result is kept in --run_cache under a hash of everything that decides it; a restarted study (or
another study needing the same run, e.g. the base algorithm) reads it instead of training again.
"""
import dataclasses
import hashlib
import json
import math
import os
import time

import numpy as np
from absl import flags

from experiments import image_ssl, paired_flags, quiet_absl_info, synthetic_recipe
from experiments.checks import run_main, writable_dir
from influence_ssl.data import SYNTHETIC_DATASETS, DatasetNotFoundError
from influence_ssl.metrics import mean_std
from influence_ssl.report import method_summary, paired_difference
from influence_ssl.trainer import ConfigError, TrainingDiverged

FORMAT = "influence_ssl.ablation/1"
STUDIES = ("influence", "weighting", "optimizer", "validation_size", "sensitivity")

FLAGS = flags.FLAGS
flags.DEFINE_enum("study", "influence", STUDIES, "Which ablation of Sec. 4.3.")
JSON_OUT = "out/ablate_{study}_{dataset}.json"  # the default of --json_out (experiments.paired_flags)
flags.DEFINE_string("plot_dir", "out/plots", "Where the study's picture goes ('' for none).")
flags.DEFINE_string("run_cache", "out/ablate_runs", "One small JSON per finished run, reused when the same run "
                    "is needed again (a restarted study, or another study's base run).")
flags.DEFINE_list("label_counts", [], "weighting: labeled-set sizes (default: 20,50,100 digits; 4,10,30 2-D).")
flags.DEFINE_list("validation_sizes", [], "validation_size: sizes (default: 20,50,100,200,400 digits; "
                  "10,30,100,300 2-D; the paper: 64 ... 5000).")
flags.DEFINE_list("weight_lr_grids", [], "optimizer: per-optimizer η grids as opt:η1/η2/..., e.g. "
                  "madam:0.01/0.04/0.1 (default: DEFAULT_WEIGHT_LR_GRIDS of the dataset).")
flags.DEFINE_integer("num_unlabeled", None, "2-D problems: unlabeled examples (default 1000, Sec. 4.1).")
flags.DEFINE_integer("num_test", None, "2-D problems: test examples (default 10000).")
FLAGS.set_default("algorithm", "uda")  # Sec. 4.3: "All the experiments are conducted using ... the UDA baseline"

# Λ step sizes per optimizer. Adam-type steps move λ by about η per visit whatever the gradient's scale; an SGD
# step is η·g, and g carries the training loss's 1/|U'| (|g| ~ 1e-4 on digits' 96 rows, ~1e-5 on the 2-D
# problems' full batch of 1000), so SGD's grid is shifted by that scale.
DEFAULT_WEIGHT_LR_GRIDS = {
    "digits": {"madam": (0.01, 0.04, 0.1), "adam": (0.01, 0.04, 0.1), "sgd": (30.0, 100.0, 300.0, 1000.0)},
    "2d": {"madam": (0.003, 0.01, 0.03), "adam": (0.003, 0.01, 0.03), "sgd": (100.0, 1000.0, 10000.0)},
}
DEFAULT_LABEL_COUNTS = {"digits": (20, 50, 100), "2d": (4, 10, 30)}
DEFAULT_VALIDATION_SIZES = {"digits": (20, 50, 100, 200, 400), "2d": (10, 30, 100, 300)}
# Table 3 relative to the paper's default (N, η) = (100, 0.01).
PAPER_DEFAULT_N, PAPER_DEFAULT_ETA = 100, 0.01
PAPER_SENSITIVITY_GRID = ((30, 0.01), (300, 0.01), (100, 0.01), (100, 0.1), (100, 0.001))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One run of a seed: the weighting, the hypergradient's sign, and settings that differ from the defaults."""
    weighting: str = "per_example"
    reverse: bool = False
    settings: tuple = ()  # sorted (name, value) pairs

    @classmethod
    def of(cls, weighting="per_example", reverse=False, **settings):
        return cls(weighting, reverse, tuple(sorted(settings.items())))

    def to_dict(self):
        return {"weighting": self.weighting, "reverse": self.reverse, "settings": dict(self.settings)}


@dataclasses.dataclass
class Method:
    """A row of a study: its candidates (one, or a grid chosen on the final validation loss), or the reversed
    control of another method's chosen variant (`mirror`). `x` places it on a study's axis (e.g. label count)."""
    name: str
    label: str
    candidates: list = dataclasses.field(default_factory=list)
    mirror: str = None
    x: float = None
    paper: tuple = None  # the paper's setting this row stands for (Table 3's (N, η))


# ----- the runs: image datasets (experiments.image_ssl) and the 2-D problems (experiments.synthetic_recipe)

def _record(results, seconds):
    """What a study keeps of one run."""
    history = [(h["step"], 1.0 - h["validation"]) for h in results["history"] if "validation" in h]
    return {"test_accuracy": results["test_accuracy"], "validation_accuracy": results["validation_accuracy"],
            "validation_loss": results["validation_loss"],
            "curve_steps": [s for s, _ in history], "curve_validation_error": [e for _, e in history],
            "lambda_mean": results["lambda"]["lambda_mean"],
            "lambda_zero_fraction": results["lambda"]["lambda_zero_fraction"],
            "lambda_step_abs_mean": results["lambda"]["lambda_step_abs_mean_over_run"], "seconds": seconds}


class ImageDomain:
    """Runs of experiments.train's recipe (digits at CPU scale; CIFAR-10/SVHN with --data_dir)."""

    kind = "digits"

    def __init__(self):
        self.settings = dict(image_ssl.resolved(), weight_optimizer=FLAGS.weight_optimizer,
                             influence=FLAGS.influence, influence_scope=FLAGS.influence_scope)
        self.fingerprint = {"dataset": FLAGS.dataset, "algorithm": FLAGS.algorithm, "settings": self.settings,
                            "flags": image_ssl.run_flag_values()}
        self.description = f"{FLAGS.algorithm} on {FLAGS.dataset}"
        self._data = {}

    def sized(self, num_labeled=None, num_validation=None):
        """Settings for a labeled / validation size: batches shrink to fit, the unlabeled batch stays."""
        s = {}
        if num_labeled is not None:
            batch = min(self.settings["batch"], num_labeled)
            s.update(num_labeled=num_labeled, batch=batch,
                     uratio=max(1, round(self.settings["batch"] * self.settings["uratio"] / batch)))
        if num_validation is not None:
            s.update(num_validation=num_validation,
                     validation_batch=min(self.settings["validation_batch"], num_validation))
        return s

    def run(self, seed, variant):
        settings = dict(self.settings, **dict(variant.settings))
        key = (seed, settings["num_labeled"], settings["num_validation"])
        if key not in self._data:
            self._data = {key: image_ssl.load_data(settings, seed)[0]}  # one split in memory at a time
        start = time.time()
        trainer = image_ssl.make_trainer(settings, self._data[key], seed, variant.weighting,
                                         reverse=variant.reverse, verbose=False)
        return _record(trainer.run(), time.time() - start)


class SyntheticDomain:
    """Runs of the Sec. 4.1 recipe on a 2-D problem. Flags of experiments.train with the recipe's names
    (--steps, --inner_steps, --weight_lr, --num_labeled, ...) override its defaults."""

    kind = "2d"

    def __init__(self):
        if FLAGS["algorithm"].present and FLAGS.algorithm != "pseudo_label":
            raise ConfigError(f"--dataset={FLAGS.dataset} runs Pseudo-Label (Sec. 4.1), not --algorithm={FLAGS.algorithm}.")
        self.settings = dict(synthetic_recipe.DEFAULTS, eval_every=50)  # a validation curve point every 50 steps
        for name in self.settings:
            if name in FLAGS and FLAGS[name].value is not None:
                self.settings[name] = FLAGS[name].value
        for name in ("num_labeled", "num_validation", "num_unlabeled", "num_test", "steps", "eval_every"):
            if self.settings[name] < 1:
                raise ConfigError(f"--{name} must be >= 1, got {self.settings[name]}.")
        if self.settings["steps"] % self.settings["eval_every"]:
            self.settings["eval_every"] = self.settings["steps"]
        self.settings["unlabeled_batch"] = min(self.settings["unlabeled_batch"], self.settings["num_unlabeled"])
        synthetic_recipe.train_config(self.settings, 0).validate(
            self.settings["num_labeled"], self.settings["num_unlabeled"], self.settings["num_validation"])
        self.fingerprint = {"dataset": FLAGS.dataset, "algorithm": "pseudo_label", "settings": self.settings}
        self.description = f"pseudo_label on {FLAGS.dataset}"

    def sized(self, num_labeled=None, num_validation=None):
        return {k: v for k, v in (("num_labeled", num_labeled), ("num_validation", num_validation)) if v is not None}

    def run(self, seed, variant):
        settings = dict(self.settings, **dict(variant.settings))
        data = synthetic_recipe.load_data(FLAGS.dataset, settings, seed)
        config = synthetic_recipe.train_config(settings, seed, weighting=variant.weighting,
                                               reverse_hypergradient=variant.reverse)
        start = time.time()
        trainer = synthetic_recipe.make_trainer(settings, data, config)
        return _record(trainer.run(), time.time() - start)


def diverged_record(message):
    """The record of a run that stopped on a NaN/Inf: no accuracy, and a validation loss no grid chooses."""
    nan = float("nan")
    return {"diverged": message, "test_accuracy": nan, "validation_accuracy": nan, "validation_loss": float("inf"),
            "curve_steps": [], "curve_validation_error": [], "lambda_mean": nan, "lambda_zero_fraction": nan,
            "lambda_step_abs_mean": nan, "seconds": nan}


def make_domain():
    return SyntheticDomain() if FLAGS.dataset in SYNTHETIC_DATASETS else ImageDomain()


class RunCache:
    """One JSON per finished run, named by a hash of (domain fingerprint, seed, variant)."""

    def __init__(self, directory, domain):
        self.directory, self.domain = directory, domain

    def _normalised(self, variant):
        # A setting equal to the domain's default is the default run: drop it, so that runs are shared.
        kept = tuple((k, v) for k, v in variant.settings if self.domain.settings.get(k) != v)
        return dataclasses.replace(variant, settings=kept)

    def get(self, seed, variant):
        """(record, True if read from the cache)."""
        key = {"domain": self.domain.fingerprint, "seed": seed, "variant": self._normalised(variant).to_dict()}
        text = json.dumps(key, sort_keys=True)
        path = os.path.join(self.directory, hashlib.sha256(text.encode()).hexdigest()[:20] + ".json")
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            if json.dumps(saved["key"], sort_keys=True) == text:
                return saved["record"], True
        try:
            record = self.domain.run(seed, variant)
        except TrainingDiverged as e:  # a result too: kept, so that a restart does not train it again
            record = diverged_record(str(e))
        with open(path + ".tmp", "w") as f:
            json.dump({"key": key, "record": record}, f)
        os.replace(path + ".tmp", path)  # a run is saved whole or not at all
        return record, False


# ----- the studies

def _ints(values, flag):
    try:
        out = [int(v) for v in values]
    except ValueError:
        raise ConfigError(f"--{flag} must be integers, got {','.join(values)}.") from None
    if not out or min(out) < 1:
        raise ConfigError(f"--{flag} must be integers >= 1, got {','.join(values)}.")
    return out


def weight_lr_grids(kind):
    grids = dict(DEFAULT_WEIGHT_LR_GRIDS[kind])
    for item in FLAGS.weight_lr_grids:
        name, _, values = item.partition(":")
        try:
            grid = tuple(float(v) for v in values.split("/"))
        except ValueError:
            grid = ()
        if name not in grids or not grid or not all(math.isfinite(v) and v > 0 for v in grid):
            raise ConfigError(f"--weight_lr_grids entries are opt:η1/η2/... with opt in {', '.join(grids)} "
                              f"and η > 0, got {item!r}.")
        grids[name] = grid
    return grids


def with_controls(methods, mirror, x=None, suffix="", sized=None):
    """[base] + methods + [reversed `mirror`]: the controls every study runs on the same seeds (and split)."""
    return ([Method("base" + suffix, "base (fixed λ, no weights)", [Variant.of("none", **(sized or {}))], x=x)]
            + methods + [Method("reversed" + suffix, "ours, hypergradient reversed (control)", mirror=mirror, x=x)])


def study_methods(study, domain):
    """The rows of `study`, in table order."""
    s = domain.settings
    if study == "influence":
        methods = [Method("exact_head", "ours: exact inverse Hessian, last layer", [Variant.of(
            influence="exact", influence_scope="head")])]
        for method, who in [("identity", "Luketina et al."), ("neumann", "Lorraine et al."), ("cg", "Koh & Liang")]:
            methods.append(Method(f"{method}_last_block", f"{method} ({who}), last block + classifier",
                                  [Variant.of(influence=method, influence_scope="last_block")]))
        return with_controls(methods, "exact_head")
    if study == "optimizer":
        methods = [Method(name, label, [Variant.of(weight_optimizer=name, weight_lr=eta) for eta in grid])
                   for (name, grid), label in zip(weight_lr_grids(domain.kind).items(),
                                                  ["M-Adam (App. C)", "Adam (every λ's moments decay)", "SGD"])]
        return with_controls(methods, "madam")
    if study == "sensitivity":
        methods = []
        for n, eta in PAPER_SENSITIVITY_GRID:
            inner = max(1, round(s["inner_steps"] * n / PAPER_DEFAULT_N))
            lr = s["weight_lr"] * eta / PAPER_DEFAULT_ETA
            name = f"N={inner},eta={lr:g}"
            methods.append(Method(name, f"ours, N={inner}, η={lr:g} (paper: N={n}, η={eta:g})",
                                  [Variant.of(inner_steps=inner, weight_lr=lr)], paper=(n, eta)))
        return with_controls(methods, f"N={s['inner_steps']},eta={s['weight_lr']:g}")
    if study == "weighting":
        counts = _ints(FLAGS.label_counts, "label_counts") if FLAGS.label_counts else DEFAULT_LABEL_COUNTS[domain.kind]
        methods = []
        for n in counts:
            sized = domain.sized(num_labeled=n)
            methods += with_controls([Method(f"single@{n}", "one shared λ, learned", [Variant.of("single", **sized)], x=n),
                                      Method(f"ours@{n}", "per-example λ (ours)", [Variant.of(**sized)], x=n)],
                                     f"ours@{n}", x=n, suffix=f"@{n}", sized=sized)
        return methods
    if study == "validation_size":
        sizes = (_ints(FLAGS.validation_sizes, "validation_sizes") if FLAGS.validation_sizes
                 else DEFAULT_VALIDATION_SIZES[domain.kind])
        methods = []
        for v in sizes:
            sized = domain.sized(num_validation=v)
            methods += with_controls([Method(f"ours@{v}", "per-example λ (ours)", [Variant.of(**sized)], x=v)],
                                     f"ours@{v}", x=v, suffix=f"@{v}", sized=sized)
        return methods
    raise ConfigError(f"Unknown study {study!r}.")


def run_seed(methods, seed, cache):
    """{method: (record, chosen variant)} of one seed; a grid is chosen on the final validation loss."""
    out, fresh = {}, 0
    for m in methods:
        if m.mirror:
            chosen = dataclasses.replace(out[m.mirror][1], reverse=True)
            candidates = [(chosen, *cache.get(seed, chosen))]
        else:
            candidates = [(v, *cache.get(seed, v)) for v in m.candidates]
        fresh += sum(not loaded for _, _, loaded in candidates)
        variant, record, _ = min(candidates, key=lambda c: c[1]["validation_loss"])
        out[m.name] = (record, variant)
    return out, fresh


def summarize(methods, per_seed, seeds):
    """The study's `methods` block: per-seed values, mean ± std, curves, paired differences. A run that diverged
    (NaN/Inf) is never chosen from a grid; a method whose every candidate diverged has NaN for that seed."""
    block = {}
    for m in methods:
        records = [seed_result[m.name][0] for seed_result in per_seed]
        entry = {"label": m.label, **method_summary([r["test_accuracy"] for r in records])}
        diverged = [seed for seed, r in zip(seeds, records) if "diverged" in r]
        if diverged:  # every candidate of the method diverged on these seeds: their accuracy is NaN
            entry["diverged_seeds"] = diverged
        entry["validation_accuracy"] = [r["validation_accuracy"] for r in records]
        entry["validation_accuracy_mean"], entry["validation_accuracy_std"] = mean_std(entry["validation_accuracy"])
        entry["validation_loss"] = [r["validation_loss"] for r in records]
        entry["lambda_step_abs_mean"] = [r["lambda_step_abs_mean"] for r in records]
        entry["seconds"] = [r["seconds"] for r in records]
        if m.x is not None:
            entry["x"] = m.x
        if m.paper is not None:
            entry["paper_setting"] = list(m.paper)
        chosen = [dict(seed_result[m.name][1].settings) for seed_result in per_seed]
        if len(m.candidates) > 1:
            entry["chosen_per_seed"] = chosen
        steps = records[0]["curve_steps"]
        if steps and all(r["curve_steps"] == steps for r in records):
            curves = np.array([r["curve_validation_error"] for r in records])
            entry["validation_error_curve"] = {"steps": steps, "mean": curves.mean(0).tolist(),
                                               "std": (curves.std(0, ddof=1) if len(records) > 1
                                                       else np.zeros(len(steps))).tolist(),
                                               "per_seed": curves.tolist()}
        block[m.name] = entry
    for m in methods:  # paired against the base run of the same axis value (same split)
        base = next(b.name for b in methods if b.name.startswith("base") and b.x == m.x)
        if m.name != base:
            block[m.name]["paired_vs_base"] = paired_difference(block[m.name]["test_accuracy"],
                                                                block[base]["test_accuracy"])
    return block


def format_study(block, seeds):
    width = max(len(name) for name in block) + 2
    lines = [f"{'method':<{width}} {'test acc (%)':>15} {'val acc (%)':>15} {'vs base (points)':>22}   label"]
    for name, e in block.items():
        paired = e.get("paired_vs_base")
        vs = (f"{100 * paired['mean']:+.2f} ± {100 * paired['std']:.2f} ({paired['wins']}/{paired['losses']})"
              if paired else "")
        diverged = f" (diverged on seeds {e['diverged_seeds']})" if e.get("diverged_seeds") else ""
        lines.append(f"{name:<{width}} {100 * e['mean']:7.2f} ± {100 * e['std']:5.2f} "
                     f"{100 * e['validation_accuracy_mean']:7.2f} ± {100 * e['validation_accuracy_std']:5.2f} "
                     f"{vs:>22}   {e['label']}{diverged}")
    lines.append(f"({len(seeds)} seeds; 'vs base': mean ± std of the paired difference, wins/losses)")
    return "\n".join(lines)


def main(argv):
    del argv
    quiet_absl_info()
    seeds = paired_flags.seed_list()
    domain = make_domain()
    methods = study_methods(FLAGS.study, domain)
    json_out = paired_flags.json_out(JSON_OUT, study=FLAGS.study, dataset=FLAGS.dataset)
    writable_dir(os.path.dirname(os.path.abspath(json_out)), "--json_out")
    cache = RunCache(writable_dir(FLAGS.run_cache, "--run_cache"), domain)
    if FLAGS.plot_dir:
        writable_dir(FLAGS.plot_dir, "--plot_dir")
    start, per_seed = time.time(), []
    for seed in seeds:
        result, fresh = run_seed(methods, seed, cache)
        per_seed.append(result)
        print(f"seed {seed}: " + ", ".join(f"{name} {100 * r['test_accuracy']:.1f}" for name, (r, _) in result.items())
              + f" [{fresh} new runs, {time.time() - start:.0f}s]", flush=True)
    results = {"format": FORMAT, "study": FLAGS.study, "dataset": FLAGS.dataset,
               "algorithm": domain.fingerprint["algorithm"], "seeds": seeds, "metric": "test_accuracy",
               "methods": summarize(methods, per_seed, seeds), "settings": domain.settings,
               "setting": f"CPU {FLAGS.dataset}" if FLAGS.dataset in ("digits",) + SYNTHETIC_DATASETS
               else FLAGS.dataset}
    with open(json_out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\n{FLAGS.study} ablation, {domain.description}:")
    print(format_study(results["methods"], seeds))
    if FLAGS.plot_dir:
        from experiments import ablation_plots
        path = ablation_plots.draw(results, os.path.join(FLAGS.plot_dir, f"ablate_{FLAGS.study}_{FLAGS.dataset}.png"))
        print(f"picture: {path}")
    print(f"results: {json_out}\ntotal time {time.time() - start:.0f}s")


def run():
    run_main(main, DatasetNotFoundError, TrainingDiverged)


if __name__ == "__main__":
    run()
