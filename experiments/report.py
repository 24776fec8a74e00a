r"""Every measured result under RESULTS_DIR beside the paper's numbers: one table per paper table and figure.

  python -m experiments.report out --markdown out/report/report.md

Reads the JSONs written by experiments.train (results.json), compare, synthetic, ablate and
benchmarks.sec44, recognised by their "format" key. A result JSON of an unknown or older format (no key)
stops the report with one line naming the file; other JSONs (config.json, split.json, caches) are skipped.
Numbers are test error rates in % unless a table says otherwise; "±" is the std over seeds; the paper's
numbers come from experiments.paper_numbers, the only numbers typed in by hand.
"""
import collections
import json
import os

from absl import app, flags

from experiments import paper_numbers as paper
from experiments import quiet_absl_info, variant_flags
from experiments.checks import run_main, writable_dir
from influence_ssl.metrics import mean_std
from influence_ssl.report import paired_difference

FLAGS = flags.FLAGS
flags.DEFINE_string("markdown", "", "Also write the report as Markdown here, with the ablations' PNGs beside it.")

FORMATS = {"influence_ssl.run/1": "run", "influence_ssl.compare/1": "compare",
           "influence_ssl.synthetic/1": "synthetic", "influence_ssl.ablation/1": "ablation",
           "influence_ssl.sec44/1": "sec44"}
# Keys that only a result JSON has: a JSON holding one of them without a known format is refused.
RESULT_KEYS = ("methods", "per_example_gradients", "lambda_step", "test_accuracy")


class ReportError(ValueError):
    """A JSON under RESULTS_DIR that the report cannot read."""


Table = collections.namedtuple("Table", "title columns rows notes")


def collect(results_dir):
    """{kind: [(path, json)]} of every result JSON under results_dir, in path order."""
    if not os.path.isdir(results_dir):
        raise ReportError(f"{results_dir} is not a directory.")
    found = collections.defaultdict(list)
    for root, dirs, files in os.walk(results_dir):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            path = os.path.join(root, name)
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError) as e:
                raise ReportError(f"{path} is not readable JSON ({e}).") from None
            if not isinstance(data, dict):
                continue
            fmt = data.get("format")
            if fmt in FORMATS:
                found[FORMATS[fmt]].append((path, data))
            elif isinstance(fmt, str) and fmt.startswith("influence_ssl."):
                raise ReportError(f"{path} has format {fmt!r}, which this report does not read (it reads "
                                  f"{', '.join(sorted(FORMATS))}).")
            elif fmt is None and (name == "results.json" or any(k in data for k in RESULT_KEYS)):
                raise ReportError(f"{path} is a result of an older format (no 'format' key): re-run it with this "
                                  "version, or move it out of the results directory.")
    return found


# ----- formatting

def error(mean_accuracy, std=None):
    """'e ± s' in % error from an accuracy mean (and std), both fractions."""
    text = f"{100 * (1 - mean_accuracy):.2f}"
    return text if std is None else f"{text} ± {100 * std:.2f}"


def paper_cell(value):
    if value is None:
        return ""
    mean, std = value if isinstance(value, tuple) else (value, None)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def paired_note(ours, base, against="base"):
    d = paired_difference(ours, base)
    return (f"vs {against} {100 * d['mean']:+.2f} ± {100 * d['std']:.2f} pts "
            f"(wins/ties/losses {d['wins']}/{d['ties']}/{d['losses']})")


def short(path, results_dir):
    return os.path.relpath(path, results_dir)


def render_text(table):
    rows = [table.columns] + table.rows
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(table.columns))]
    lines = [table.title, "-" * len(table.title)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if not table.rows:
        lines.append("(nothing measured)")
    return "\n".join(lines + [f"note: {n}" for n in table.notes])


def render_markdown(table):
    lines = [f"## {table.title}", "", "| " + " | ".join(table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in table.rows]
    return "\n".join(lines + [""] + [f"- {n}" for n in table.notes] + [""])


# ----- the tables

def table1(found, d):
    """Table 1 rows: every paper cell (measured where a GPU run exists), then the CPU-scale comparisons."""
    measured = {}
    notes = ["Measured: final test error of experiments.train runs (mean ± std over seeds); FixMatch's own protocol "
             "is the median of the last 20 evaluations (results.json median_last20_test_accuracy)."]
    groups = collections.defaultdict(list)
    for path, r in found["run"]:
        run = r.get("run", {})
        if run.get("dataset") not in ("cifar10", "svhn") or run.get("reverse_hypergradient"):
            continue
        algorithm = run["algorithm"]
        if algorithm == "fixmatch" and run["flags"].get("augment") != "cta":
            algorithm = "fixmatch_ra"
        groups[(algorithm, run["weighting"], run["dataset"], run["settings"]["num_labeled"])].append(r["test_accuracy"])
    names = {("uda", "none"): "UDA", ("uda", "per_example"): "Ours (UDA)", ("fixmatch", "none"): "FixMatch* (CTA)",
             ("fixmatch", "per_example"): "Ours (FixMatch, CTA)"}
    for (algorithm, weighting, dataset, labels), accuracies in groups.items():
        if (algorithm, weighting) in names:
            mean, std = mean_std(accuracies)
            measured[(names[(algorithm, weighting)], dataset, labels)] = (error(mean, std), len(accuracies))
    rows = []
    for (row, dataset, labels), value in paper.TABLE1.items():
        cell, n = measured.pop((row, dataset, labels), ("", ""))
        rows.append([row, f"{dataset}, {labels} labels", paper_cell(value), cell, n, ""])
    for (row, dataset, labels), (cell, n) in measured.items():
        rows.append([row, f"{dataset}, {labels} labels", "", cell, n, "not a paper cell"])
    for path, c in found["compare"]:
        if "ood_fraction" in c or c["dataset"] == "imdb":
            continue  # the robustness table, Table 2
        setting = f"{'CPU ' if c['dataset'] == 'digits' else ''}{c['dataset']}, {c['settings']['num_labeled']} labels"
        base = c["methods"]["base"]
        label = {"uda": "UDA", "fixmatch": "FixMatch", "pseudo_label": "Pseudo-Label"}[c["algorithm"]]
        rows.append([label, setting, "", error(base["mean"], base["std"]), len(c["seeds"]), short(path, d)])
        for method in ("ours", "ours_reversed", "tuned_single_lambda"):
            if method in c["methods"]:
                m = c["methods"][method]
                rows.append([f"{method} ({label})", setting, "", error(m["mean"], m["std"]), len(c["seeds"]),
                             paired_note(m["test_accuracy"], base["test_accuracy"])])
    return Table("Table 1: test error (%), WRN-28-2 on CIFAR-10 / SVHN (and CPU-scale comparisons)",
                 ["row", "setting", "paper", "measured", "seeds", "note"], rows, notes)


def table2(found, d):
    groups = collections.defaultdict(list)
    for path, r in found["run"]:
        run = r.get("run", {})
        if run.get("dataset") != "imdb" or run.get("reverse_hypergradient"):
            continue
        if run["weighting"] == "per_example":
            row = "Ours"
        elif run["settings"].get("weight_init") == 0:
            row = "Supervised"
        else:
            row = "UDA"
        groups[(row, run["flags"].get("max_seq_length"))].append(r["test_accuracy"])
    rows = []
    for row, value in paper.TABLE2.items():
        accuracies = groups.pop((row, 128), [])
        rows.append([row, "IMDb, 20 labels, 128 tokens", paper_cell(value),
                     error(*mean_std(accuracies)) if accuracies else "", len(accuracies) or ""])
    for (row, length), accuracies in groups.items():
        rows.append([row, f"IMDb, 20 labels, {length} tokens", "", error(*mean_std(accuracies)), len(accuracies)])
    for path, c in found["compare"]:  # experiments.compare --dataset=imdb: UDA, ours and the control, paired
        if c["dataset"] == "imdb":
            for method, row in (("base", "UDA"), ("ours", "Ours"), ("ours_reversed", "Ours, reversed")):
                m = c["methods"][method]
                rows.append([row, f"IMDb, {c['flags']['max_seq_length']} tokens (compare)", "",
                             error(m["mean"], m["std"]), len(c["seeds"])])
    return Table("Table 2: IMDb test error (%), UDA with BERT", ["row", "setting", "paper", "measured", "seeds"], rows,
                 ["Measured: final test error of experiments.train runs with --dataset=imdb."])


def ablations(found, study):
    return [(path, a) for path, a in found["ablation"] if a["study"] == study]


def ablation_rows(found, d, study, paper_value, use_validation=False):
    rows = []
    for path, a in ablations(found, study):
        methods = a["methods"]
        for name, e in methods.items():
            if use_validation:
                cell = error(e["validation_accuracy_mean"], e["validation_accuracy_std"])
            else:
                cell = error(e["mean"], e["std"])
            note = ""
            if "paired_vs_base" in e:
                p = e["paired_vs_base"]
                # Always the test accuracy's paired difference, also where the measured column is validation error.
                note = (f"test acc. vs base {100 * p['mean']:+.2f} ± {100 * p['std']:.2f} pts "
                        f"(wins {p['wins']}/{len(a['seeds'])})")
            rows.append([name, f"{a['setting']} ({a['algorithm']})", paper_cell(paper_value(name, e)), cell,
                         len(a["seeds"]), note or short(path, d)])
    return rows


def table3(found, d):
    def paper_value(name, e):
        return paper.TABLE3.get(tuple(e["paper_setting"])) if "paper_setting" in e else None
    return Table("Table 3: validation error (%) by (N, η), paper on CIFAR-10 4000 labels (UDA)",
                 ["row", "setting", "paper", "measured (validation)", "seeds", "note"],
                 ablation_rows(found, d, "sensitivity", paper_value, use_validation=True),
                 ["The CPU grid is the paper's relative to its default (100, 0.01): N × {0.3, 1, 3}, η × {0.1, 1, 10} "
                  "of the CPU run's own (N, η); each row's label in the JSON names its paper (N, η)."])


def figure3(found, d):
    return Table("Fig. 3: influence approximations, final test error (%)",
                 ["row", "setting", "paper", "measured", "seeds", "note"],
                 ablation_rows(found, d, "influence", lambda name, e: paper.FIG3.get(name)),
                 ["The paper plots the validation error over training (see the PNG) and gives these final test errors "
                  "in the text; identity, Neumann and CG act on the last block plus the classifier."])


def figure4(found, d, study, panel):
    rows = ablation_rows(found, d, study, lambda name, e: None, use_validation=(study == "optimizer"))
    measured = "measured (validation)" if study == "optimizer" else "measured"
    return Table(f"Fig. 4 {panel}: {study}", ["row", "setting", "paper", measured, "seeds", "note"], rows,
                 [f"The paper shows this only as a plot: {paper.FIG4[study]}."])


def sec44(found, d):
    rows = []
    for path, b in found["sec44"]:
        where = b["settings"].get("device", "?")
        g = b.get("per_example_gradients", {})
        if "loop_vs_fast" in g:
            rows.append(["per-example gradients: loop / fast", where, f"{paper.SEC44['loop_vs_fast']:.1f}",
                         f"{g['loop_vs_fast']:.2f}", short(path, d)])
        if "vmap_vs_batched_backward" in g and "fast_vs_batched_backward" in g:
            rows.append(["per-example gradients: fast / one batched backward", where, "",
                         f"{g['fast_vs_batched_backward']:.2f}", f"vmap {g['vmap_vs_batched_backward']:.2f}"])
        s = b.get("lambda_step", {})
        exact = paper.SEC44["lambda_step_seconds"]
        for key, paper_ratio in [("identity_vs_exact", exact["identity"] / exact["exact"]),
                                 ("neumann_last_block_vs_exact", paper.SEC44["neumann_last_block_vs_exact"]),
                                 ("cg_last_block_vs_exact", None)]:
            if isinstance(s.get(key), float):
                rows.append([f"Λ step: {key.replace('_vs_', ' / ')}", where,
                             "" if paper_ratio is None else f"{paper_ratio:.2f}", f"{s[key]:.2f}", ""])
        u = b.get("lambda_update", {})
        if "largest_over_smallest" in u:
            sizes = u.get("setup", {}).get("largest_over_smallest", "largest |U| over smallest")
            rows.append([f"Λ update time: {sizes}", where, "flat (no number)", f"{u['largest_over_smallest']:.2f}", ""])
        o = b.get("alg1_overhead", {})
        if "ratio" in o:
            rows.append(["Alg. 1 θ step with weights / without", where, "", f"{o['ratio']:.2f}", ""])
    return Table("Sec. 4.4: efficiency, ratios measured within one run", ["figure", "device", "paper", "measured", "note"],
                 rows, ["Paper: V100 16 GB, 0.94 s vs 18.17 s per-example gradients, Λ step 0.455 s exact vs 0.399 s "
                        "identity, Neumann 4.6× exact, 9 GB vs 15.8 GB. Absolute seconds are in the JSON."])


def synthetic(found, d):
    rows = []
    for path, s in found["synthetic"]:
        base = s["methods"]["pseudo_label"]["test_accuracy"]
        for name, m in s["methods"].items():
            note = paired_note(m["test_accuracy"], base).replace("base", "pseudo_label") if name != "pseudo_label" else ""
            rows.append([name, s["dataset"], "", error(m["mean"], m["std"]), len(s["seeds"]), note])
        w = s["weights"]
        rows.append(["AUROC(−λ → wrong pseudo-label)", s["dataset"], "", f"{w['auroc_low_weight_vs_wrong']:.3f}",
                     len(s["seeds"]), "not an error rate"])
    return Table("Sec. 4.1: synthetic problems (the paper shows Fig. 1/2 only)",
                 ["row", "dataset", "paper", "measured", "seeds", "note"], rows, [])


def robustness(found, d):
    rows = []
    def what(c):  # the kind of OOD images, from the run's flags
        flags = c.get("flags", {})
        if flags.get("ood_noise"):
            return "noise images"
        return f"classes {','.join(map(str, flags['ood_classes']))} held out" if flags.get("ood_classes") else ""

    def how(c):  # what the run changes from the paper's method: hypergradient variant flags, initial λ
        weight_init = c.get("settings", {}).get("weight_init", 1)
        return "; ".join(filter(None, [variant_flags.describe(c.get("flags", {})),
                                       f"λ0={weight_init:g}" if weight_init != 1 else ""]))

    ood_runs = [(path, c) for path, c in found["compare"] if "ood_fraction" in c]
    order = lambda pc: (what(pc[1]) == "noise images", pc[1]["ood_fraction"], how(pc[1]))  # "" (the paper's) first
    for path, c in sorted(ood_runs, key=order):
        setting = f"{c['dataset']}, {100 * c['ood_fraction']:.0f}% OOD unlabeled ({what(c)})".replace(" ()", "")
        changed = how(c)
        setting += f" [{changed}]" if changed else ""
        base = c["methods"]["base"]
        for name, m in c["methods"].items():
            rows.append([name, setting, error(m["mean"], m["std"]), len(c["seeds"]),
                         "" if name == "base" else paired_note(m["test_accuracy"], base["test_accuracy"])])
        tuned = c["methods"].get("tuned_single_lambda")
        if tuned and "ours" in c["methods"]:  # the question: do per-example weights beat one tuned λ?
            chosen = ", ".join(f"{v:g}" for v in tuned.get("lambda_per_seed", []))
            rows.append(["ours − tuned λ", setting, "", len(c["seeds"]),
                         paired_note(c["methods"]["ours"]["test_accuracy"], tuned["test_accuracy"], "tuned λ")
                         + (f"; λ chosen per seed {chosen}" if chosen else "")])
        if "auroc_low_weight_vs_ood" in c:
            rows.append(["AUROC(−λ → OOD)", setting, f"{c['auroc_low_weight_vs_ood']:.3f}", len(c["seeds"]),
                         "per seed " + ", ".join(f"{a:.2f}" for a in c["auroc_low_weight_vs_ood_per_seed"])])
    return Table("Beyond the paper: out-of-distribution unlabeled data", ["row", "setting", "measured", "seeds", "note"],
                 rows, [])


def build(found, d):
    return [table1(found, d), table2(found, d), table3(found, d), figure3(found, d),
            figure4(found, d, "weighting", "left"), figure4(found, d, "optimizer", "centre"),
            figure4(found, d, "validation_size", "right"), sec44(found, d), synthetic(found, d), robustness(found, d)]


def write_markdown(tables, found, path, results_dir):
    from experiments import ablation_plots
    directory = os.path.dirname(os.path.abspath(path))
    lines = ["# influence_ssl results beside the paper", "",
             f"Read from `{os.path.abspath(results_dir)}`. Paper: {paper.SOURCE}. Errors in %, mean ± std over seeds.", ""]
    for table in tables:
        lines.append(render_markdown(table))
    figures = []
    for source, a in found["ablation"]:
        name = f"ablate_{a['study']}_{a['dataset']}.png"
        ablation_plots.draw(a, os.path.join(directory, name))
        figures.append(f"![{a['study']} on {a['dataset']}]({name})")
    if figures:
        lines += ["## Ablation figures", ""] + [f + "\n" for f in figures]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def main(argv):
    quiet_absl_info()
    if len(argv) != 2:
        raise app.UsageError("usage: python -m experiments.report RESULTS_DIR [--markdown out.md]")
    results_dir = argv[1]
    found = collect(results_dir)
    if FLAGS.markdown:
        writable_dir(os.path.dirname(os.path.abspath(FLAGS.markdown)), "--markdown")
    tables = build(found, results_dir)
    counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(found.items())) or "no result JSONs"
    print(f"{results_dir}: {counts}\n")
    print("\n\n".join(render_text(t) for t in tables))
    if FLAGS.markdown:
        print(f"\nmarkdown: {write_markdown(tables, found, FLAGS.markdown, results_dir)}")


def run():
    run_main(main, ReportError)


if __name__ == "__main__":
    run()
