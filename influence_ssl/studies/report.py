"""Tables of results: reading result JSONs, naming a run by its hypergradient, and the comparison columns every
table shares.

A comparison is a paired difference a − b over seeds. Its columns: the mean ± std of the differences, the exact
sign-flip permutation p, wins/ties/losses, and the project's wording (influence_ssl.stats.verdict: "beyond
noise" only where the p Holm-corrected across the comparisons of that one table is below 0.05, with the 95%
bootstrap CI). Where a table's comparisons are exactly one study JSON's "paired" rows, those rows are used as
they are; a table combining comparisons from several files is corrected anew (stats.compare_table).
"""
import collections
import json
import os

import numpy as np

from influence_ssl import stats
from influence_ssl.metrics import mean_std
from influence_ssl.studies.results import (
    AUGMENT_SPEED_FORMAT,
    DAMPING_STUDY_FORMAT,
    MADAM_EPSILON_FORMAT,
    PERGRAD_SPEED_FORMAT,
    SEC44_FORMAT,
)
from influence_ssl.studies.results import FORMAT as STUDY_FORMAT
from influence_ssl.trainer.config import HYPERGRADIENT_VARIANTS, TrainConfig
from influence_ssl.trainer.results import RESULTS_FORMAT as RUN_FORMAT

BENCHMARKS = {SEC44_FORMAT: "sec44", PERGRAD_SPEED_FORMAT: "pergrad_speed", MADAM_EPSILON_FORMAT: "madam_epsilon",
              AUGMENT_SPEED_FORMAT: "augment_speed", DAMPING_STUDY_FORMAT: "damping_study"}
# A study JSON's "study": compare, synthetic, weighting_rules, label_curve or ablation_<name> (ablation last: see
# kind_of).
STUDIES = ("compare", "synthetic", "weighting_rules", "label_curve", "ablation")
# Keys that only a result JSON has: a JSON holding one of them without a known format is refused.
RESULT_KEYS = ("methods", "per_example_gradients", "lambda_step", "test_accuracy")
# What each kind of result must hold to be read.
REQUIRED = {"run": ("run_config", "test_accuracy"), "study": ("seeds", "methods", "paired", "config")}
# The paper's hypergradient: the variants' defaults and the exact inverse Hessian over the head.
PAPER_HYPERGRADIENT = TrainConfig.defaults(HYPERGRADIENT_VARIANTS + ("influence", "influence_scope"))
COMPARISON_COLUMNS = ["vs", "difference ± std (pts)", "p", "wins/ties/losses", "verdict (Holm across the table)"]

Table = collections.namedtuple("Table", "title columns rows notes")


class ResultsError(ValueError):
    """A result JSON that cannot be read; the message names the file."""


def describe(config):
    """'name=value, ...' of what a RunConfig dict (a study's "config", a run's "run_config") sets away from the
    paper's hypergradient; '' for the paper's method."""
    train = config.get("train", {})
    changed = {k: train[k] for k, v in PAPER_HYPERGRADIENT.items() if k in train and train[k] != v}
    return ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))


def is_ood(config):
    """Whether a RunConfig dict puts out-of-distribution examples in the unlabeled set."""
    return bool(config["data"]["ood_classes"]) or config["data"]["ood_noise"]


def ood_kind(config):
    """'noise images' or 'classes 6,7,8,9 held out': the OOD examples of a RunConfig dict that has any."""
    data = config["data"]
    return "noise images" if data["ood_noise"] else f"classes {','.join(map(str, data['ood_classes']))} held out"


def departures(config):
    """What a RunConfig dict changes from the paper's method beyond its data, e.g. ['influence_view=weak',
    'λ0=3']: the hypergradient (describe) and the initial λ; [] for the paper's method."""
    weight_init = config["train"]["weight_init"]
    return [text for text in (describe(config), f"λ0={weight_init:g}" if weight_init != 1 else "") if text]


def setting_key(config):
    """A RunConfig dict's fields other than the hypergradient's (PAPER_HYPERGRADIENT) as one string: two studies
    with one key differ only in their hypergradient."""
    train = {k: v for k, v in config.get("train", {}).items() if k not in PAPER_HYPERGRADIENT}
    return json.dumps({**config, "train": train}, sort_keys=True)


def load(path):
    """The JSON at `path`; ResultsError (one line naming the file) if it cannot be read."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ResultsError(f"{path} is not readable JSON ({e}).") from None


def kind_of(path, data):
    """'run', a benchmark's kind (BENCHMARKS) or a study's ('compare', 'synthetic', ...) of a result JSON; None for a
    JSON that is no result (a config, a split, a run cache's record). ResultsError for an unknown or older format."""
    if not isinstance(data, dict):
        return None
    fmt = data.get("format")
    if fmt in BENCHMARKS:
        return BENCHMARKS[fmt]
    if fmt == RUN_FORMAT:
        kind, what = "run", "run"
    elif fmt == STUDY_FORMAT:
        study = str(data.get("study", ""))
        kind, what = ("ablation" if study.startswith("ablation_") else study), "study"
        if kind not in STUDIES:
            raise ResultsError(f"{path} is a study {study!r}, which this report does not read (it reads "
                               f"{', '.join(STUDIES[:-1])} and ablation_<name>).")
    elif isinstance(fmt, str) and fmt.startswith("influence_ssl."):
        raise ResultsError(f"{path} has format {fmt!r}, which this report does not read (it reads "
                           f"{', '.join([RUN_FORMAT, STUDY_FORMAT, *BENCHMARKS])}): re-run it "
                           "with this version, or move it out of the results directory.")
    elif fmt is None and (os.path.basename(path) == "results.json" or any(k in data for k in RESULT_KEYS)):
        raise ResultsError(f"{path} is a result of an older format (no 'format' key): re-run it with this "
                           "version, or move it out of the results directory.")
    else:
        return None
    missing = [k for k in REQUIRED[what] if k not in data]
    if missing:
        raise ResultsError(f"{path} is a {fmt} result without {', '.join(missing)} (an older version wrote it): "
                           "re-run it with this version, or move it out of the results directory.")
    return kind


def collect(results_dir):
    """{kind: [(path, json)]} of every result JSON under results_dir, in path order."""
    if not os.path.isdir(results_dir):
        raise ResultsError(f"{results_dir} is not a directory.")
    found = collections.defaultdict(list)
    for root, dirs, files in os.walk(results_dir):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".json"):
                path = os.path.join(root, name)
                data = load(path)
                kind = kind_of(path, data)
                if kind:
                    found[kind].append((path, data))
    return found


# ----- cells

def error(mean_accuracy, std=None):
    """'e ± s' in % error from an accuracy mean (and std), both fractions."""
    text = f"{100 * (1 - mean_accuracy):.2f}"
    return text if std is None else f"{text} ± {100 * std:.2f}"


def error_of(values):
    """'e ± s' in % error of per-seed accuracies (the finite ones)."""
    finite = [v for v in values if np.isfinite(v)]
    return error(*mean_std(finite)) if finite else "—"


def per_seed_cell(values, digits=3):
    """'mean ± std' of the finite per-seed values, '—' without any."""
    finite = [v for v in values or [] if v is not None and np.isfinite(v)]
    if not finite:
        return "—"
    mean, std = mean_std(finite)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def auroc_cell(pooled, per_seed=None):
    """'pooled (per-seed mean ± std)' of an AUROC, '—' where there is none."""
    if pooled is None:
        return "—"
    spread = per_seed_cell(per_seed)
    return f"{pooled:.3f}" if spread == "—" else f"{pooled:.3f} ({spread})"


def ood_share_cell(results):
    """The share of OOD examples among the lowest 5% of λ (mean ± std over seeds) against their share among all
    unlabeled examples; '—' for a study without OOD examples."""
    shares = results.get("ood_share_lowest_5pct_per_seed")
    if not shares or "ood_fraction" not in results:
        return "—"
    mean, std = mean_std(shares)
    return f"{100 * mean:.1f} ± {100 * std:.1f}% of the lowest 5% λ vs {100 * results['ood_fraction']:.1f}% of all"


# ----- comparisons

class Pair(collections.namedtuple("Pair", "a b against source scale", defaults=(None, 100.0))):
    """One comparison: per-seed values a and b on the same seeds (a − b), named `against` b. source: (study
    JSON, key, the JSON's table holding it: "paired" unless named) where the JSON holds this comparison; scale:
    shown per unit (100: points)."""

    __slots__ = ()


def study_pair(results, a, b, against=None, table="paired"):
    """The comparison a − b of two methods of one study JSON (held in its table `table`)."""
    methods = results["methods"]
    return Pair(methods[a]["values"], methods[b]["values"], against or b, (results, f"{a} - {b}", table))


def holm_family(pairs):
    """The paired statistics (stats.compare_table rows, with p_holm) of a table's comparisons, in order: the
    study JSON's own rows where the comparisons are exactly its "paired" rows, else computed here with Holm
    across `pairs`. None for a comparison without a seed where both values are finite."""
    sources = [p.source for p in pairs]
    if sources and all(sources) and len({(id(s[0]), _table_of(s)) for s in sources}) == 1:
        stored = sources[0][0].get(_table_of(sources[0]), {})
        if sorted(s[1] for s in sources) == sorted(stored):
            return [stored[s[1]] for s in sources]
    rows = {}
    for i, p in enumerate(pairs):
        a, b = np.asarray(p.a, np.float64), np.asarray(p.b, np.float64)
        keep = np.isfinite(a) & np.isfinite(b)
        if keep.any():
            rows[i] = stats.paired(a[keep], b[keep], wilcoxon=False)  # the tables show p_perm only
    table = stats.compare_table(rows)
    return [table.get(i) for i in range(len(pairs))]


def _table_of(source):
    return source[2] if len(source) > 2 else "paired"


def comparison_cells(pair, row):
    """The comparison columns of one row."""
    if row is None:
        return [pair.against, "—", "", "", "no seed with both values"]
    s, digits = pair.scale, (2 if pair.scale == 100 else 3)
    scaled = {**row, **{k: s * row[k] for k in ("mean", "ci_low", "ci_high")}}
    return [pair.against, f"{s * row['mean']:+.{digits}f} ± {s * row['std']:.{digits}f}", f"{row['p_perm']:.3g}",
            f"{row['wins']}/{row['ties']}/{row['losses']}", stats.verdict(scaled)]


def table(title, columns, rows, notes=()):
    """A Table of rows whose last item is a Pair or None: it becomes the comparison columns, every comparison
    of the table in one Holm family."""
    pairs = [r[-1] for r in rows if r[-1] is not None]
    family = iter(holm_family(pairs))
    body = [list(r[:-1]) + (comparison_cells(r[-1], next(family)) if r[-1] is not None
                            else [""] * len(COMPARISON_COLUMNS)) for r in rows]
    if pairs:
        notes = [*notes, f"Comparisons in accuracy points (a − b > 0: a more accurate) unless named otherwise; p: "
                 f"exact sign-flip permutation p; Holm across this table's {len(pairs)} comparisons."]
    return Table(title, list(columns) + COMPARISON_COLUMNS, body, list(notes))


def study_rows(results, setting, name_of=None, measured=None, note=""):
    """[name, setting, measured, seeds, note, Pair or None] per method of a study JSON, each paired as in the
    JSON's first "paired" row of that method; then a row per remaining "paired" row (e.g. ours − tuned λ)."""
    name_of = name_of or (lambda name: name)
    measured = measured or (lambda entry: error_of(entry["values"]))
    n, paired, used, rows = len(results["seeds"]), results["paired"], set(), []
    for name, entry in results["methods"].items():
        key = next((k for k in paired if k.startswith(f"{name} - ") and k not in used), None)
        pair = study_pair(results, name, key[len(name) + 3:]) if key else None
        used.add(key)  # None too: harmless
        rows.append([name_of(name), setting, measured(entry), n, "; ".join(filter(None, [method_note(entry), note])),
                     pair])
        note = ""  # the source once per study
    for key in paired:
        if key not in used:
            a, b = next((a, key[len(a) + 3:]) for a in results["methods"] if key.startswith(f"{a} - "))
            rows.append([f"{name_of(a)} − {name_of(b)}", setting, "", n, "", study_pair(results, a, b)])
    return rows


def method_note(entry):
    """What a method chose per seed on validation, and the seeds where it diverged."""
    parts = []
    if "weight_lr_per_seed" in entry:
        parts.append("η chosen per seed " + ", ".join(f"{v:g}" for v in entry["weight_lr_per_seed"]))
    if "lambda_per_seed" in entry:
        parts.append("λ chosen per seed " + ", ".join(f"{v:g}" for v in entry["lambda_per_seed"]))
    if entry.get("diverged_seeds"):
        parts.append(f"diverged on seeds {entry['diverged_seeds']}")
    return "; ".join(parts)


# ----- rendering

def render_text(table):
    rows = [table.columns] + table.rows
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(table.columns))]
    lines = [table.title, "-" * len(table.title)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if not table.rows:
        lines.append("(nothing measured)")
    return "\n".join(lines + [f"note: {n}" for n in table.notes])


def _cell(value):
    return str(value).replace("|", "\\|")  # a bare | would end the cell


def render_markdown(table):
    lines = [f"## {table.title}", "", "| " + " | ".join(map(_cell, table.columns)) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in table.rows]
    return "\n".join(lines + [""] + [f"- {n}" for n in table.notes] + [""])
