r"""Every measured result under RESULTS_DIR beside the paper's numbers: one table per paper table and figure.

  python -m experiments.report out --markdown out/report/report.md

Reads the JSONs written by experiments.train (results.json, format influence_ssl.run/1 with its run_config),
the studies (compare, synthetic, ablate: influence_ssl.study/1, told apart by "study") and
benchmarks.sec44, recognised by their "format" key. A result JSON of an unknown or older format stops the
report with one line naming the file; other JSONs (config.json, split.json, run-cache records) are skipped.
Numbers are test error rates in % unless a table says otherwise; "±" is the std over seeds. Every comparison
row gives the paired difference's mean ± std, 95% CI, sign-flip permutation p (Holm across the table) and
wins/ties/losses, worded by influence_ssl.stats.verdict. The paper's numbers come from
experiments.paper_numbers, the only numbers typed in by hand.
"""
import collections
import os

import numpy as np
from absl import app, flags

from experiments import define_markdown, quiet_absl_info, variants_table
from experiments import paper_numbers as paper
from experiments.checks import run_main, writable_dir
from influence_ssl.metrics import mean_std
from influence_ssl.studies.report import (
    Pair,
    ResultsError,
    Table,
    auroc_cell,
    collect,
    departures,
    describe,
    error,
    error_of,
    is_ood,
    ood_kind,
    ood_share_cell,
    per_seed_cell,
    render_markdown,
    render_text,
    setting_key,
    study_pair,
    study_rows,
    table,
)

FLAGS = flags.FLAGS
define_markdown()

COLUMNS = ["row", "setting", "paper", "measured", "seeds", "note"]
GPU_ONLY = "needs a GPU: not run (flag files in experiments/configs/)"
LABELS = {"uda": "UDA", "fixmatch": "FixMatch", "pseudo_label": "Pseudo-Label"}
TABLE1_NAMES = {("uda", "none"): "UDA", ("uda", "per_example"): "Ours (UDA)", ("fixmatch", "none"): "FixMatch* (CTA)",
                ("fixmatch", "per_example"): "Ours (FixMatch, CTA)"}


def paper_cell(value):
    if value is None:
        return ""
    mean, std = value if isinstance(value, tuple) else (value, None)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def short(path, results_dir):
    return os.path.relpath(path, results_dir)


def with_paper(rows, paper_of=lambda name: None):
    """Study rows with a paper column after the setting."""
    return [[r[0], r[1], paper_cell(paper_of(r[0])), *r[2:]] for r in rows]


def runs(found, dataset_in):
    """(path, run_config, results) of the experiments.train runs on these datasets, reversed controls left out."""
    out = [(path, r["run_config"], r) for path, r in found["run"]]
    return [(p, c, r) for p, c, r in out
            if c["data"]["dataset"] in dataset_in and not c["train"]["reverse_hypergradient"]]


# ----- the tables

def table1(found, d):
    """Table 1 rows: every paper cell (measured where a GPU run exists), then the CPU-scale comparisons."""
    groups = collections.defaultdict(list)
    for _, c, r in runs(found, ("cifar10", "svhn")):
        algorithm = c["algorithm"]["algorithm"]
        if algorithm == "fixmatch" and c["algorithm"]["augment"] != "cta":
            algorithm = "fixmatch_ra"
        groups[(algorithm, c["train"]["weighting"], c["data"]["dataset"], c["data"]["num_labeled"])].append(
            r["test_accuracy"])
    measured = {(TABLE1_NAMES[key[:2]], *key[2:]): (error(*mean_std(acc)), len(acc))
                for key, acc in groups.items() if key[:2] in TABLE1_NAMES}
    rows = []
    for (row, dataset, labels), value in paper.TABLE1.items():
        cell, n = measured.pop((row, dataset, labels), ("", ""))
        rows.append([row, f"{dataset}, {labels} labels", paper_cell(value), cell, n, "" if cell else GPU_ONLY, None])
    for (row, dataset, labels), (cell, n) in measured.items():
        rows.append([row, f"{dataset}, {labels} labels", "", cell, n, "not a paper cell", None])
    for path, s in found["compare"]:
        c = s["config"]
        if is_ood(c) or c["data"]["dataset"] == "imdb":
            continue  # the robustness table, Table 2
        label = LABELS[c["algorithm"]["algorithm"]]
        setting = f"{'CPU ' if c['data']['dataset'] == 'digits' else ''}{c['data']['dataset']}, " \
                  f"{c['data']['num_labeled']} labels"
        rows += with_paper(study_rows(s, setting, lambda m: label if m == "base" else f"{m} ({label})",
                                      note=short(path, d)))
    return table("Table 1: test error (%), WRN-28-2 on CIFAR-10 / SVHN (and CPU-scale comparisons)", COLUMNS, rows,
                 ["Measured: final test error of experiments.train runs (mean ± std over seeds, unpaired); FixMatch's "
                  "own protocol is the median of the last 20 evaluations (results.json median_last20_test_accuracy)."])


# Table 2's measured columns: the three protocols of a run's test evaluations.
TABLE2_COLUMNS = ["row", "setting", "paper", "final", "median of last 20 evals", "best eval (test-selected)", "seeds",
                  "note"]


def evaluation_protocols(results):
    """(final, median, best) test accuracy of one run's results.json: the last evaluation, the median of the last
    20 (all of a Table 2 run's 20) and the best (UDA's protocol: chosen on the test set, results.json keeps it
    apart under test_selected); None where the run has no such number."""
    best = results.get("test_selected", {}).get("best_test_accuracy")
    return results["test_accuracy"], results.get("median_last20_test_accuracy"), best


def protocol_cells(runs_results):
    """[final, median, best] cells, each the test error 'e ± s' over the runs (results.json dicts) that have it."""
    per_protocol = zip(*(evaluation_protocols(r) for r in runs_results))
    return [error_of([v for v in values if v is not None]) for values in per_protocol]


def table2(found, d):
    groups = collections.defaultdict(list)
    for _, c, r in runs(found, ("imdb",)):
        if c["train"]["weighting"] == "per_example":
            row = "Ours"
        else:
            row = "Supervised" if c["train"]["weight_init"] == 0 else "UDA"
        groups[(row, c["text"]["max_seq_length"])].append(r)
    rows = []
    for row, value in paper.TABLE2.items():
        measured = groups.pop((row, 128), [])
        cells = protocol_cells(measured) if measured else ["", "", ""]
        rows.append([row, "IMDb, 20 labels, 128 tokens", paper_cell(value), *cells, len(measured) or "",
                     "" if measured else GPU_ONLY, None])
    for (row, length), measured in groups.items():
        rows.append([row, f"IMDb, 20 labels, {length} tokens", "", *protocol_cells(measured), len(measured), "",
                     None])
    names = {"base": "UDA", "ours": "Ours", "ours_reversed": "Ours, reversed"}
    for path, s in found["compare"]:  # experiments.compare --dataset=imdb: UDA, ours and the control, paired
        if s["config"]["data"]["dataset"] == "imdb":
            setting = f"IMDb, {s['config']['text']['max_seq_length']} tokens (compare)"
            for r in with_paper(study_rows(s, setting, lambda m: names.get(m, m), note=short(path, d))):
                rows.append([*r[:4], "", "", *r[4:]])  # a study keeps the final accuracy only
    return table("Table 2: IMDb test error (%), UDA with BERT", TABLE2_COLUMNS, rows,
                 ["Measured: experiments.train runs with --dataset=imdb, mean ± std over seeds of the final test "
                  "error, of the median of the last 20 evaluations (every 500 steps: all 20 of a 10k-step run) and "
                  "of the best evaluation. The best is UDA's reported protocol (a choice made on the test set, kept "
                  "apart in results.json under test_selected); the paper does not say which one its Table 2 uses. "
                  "Studies (compare) report the final test error."])


def ablation_table(found, d, study, title, notes, paper_of=lambda entry, name: None, validation=False):
    rows = []
    for path, a in found["ablation"]:
        if a["ablation"] != study:
            continue
        c = a["config"]
        dataset, algorithm = c["data"]["dataset"], c["algorithm"]["algorithm"]
        labels = f"{c['data']['num_labeled']} labels"
        if study == "weighting":  # the axis value n is in the row's name, method@n (as the label curve's)
            setting = f"{dataset}, n labels ({algorithm})"
        elif study == "validation_size":
            setting = f"{dataset}, {labels}, n validation ({algorithm})"
        else:
            setting = f"{dataset}, {labels} ({algorithm})"
        measured = (lambda e: error_of(e["validation_accuracy"])) if validation else None
        rows += with_paper(study_rows(a, setting, measured=measured, note=short(path, d)),
                           lambda name, m=a["methods"]: paper_of(m[name], name) if name in m else None)
    columns = COLUMNS[:3] + ["measured (validation)" if validation else "measured"] + COLUMNS[4:]
    return table(title, columns, rows, notes)


def table3(found, d):
    return ablation_table(
        found, d, "sensitivity", "Table 3: validation error (%) by (N, η), paper on CIFAR-10 4000 labels (UDA)",
        ["The CPU grid is the paper's relative to its default (100, 0.01): N × {0.3, 1, 3}, η × {0.1, 1, 10} of the "
         "CPU run's own (N, η); each row's label names its paper (N, η). Comparisons: test accuracy."],
        lambda e, name: paper.TABLE3.get(tuple(e["paper"])) if "paper" in e else None, validation=True)


def figure3(found, d):
    return ablation_table(
        found, d, "influence", "Fig. 3: influence approximations, final test error (%), paper on CIFAR-10 (UDA)",
        ["The paper plots the validation error over training (see the PNG) and gives these final test errors in the "
         "text; identity, Neumann and CG act on the last block plus the classifier."],
        lambda e, name: paper.FIG3.get(name))


def figure4(found, d, study, panel):
    return ablation_table(found, d, study, f"Fig. 4 {panel}: {study}",
                          [f"The paper shows this only as a plot: {paper.FIG4[study]}."]
                          + (["Comparisons: test accuracy."] if study == "optimizer" else []),
                          validation=(study == "optimizer"))


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
    return Table("Sec. 4.4: efficiency, ratios measured within one run",
                 ["figure", "device", "paper", "measured", "note"], rows,
                 ["Paper: V100 16 GB, 0.94 s vs 18.17 s per-example gradients, Λ step 0.455 s exact vs 0.399 s "
                  "identity, Neumann 4.6× exact, 9 GB vs 15.8 GB. Absolute seconds are in the JSON."])


def synthetic(found, d):
    rows = []
    for path, s in found["synthetic"]:
        dataset, w = s["config"]["data"]["dataset"], s.get("weights", {})
        rows += study_rows(s, dataset, note=short(path, d))
        rows.append(["AUROC(−λ → wrong pseudo-label)", dataset, auroc_cell(w.get("auroc_low_weight_vs_wrong"), w.get(
            "auroc_low_weight_vs_wrong_per_seed")), len(s["seeds"]), "not an error rate; pooled (per seed)", None])
    return table("Sec. 4.1: synthetic problems (the paper shows Fig. 1/2 only)",
                 ["row", "dataset", "measured", "seeds", "note"], rows)


def robustness(found, d):
    def how(c):
        return "; ".join(departures(c))

    rows = []
    grouped = {path for group in variant_groups(found) for path, _ in group[1:]}
    studies = [(path, s) for path, s in found["compare"] if is_ood(s["config"]) and path not in grouped]
    order = lambda ps: (ood_kind(ps[1]["config"]) == "noise images", ps[1]["config"]["data"]["ood_fraction"],
                        how(ps[1]["config"]))  # "" (the paper's method) first
    for path, s in sorted(studies, key=order):
        c = s["config"]
        setting = f"{c['data']['dataset']}, {100 * c['data']['ood_fraction']:.0f}% OOD unlabeled ({ood_kind(c)})"
        setting += f" [{how(c)}]" if how(c) else ""
        n = len(s["seeds"])
        rows += study_rows(s, setting, note=short(path, d))
        if "auroc_low_weight_vs_ood" in s:
            rows.append(["AUROC(−λ → OOD)", setting, auroc_cell(s["auroc_low_weight_vs_ood"],
                                                                 s.get("auroc_low_weight_vs_ood_per_seed")), n,
                         "not an error rate; pooled (per seed)", None])
        if "ood_share_lowest_5pct_per_seed" in s:
            rows.append(["OOD share among the lowest 5% of λ", setting, ood_share_cell(s), n, "per seed " + ", ".join(
                f"{100 * v:.0f}%" for v in s["ood_share_lowest_5pct_per_seed"]), None])
    return table("Beyond the paper: out-of-distribution unlabeled data",
                 ["row", "setting", "measured", "seeds", "note"], rows)


def variant_groups(found):
    """The OOD studies that change the paper's hypergradient, each list headed by the paper's method in the same
    setting: [[(path, paper's), (path, variant), ...], ...]. A variant without its paper's method stays in the
    robustness table."""
    ood = [(path, s) for path, s in found["compare"] if is_ood(s["config"])]
    papers = {setting_key(s["config"]): (path, s) for path, s in ood if not describe(s["config"])}
    groups = collections.defaultdict(list)
    for path, s in ood:
        if describe(s["config"]) and setting_key(s["config"]) in papers:
            groups[setting_key(s["config"])].append((path, s))
    return [[papers[key], *sorted(variants, key=lambda ps: ps[0])] for key, variants in sorted(groups.items())]


def variants(found, d):
    """Per setting, each hypergradient variant paired with the paper's method (experiments.variants_table)."""
    return [variants_table.table_of([(short(path, d), s) for path, s in group],
                                    f"Beyond the paper: hypergradient variants against the paper's method "
                                    f"({setting_of(group[0][1]['config'])})")
            for group in variant_groups(found)]


BEYOND = ["row", "setting", "measured", "seeds", "note"]


def setting_of(c):
    """'digits, 20 labels (fixmatch, cta)' of a study's config, with its OOD examples where it has any."""
    data, a = c["data"], c["algorithm"]
    what = f"{data['dataset']}, {data['num_labeled']} labels ({a['algorithm']}"
    what += f", {a['augment']})" if a["algorithm"] == "fixmatch" else ")"
    if is_ood(c):
        what += f", {100 * data['ood_fraction']:.0f}% OOD unlabeled"
    return what


def recipes(found, d):
    """The paper's recipe against the authors' code, switch by switch: accuracy paired as the study pairs it,
    how far λ moved, and AUROC(−λ → wrong pseudo-label) paired as the study pairs it."""
    tables = []
    for path, a in found["ablation"]:
        if a["ablation"] != "recipe":
            continue
        setting, methods = setting_of(a["config"]), a["methods"]
        rows = study_rows(a, setting, note=short(path, d))
        for row in rows:
            entry = methods.get(row[0], {})
            if entry.get("updates_per_example_mean"):
                q = entry["lambda_change_quantiles"]
                moved = (f"Λ updates per example {entry['updates_per_example_mean']:.1f}, |λ − 1| median "
                         f"{q['0.5']:.3f}, 90% {q['0.9']:.3f}, max {q['1.0']:.3f}")
                row[4] = "; ".join(filter(None, [row[4], moved]))
        tables.append(table(f"Beyond the paper: the paper's recipe against the authors' code ({setting}), test "
                            "error (%)", BEYOND, rows,
                            ["Each switch of the authors' code alone on top of the paper's recipe "
                             "(docs/deviations.md); the λ histograms are in the study JSON and its PNG."]))
        aurocs = []
        for key in a.get("paired_auroc", {}):
            x, y = key.split(" - ")
            values = {m: methods[m]["weights"]["auroc_low_weight_vs_wrong_per_seed"] for m in (x, y)}
            aurocs.append([x, setting, per_seed_cell(values[x]), len(a["seeds"]), "",
                           Pair(values[x], values[y], y, (a, key, "paired_auroc"), scale=1.0)])
        if aurocs:
            tables.append(table(f"Beyond the paper: AUROC(−λ → wrong pseudo-label) by recipe ({setting})", BEYOND,
                                aurocs, ["AUROC per seed, mean ± std; comparisons in AUROC units."]))
    return tables


def weighting_rules(found, d):
    """Per setting: test error of each method against base and against ours, then the weights as detectors
    of wrong pseudo-labels (and OOD examples) against ours' λ, and how alike they rank the examples; last,
    learned λ on top of a rule against the rule alone in every setting (one row each, so one family)."""
    tables, on_rules = [], []
    for path, s in sorted(found["weighting_rules"], key=lambda ps: (is_ood(ps[1]["config"]),
                                                                     ps[1]["config"]["data"]["num_labeled"])):
        setting, methods, n = setting_of(s["config"]), s["methods"], len(s["seeds"])
        tables.append(table(f"Beyond the paper: the field's weighting rules ({setting}), test error (%), "
                            "against base", BEYOND, study_rows(s, setting, note=short(path, d))))
        rows = [[name, setting, error_of(methods[name]["values"]), n, "",
                 study_pair(s, name, "ours", table="paired_vs_ours")]
                for name in methods if f"{name} - ours" in s["paired_vs_ours"]]
        tables.append(table(f"Beyond the paper: the field's weighting rules ({setting}), against ours", BEYOND,
                            rows))
        on_rules += [[x, setting, error_of(methods[x]["values"]), n, short(path, d),
                      study_pair(s, x, y, table="paired_on_rule")]
                     for x, y in (key.split(" - ") for key in s.get("paired_on_rule", {}))]
        for kind, what in (("auroc_wrong", "wrong pseudo-label"), ("auroc_ood", "OOD example")):
            scores = {row: e for row, e in s.get("scores", {}).items() if kind in e}
            if not scores:
                continue
            paired = s.get("paired_scores", {}).get(kind, {})
            rows = []
            for row, entry in scores.items():
                key = f"{row} - ours λ"
                pair = (Pair(entry[kind], scores["ours λ"][kind], "ours λ", (s["paired_scores"], key, kind),
                             scale=1.0) if key in paired else None)
                note = ""
                if kind == "auroc_ood":
                    low, overall = entry["ood_share_lowest_5pct"], entry["ood_share"]
                    note = (f"OOD share among the lowest 5%: {100 * np.nanmean(low):.1f}% against "
                            f"{100 * np.nanmean(overall):.1f}% of all")
                rows.append([row, setting, per_seed_cell(entry[kind]), n, note, pair])
            notes = ["λ: learned; w: the weight the run's own mask or rule gives each example under its final model. "
                     "AUROC per seed, mean ± std; comparisons in AUROC units."]
            if kind == "auroc_wrong" and s.get("rank_agreement"):
                notes.append("Spearman ρ between ours' λ and each rule's weight (same seed), mean over seeds: "
                             + ", ".join(f"{m} {e['spearman_mean']:+.3f}" for m, e in s["rank_agreement"].items()))
            tables.append(table(f"Beyond the paper: low weights as a detector of a {what} ({setting})", BEYOND,
                                rows, notes))
    if on_rules:
        tables.append(table("Beyond the paper: learned λ on top of a weighting rule, against the rule alone",
                            BEYOND, on_rules))
    return tables


def label_curve(found, d):
    rows = []
    for path, s in found["label_curve"]:
        rows += study_rows(s, setting_of({**s["config"], "data": {**s["config"]["data"], "num_labeled": "n"}}),
                           note=short(path, d))
    return table("Beyond the paper: base accuracy against the label count, test error (%)", BEYOND, rows,
                 ["Each count paired against the next smaller one."])


def pergrad_speed(found, d):
    rows = []
    for path, b in found["pergrad_speed"]:
        settings, note = b["settings"], short(path, d)
        for timing in b["batches"]:
            for name, m in timing["methods"].items():
                rows.append([name, f"WRN-{settings['depth']}-{settings['width']}, batch {timing['batch']}",
                             f"{m['median_ms']:.1f}", f"{m['vs_batched_backward']:.2f}", note])
                note = ""
    return Table("Sec. 4.4: per-example gradient speed (this machine's CPUs)",
                 ["method", "setting", "median ms", "× one batched backward", "note"], rows,
                 ["Median of interleaved calls after a warm-up, all in one run (the JSON has the spread)."])


def augment_speed(found, d):
    rows = []
    for path, b in found["augment_speed"]:
        note = short(path, d)
        for setting in b["results"]:
            for name, m in setting["augmentations"].items():
                rows.append(["×".join(map(str, setting["shape"])), name, f"{m['per_image']['median_ms']:.2f}",
                             f"{m['batched']['median_ms']:.2f}", f"{m['per_image_over_batched']:.1f}", note])
                note = ""
    return Table("Beyond the paper: augmentation speed, a batch at once against one image at a time (this machine's "
                 "CPUs)", ["batch", "augmentation", "per image, ms", "batched, ms", "per image / batched", "note"],
                 rows, ["Median of interleaved calls after a warm-up, all in one run, on --threads threads."])


def madam_epsilon(found, d):
    rows = []
    for path, b in found["madam_epsilon"]:
        m, offset = b["means"], b["settings"]["t_offset"]
        rows.append([f"t = {offset + 1}..{offset + m['lambda_steps']}", f"{m['mean_abs_g']:.2e}",
                     f"{m['mean_sqrt_v_hat']:.2e}", f"{100 * m['share_below']['1e-07']:.0f}%",
                     f"{100 * m['share_below']['1e-08']:.0f}%", f"{m['mean_abs_step']['1e-07']:.2e}",
                     f"{m['mean_abs_step']['1e-08']:.2e}", f"{m['mean_abs_step']['1e-30']:.2e}", short(path, d)])
    return Table("Text: M-Adam's ε against the tiny BERT's hypergradients (means over the Λ steps)",
                 ["Λ steps", "mean |g|", "mean √v̂", "rows √v̂ < 1e-7", "rows √v̂ < 1e-8", "mean |Δλ|, ε = 1e-7",
                  "ε = 1e-8", "no ε", "note"], rows,
                 ["experiments.benchmarks.madam_epsilon on a tiny BERT (2 layers, hidden 32) with the Table 2 flags; "
                  "docs/design/text_path.md reads it."])


def build(found, d):
    return [table1(found, d), table2(found, d), table3(found, d), figure3(found, d),
            figure4(found, d, "weighting", "left"), figure4(found, d, "optimizer", "centre"),
            figure4(found, d, "validation_size", "right"), sec44(found, d), pergrad_speed(found, d),
            synthetic(found, d), robustness(found, d), *variants(found, d), *recipes(found, d), label_curve(found, d),
            *weighting_rules(found, d), madam_epsilon(found, d), augment_speed(found, d)]


def write_markdown(tables, found, path, results_dir):
    """The tables as markdown, then the picture beside each result JSON (<name>.png, as the entry points name
    it) linked; an ablation without one gets it drawn beside the markdown. Paths are relative to the markdown."""
    from experiments import ablation_plots
    from influence_ssl.runs.provenance import command

    directory = os.path.dirname(os.path.abspath(path))
    source = os.path.relpath(os.path.abspath(results_dir), directory)
    lines = ["# influence_ssl results beside the paper", "",
             f"Generated by `{command()}` from the result JSONs under `{source}` (each with its provenance: commit, "
             f"command, versions, device, date). Paper: {paper.SOURCE}. Errors in %, mean ± std over seeds.", ""]
    lines += [render_markdown(t) for t in tables]
    figures = []
    for kind in sorted(found):
        for json_path, data in found[kind]:
            picture = os.path.splitext(json_path)[0] + ".png"
            if not os.path.exists(picture) and kind == "ablation":
                picture = os.path.join(directory, f"ablate_{data['ablation']}_{data['config']['data']['dataset']}.png")
                ablation_plots.draw(data, picture)
            if os.path.exists(picture):
                figures.append(f"![{os.path.relpath(json_path, results_dir)}]"
                               f"({os.path.relpath(os.path.abspath(picture), directory)})")
    if figures:
        lines += ["## Figures", ""] + [f + "\n" for f in figures]
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
    run_main(main, ResultsError)


if __name__ == "__main__":
    run()
