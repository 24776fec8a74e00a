"""What damping does to the exact last-layer hypergradient (method="exact"): the numbers behind DEFAULT_DAMPING.

For each problem of influence_ssl/studies/damping.py it compares last_layer_weight_gradients(..., damping=delta)
(H + delta * mean(diag H) I, Cholesky, float64) with float64 references from numpy's eigh: the pseudo-inverse
restricted to the eigenvalues above cutoff * lambda_max. One table per problem: relative L2 error, sign agreement
and Spearman rank correlation over the unmasked unlabeled rows at each damping, whether Cholesky succeeded, the
drift caused by rounding the inputs to float32 (the training dtype) at the same damping, and how much the
references at other cutoffs disagree with the one at 1e-12 (is the pinv answer even well defined?). Problems:
random Gaussian features; the penultimate ReLU features of an MLP trained on 10 labeled two-moons points (2-logit
head and binary_reparam); a WRN-28-2-head-sized problem without decay and in the trainer's mean-normalised
convention with decay 5e-4 on the kernel only. For the last two, also identity, Neumann and CG against exact at
the default damping, with tf.function timings (float32 inputs).

    python -m experiments.benchmarks.damping_study --json_out=results/speed/damping_study.json
    python -m experiments.benchmarks.damping_study --quick      # without the WRN-head problems
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from experiments.checks import run_main, writable_dir  # noqa: E402
from influence_ssl import influence  # noqa: E402
from influence_ssl.studies import damping  # noqa: E402
from influence_ssl.studies import results as study_results  # noqa: E402
from influence_ssl.studies.protocol import write_json  # noqa: E402

FORMAT = study_results.DAMPING_STUDY_FORMAT
APPROXIMATED = ("wrn_head", "wrn_head_mean")  # the problems whose approximations are compared

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Skip the WRN-head-sized problems (and so the approximations).")
flags.DEFINE_string("json_out", "", f"Also write the tables to this JSON (format {FORMAT}, with provenance).")


def _num(value, spec):
    return "" if value is None else format(value, spec)


def print_table(table):
    """The markdown of one damping_table."""
    counts, lam = table["eigenvalue_counts"], "lambda_max"
    print(f"\n### {table['problem']}: P={table['params']} params, {table['live_rows']} unmasked unlabeled rows, "
          f"l2={table['l2']}, {table['options'] or ''}")
    print(f"eigenvalues/{lam}: min {table['min_eigenvalue_over_lambda_max']:.1e}; "
          + ", ".join(f"below {t}: {n}" for t, n in counts.items())
          + f"; mean(diag H)/{lam} = {table['mean_diag_over_lambda_max']:.2e}")
    print(f"reference = eigh pinv (float64 inputs) with cutoff {table['reference_cutoff']:g}*{lam}; other cutoffs "
          "vs it (rel err / sign agree / Spearman):")
    print("  " + "; ".join(f"{c}: {a['rel_err']:.1e}/{a['sign_agree']:.3f}/{a['spearman']:.4f}"
                           for c, a in table["cutoff_agreement"].items()))
    print("| damping (x mean diag H) | Cholesky | rel. L2 err | sign agree | Spearman | nearest pinv cutoff (rel err) "
          "| ms | f32-input drift |")
    print("|---|---|---|---|---|---|---|---|")
    for row in table["dampings"]:
        drift, nearest = _num(row["float32_drift"], ".1e"), ""
        if row["cholesky"] == "ok" and row["float32_drift"] is None:
            drift = "Cholesky failed (float32 inputs)"
        if row["rel_err_by_cutoff"]:
            cutoff, err = min(row["rel_err_by_cutoff"].items(), key=lambda item: item[1])
            nearest = f"{cutoff} ({err:.1e})"
        print(f"| {row['damping']:g} | {row['cholesky']} | {_num(row['rel_err'], '.2e')} | "
              f"{_num(row['sign_agree'], '.3f')} | {_num(row['spearman'], '.4f')} | {nearest} | "
              f"{_num(row['ms'], '.0f')} | {drift} |")
    ident = table["identity"]
    print(f"| identity (H^-1 = I) | - | {ident['rel_err']:.2e} | {ident['sign_agree']:.3f} | "
          f"{ident['spearman']:.4f} | | | |", flush=True)


def print_approximations(title, rows):
    print(f"\n### approximations vs exact, {title}")
    print("| method | rel. L2 err | after best scalar rescale | sign agree | Spearman | ms (tf.function, f32) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['rel_err']:.2e} | {r['rel_err_after_best_scale']:.2e} | "
              f"{r['sign_agree']:.3f} | {r['spearman']:.4f} | {r['ms']:.1f} |", flush=True)


def main(argv):
    del argv
    if FLAGS.json_out:  # before the study, not after it
        writable_dir(os.path.dirname(os.path.abspath(FLAGS.json_out)), "--json_out")
    print(f"TF {tf.__version__}, numpy {np.__version__}; default damping {influence.DEFAULT_DAMPING:g}")
    problems = damping.problems(quick=FLAGS.quick)
    tables, approximations = {}, {}
    for name, p in problems.items():
        options = dict(p["options"])
        tables[name] = damping.damping_table(p["title"], p["prob"], options.pop("l2", 0.0), **options)
        print_table(tables[name])
    for name in APPROXIMATED:
        if name in problems:
            approximations[name] = damping.approximations(problems[name]["prob"], **problems[name]["options"])
            print_approximations(problems[name]["title"], approximations[name])
    if FLAGS.json_out:
        write_json(FLAGS.json_out, {"format": FORMAT, "default_damping": influence.DEFAULT_DAMPING,
                                    "quick": FLAGS.quick, "problems": tables, "approximations": approximations})
        print(f"results: {FLAGS.json_out}")


if __name__ == "__main__":
    run_main(main)
