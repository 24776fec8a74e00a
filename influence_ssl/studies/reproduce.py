"""Every CPU-scale study of the project as one catalogue, and the runner that regenerates them.

An entry is one command of an entry point (`python -m experiments.<module> FLAGS`) with the file it writes,
results/<group>/<name>.json (with its pictures beside it), every run it trains kept in the shared run cache
results/runs/. A study restarted after an interruption reads its finished runs from the cache; a study whose
JSON holds the seeds asked for is done and skipped. `--quick` runs the same commands at 2 seeds and a few
dozen steps into out/quick/ (a smoke test, not a result). The package runs the entry points as child
processes and never imports them.

The times are measured on this project's 2-core machine, one TF thread per study, two studies side by side:
minutes per seed of a full run (all runs trained), or for a benchmark the whole command. A timing benchmark
(`alone`) runs after every other entry, one at a time, with TensorFlow's own thread count: its figures are
taken on a quiet machine, as its document says.
"""
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time

from influence_ssl.studies.results import (
    AUGMENT_SPEED_FORMAT,
    DAMPING_STUDY_FORMAT,
    MADAM_EPSILON_FORMAT,
    PERGRAD_SPEED_FORMAT,
    SEC44_FORMAT,
)
from influence_ssl.studies.results import FORMAT as STUDY_FORMAT

QUICK_DIR = os.path.join("out", "quick")
RUN_CACHE = "runs"  # under runs.layout.RESULTS_DIR (or QUICK_DIR)
FULL_SEEDS, QUICK_SEEDS = 10, 2
SHARD_SEEDS = 5  # a study of more seeds runs as shards of this many, so that two lanes can share one study
QUICK_MINUTES = 1.0  # a seed of a --quick study, or a --quick benchmark, about
# Short runs for --quick, by problem kind: a few Λ steps after a short warm-up, two evaluations.
QUICK_FLAGS = {
    "2d": ("--steps=100", "--weight_warmup=20", "--unlabeled_rampup=20", "--eval_every=50", "--log_every=50",
           "--checkpoint_every=100"),
    "image": ("--steps=60", "--weight_warmup=20", "--eval_every=30", "--log_every=30", "--checkpoint_every=60"),
}
# One TF thread per study: a run then repeats exactly, and two studies side by side use the two cores.
CHILD_ENV = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One study. kind: "2d" or "image" (which quick flags apply), or None for a benchmark (no seeds, no run
    cache; `quick` holds its short form). minutes: per seed for a study, the whole command for a benchmark."""

    name: str
    group: str
    module: str
    args: tuple
    minutes: float
    kind: str = "image"
    quick: tuple = ()
    format: str = None  # the JSON's "format" (None: a study's)
    alone: bool = False  # a timing benchmark: run by itself, after the others, on every core

    def json_path(self, root):
        return os.path.join(root, self.group, f"{self.name}.json")

    def command(self, root, seeds, quick):
        """The argv of this study's command (python -m module ...)."""
        if self.kind is None:
            return self._argv(quick) + [f"--json_out={self.json_path(root)}"]
        return self._argv(quick) + [f"--seeds={seeds}", f"--json_out={self.json_path(root)}",
                                    f"--plot_dir={os.path.join(root, self.group)}",
                                    f"--run_cache={os.path.join(root, RUN_CACHE)}"]

    def shard_command(self, root, first, count, quick, scratch):
        """The argv of seeds first .. first + count - 1 of this study: its runs go to the run cache, its JSON
        and pictures to `scratch` (the study's own command then writes them from the cache)."""
        name = os.path.join(scratch, self.shard_name(first))
        return self._argv(quick) + [f"--seeds={count}", f"--first_seed={first}", f"--json_out={name}.json",
                                    f"--plot_dir={name}", f"--run_cache={os.path.join(root, RUN_CACHE)}"]

    def shard_name(self, first):
        """The name of the shard from seed `first` (its log and scratch files)."""
        return f"{self.name}.seeds_{first}"

    def _argv(self, quick):
        argv = [sys.executable, "-m", self.module, *self.args]
        if self.kind is not None and quick:
            argv += QUICK_FLAGS[self.kind]
        return argv + list(self.quick if quick else ())

    def estimate(self, seeds, quick=False):
        """Minutes of this entry at `seeds` seeds (quick: QUICK_MINUTES a seed, or a benchmark)."""
        minutes = QUICK_MINUTES if quick else self.minutes
        return minutes if self.kind is None else minutes * seeds


def _entries():
    out = []
    tuned = ("--tuned_lambda_grid=0.1,0.3,1,3",)
    digits_fixmatch = ("--dataset=digits", "--algorithm=fixmatch", *tuned)
    for dataset, minutes in (("moons", 1.0), ("circles", 1.0), ("linear", 1.0)):
        out.append(Entry(f"synthetic_{dataset}", "synthetic", "experiments.synthetic", (f"--dataset={dataset}",),
                         minutes, kind="2d"))
    out.append(Entry("compare_digits_fixmatch", "compare", "experiments.compare", digits_fixmatch, 8.0))
    out.append(Entry("compare_digits_uda", "compare", "experiments.compare",
                     ("--dataset=digits", "--algorithm=uda", *tuned), 8.0))
    for study in ("influence", "weighting", "optimizer", "validation_size", "sensitivity"):
        for dataset, kind, minutes in (("moons", "2d", 2.0), ("digits", "image", 14.0)):
            out.append(Entry(f"ablate_{study}_{dataset}", "ablations", "experiments.ablate",
                             (f"--study={study}", f"--dataset={dataset}"), minutes, kind=kind))
    ood = {"ood_0": ("--ood_classes=6,7,8,9", "--ood_fraction=0"),
           "ood_0.25": ("--ood_classes=6,7,8,9", "--ood_fraction=0.25"),
           "ood_0.5": ("--ood_classes=6,7,8,9", "--ood_fraction=0.5"),
           "ood_0.75": ("--ood_classes=6,7,8,9", "--ood_fraction=0.75"),
           "ood_noise_0.5": ("--ood_noise", "--ood_fraction=0.5")}
    for name, flags in ood.items():
        out.append(Entry(name, "ood", "experiments.compare", (*digits_fixmatch, *flags), 8.0))
    for name in ("ood_0.5", "ood_noise_0.5"):
        out.append(Entry(f"{name}_lambda3", "ood", "experiments.compare",
                         (*digits_fixmatch, *ood[name], "--weight_init=3"), 8.0))
    variants = {"batch": ("--hypergradient_normalization=batch",),
                "class": ("--hypergradient_normalization=class",),
                "example": ("--hypergradient_normalization=example",),
                "weak_view": ("--influence_view=weak",),
                "softplus": ("--weight_parametrization=softplus",),
                "sigmoid": ("--weight_parametrization=sigmoid",),
                "temperature_2": ("--influence_target_temperature=2",),
                "temperature_0.5": ("--influence_target_temperature=0.5",),
                "cg_last_block": ("--influence=cg", "--influence_scope=last_block")}
    for name, flags in variants.items():
        out.append(Entry(f"ood_0.5_{name}", "variants", "experiments.compare",
                         (*digits_fixmatch, *ood["ood_0.5"], *flags), 6.0))
    out.append(Entry("recipe_moons", "recipes", "experiments.ablate", ("--study=recipe", "--dataset=moons"), 3.0,
                     kind="2d"))
    out.append(Entry("recipe_digits", "recipes", "experiments.ablate",
                     ("--study=recipe", "--dataset=digits", "--algorithm=fixmatch", "--augment=cta"), 45.0))
    ten = ("--dataset=digits", "--algorithm=fixmatch", "--num_validation=50", "--validation_batch=50")
    six = ("--dataset=digits", "--algorithm=fixmatch", "--num_validation=30", "--validation_batch=30",
           "--ood_classes=6,7,8,9", "--ood_fraction=0.5")
    out.append(Entry("label_curve_digits", "weighting_rules", "experiments.label_curve",
                     (*ten, "--label_counts=10,20,40,80,160"), 6.0))
    # About 23 runs a seed (η, λ and each rule's grid) of about 40 s each (one lane of two).
    for labels in (10, 20, 40):
        out.append(Entry(f"weighting_rules_digits_{labels}", "weighting_rules", "experiments.weighting_rules",
                         (*ten, f"--num_labeled={labels}"), 15.0))
    for labels in (12, 24):
        out.append(Entry(f"weighting_rules_digits_ood_{labels}", "weighting_rules", "experiments.weighting_rules",
                         (*six, f"--num_labeled={labels}"), 15.0))
    out.append(Entry("sec44", "speed", "experiments.benchmarks.sec44", (), 15.0, kind=None,
                     quick=("--repeats=1", "--update_repeats=2", "--blocks=per_example_gradients"),
                     format=SEC44_FORMAT, alone=True))
    out.append(Entry("pergrad_speed", "speed", "experiments.benchmarks.pergrad_speed", ("--batches=16,64",), 10.0,
                     kind=None, quick=("--batches=4", "--repeats=1", "--depth=10", "--methods=fast,loop"),
                     format=PERGRAD_SPEED_FORMAT, alone=True))
    out.append(Entry("augment_speed", "speed", "experiments.benchmarks.augment_speed", (), 5.0, kind=None,
                     quick=("--settings=8x8x8x1", "--repeats=1"), format=AUGMENT_SPEED_FORMAT))
    out.append(Entry("damping_study", "speed", "experiments.benchmarks.damping_study", (), 2.0, kind=None,
                     quick=("--quick",), format=DAMPING_STUDY_FORMAT))
    for name, args in (("madam_epsilon", ()), ("madam_epsilon_late", ("--t_offset=1700",))):
        out.append(Entry(name, "text", "experiments.benchmarks.madam_epsilon", args, 3.0, kind=None,
                         quick=("--steps=20", "--num_unlabeled=256"), format=MADAM_EPSILON_FORMAT))
    return tuple(out)


CATALOGUE = _entries()
GROUPS = tuple(dict.fromkeys(e.group for e in CATALOGUE))


def select(only):
    """The entries named in `only` (entry or group names; empty: all), in catalogue order; ValueError for an
    unknown name."""
    names = {e.name for e in CATALOGUE}
    unknown = [n for n in only if n not in names and n not in GROUPS]
    if unknown:
        raise ValueError(f"--only: unknown {', '.join(unknown)} (studies: --list; groups: {', '.join(GROUPS)}).")
    return [e for e in CATALOGUE if not only or e.name in only or e.group in only]


def status(entry, root, seeds):
    """'done' when the entry's JSON, written by this version's entry point (its format, with provenance), holds
    the seeds asked for (a benchmark: when it is there); 'partial (k of n seeds)' for fewer; 'to run (older
    format)' for a JSON this version does not write; else 'to run'."""
    path = entry.json_path(root)
    if not os.path.exists(path):
        return "to run"
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return "to run (unreadable)"
    if data.get("format") != (entry.format or STUDY_FORMAT) or "provenance" not in data:
        return "to run (older format)"
    have = len(data.get("seeds", [])) if entry.kind is not None else seeds
    return "done" if have >= seeds else f"partial ({have} of {seeds} seeds)"


def listing(entries, root, seeds, quick=False):
    """Plain text: one line per entry with its estimated time (2 cores, two studies side by side) and status."""
    width = max(len(e.name) for e in entries) + 2
    lines = [f"{'study':<{width}} {'group':<16} {'minutes':>8}  status"]
    for e in entries:
        lines.append(f"{e.name:<{width}} {e.group:<16} {e.estimate(seeds, quick):8.0f}  {status(e, root, seeds)}")
    total = sum(e.estimate(seeds, quick) for e in entries if status(e, root, seeds) != "done")
    lines.append(f"left: about {total / 60:.1f} h of one core ({total / 120:.1f} h on 2 cores, two lanes)")
    return "\n".join(lines)


def run_all(entries, root, seeds, quick, lanes=2, rewrite=False, log=print, logs_dir=None):
    """Run every entry not done: the studies `lanes` at a time, then the timing benchmarks one by one.

    A study of more than SHARD_SEEDS seeds runs as shards of seeds, each a child of its own, so that the lanes
    stay busy when one study is left; when its last shard ends, the study's own command writes its JSON and
    pictures from the run cache. Each child's output goes to logs_dir/<name>.log and its progress lines (a
    seed finished) to `log`. Returns {name: exit code} of the entries run."""
    top = root if quick else "out"
    logs_dir, scratch = logs_dir or os.path.join(top, "logs"), os.path.join(top, "shards")
    os.makedirs(logs_dir, exist_ok=True)
    todo = [e for e in entries if rewrite or status(e, root, seeds) != "done"]
    for e in entries:
        if e not in todo:
            log(f"{e.name}: done, skipped")
    codes, start, lock = {}, time.time(), threading.Lock()
    left = [sum(e.estimate(seeds, quick) for e in todo)]

    def finished(entry, code, lanes_now):
        with lock:
            codes[entry.name] = code
            left[0] -= entry.estimate(seeds, quick)
            log(f"{entry.name}: {'finished' if code == 0 else f'FAILED (exit {code})'} "
                f"[{(time.time() - start) / 60:.1f} min so far; about {max(left[0], 0) / lanes_now:.0f} min left]")

    def whole(entry, lanes_now):  # the entry's own command (after its shards: every run from the cache)
        finished(entry, _run_one(entry, entry.command(root, seeds, quick), entry.name, logs_dir, log), lanes_now)

    pending, shards_left, failed = [], {}, {}  # failed: a study's first failed shard's exit code
    for e in todo:
        if e.alone:
            continue
        if e.kind is None or seeds <= SHARD_SEEDS:
            pending.append((e, None))
            continue
        firsts = range(0, seeds, SHARD_SEEDS)
        pending += [(e, (first, min(SHARD_SEEDS, seeds - first))) for first in firsts]
        shards_left[e.name] = len(firsts)

    def lane():
        while True:
            with lock:
                if not pending:
                    return
                entry, shard = pending.pop(0)
            if shard is None:
                whole(entry, lanes)
                continue
            first, count = shard
            argv = entry.shard_command(root, first, count, quick, scratch)
            code = _run_one(entry, argv, entry.shard_name(first), logs_dir, log)
            with lock:
                shards_left[entry.name] -= 1
                if code:
                    failed.setdefault(entry.name, code)
                last = shards_left[entry.name] == 0
            if last and entry.name in failed:
                finished(entry, failed[entry.name], lanes)
            elif last:
                whole(entry, lanes)

    threads = [threading.Thread(target=lane) for _ in range(max(1, lanes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for entry in (e for e in todo if e.alone):
        whole(entry, 1)
    return codes


def _run_one(entry, argv, name, logs_dir, log):
    log(f"{name}: {' '.join(argv[1:])}")
    caps = {k: v for k, v in CHILD_ENV.items() if k not in os.environ and not (entry.alone and "THREADS" in k)}
    env = {**os.environ, **caps}
    with open(os.path.join(logs_dir, f"{name}.log"), "w") as out:
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in child.stdout:
            out.write(line)
            if line.startswith("seed ") or line.startswith("error"):
                log(f"{name}: {line.rstrip()}")
        return child.wait()
