"""The printed report of experiments.benchmarks.sec44 (format_report of its results JSON), with the paper's
Sec. 4.4 figures for comparison."""
from experiments.benchmarks.sec44_blocks import PERGRAD_METHODS, ratio

# Sec. 4.4 (one V100 16GB), for the printed comparison.
PAPER = {"loop_s": 18.17, "fast_s": 0.94, "exact_s": 0.455, "identity_s": 0.399, "neumann_vs_exact": 4.6,
         "exact_gb": 9.0, "neumann_gb": 15.8}


def _seconds(value):
    if not isinstance(value, float):
        return str(value)
    return f"{value:.4f}" if value >= 1e-3 else f"{value * 1e6:.1f} µs"


def _times(value):
    return f"{value:.2f}x" if isinstance(value, float) else "-"


def _memory(value, baseline=None):
    if isinstance(value, dict):
        value = value.get("peak_bytes", value.get("value"))
    if not isinstance(value, int):
        return "-" if value is None else str(value)
    text = f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"
    if isinstance(baseline, int):
        text += f" (+{(value - baseline) / 2**20:.0f} MiB)"
    return text


def format_report(results):
    s = results["settings"]
    lines = [f"Sec. 4.4 efficiency, {s['device']}, TF {s['tf_version']}, median of {s['repeats']} timed calls "
             f"after a warm-up, paper sizes: {s['paper_sizes']}"]
    memory = results["memory"]
    if "per_example_gradients" in results:
        r = results["per_example_gradients"]
        setup = r["setup"]
        entries = [("", r)] + [(k, r[k]) for k in r if k.startswith("batch_")]
        for key, e in entries:
            mem = memory.get("per_example_gradients" + (f"_{key}" if key else ""), {})
            baseline = mem.get("baseline")
            lines += ["", f"per_example_gradients: {setup['arch']} ({setup['num_params']:,} parameters, all of them), "
                          f"batch {e['setup']['batch']}, inference-mode BN",
                      "| method | median s | x batched backward | x fast | peak memory |", "|---|---|---|---|---|"]
            for m in ("batched_backward", *PERGRAD_METHODS):
                vs = _times(e.get(f"{m}_vs_batched_backward", 1.0 if m == "batched_backward" else None))
                vs_fast = _times(ratio(e[m], e["fast"]))
                lines.append(f"| {m} | {_seconds(e[m])} | {vs} | {vs_fast} | {_memory(mem.get(m), baseline)} |")
            lines.append(f"(fast ran {e.get('fast_runs', '?')}; its peak memory includes timing both candidates once)")
            if isinstance(baseline, int):
                lines.append(f"(memory: peak RSS of a process running only that method; (+...) is above a process "
                             f"that builds the model and inputs and runs nothing, {_memory(baseline)})")
            elif "reason" in mem:
                lines.append(f"(memory: {mem['reason']})")
        lines.append(f"paper (V100, B=256): fast {PAPER['fast_s']} s, loop {PAPER['loop_s']} s "
                     f"({PAPER['loop_s'] / PAPER['fast_s']:.1f}x fast), vmap out of memory on 16 GB")
    if "lambda_step" in results:
        r = results["lambda_step"]
        setup = r["setup"]
        mem = memory.get("lambda_step", {})
        b = setup["batches"]
        lines += ["", f"lambda_step: one Λ step (trainer.outer_step), {setup['arch']}, batches {b['labeled']} "
                      f"labeled / {b['unlabeled']} unlabeled (weak + strong view) / {b['validation']} validation",
                  "| method | median s | x exact | peak memory |", "|---|---|---|---|"]
        for name in setup["entries"]:
            lines.append(f"| {name} | {_seconds(r[name])} | {_times(r.get(f'{name}_vs_exact', 1.0))} "
                         f"| {_memory(mem.get(name), mem.get('baseline'))} |")
        if "reason" in mem:
            lines.append(f"(memory: {mem['reason']})")
        lines.append(f"paper (V100, 64/256/320): exact {PAPER['exact_s']} s, identity {PAPER['identity_s']} s, "
                     f"Neumann (last block) {PAPER['neumann_vs_exact']}x exact; memory {PAPER['exact_gb']} GB exact vs "
                     f"{PAPER['neumann_gb']} GB Neumann")
    if "lambda_update" in results:
        r = results["lambda_update"]
        sizes = [k for k in r if k.isdigit()]
        lines += ["", f"lambda_update: ExampleWeights.apply_gradients with M-Adam, {r['setup']['update_batch']} ids, "
                      f"median of {r['setup']['repeats']}",
                  "| U | median per update |", "|---|---|"]
        lines += [f"| {int(k):,} | {_seconds(r[k])} |" for k in sizes]
        lines.append(f"largest / smallest table: {r['largest_over_smallest']:.2f}x")
    if "alg1_overhead" in results:
        r = results["alg1_overhead"]
        setup = r["setup"]
        b = setup["batches"]
        lines += ["", f"alg1_overhead: {setup['arch']}, batches {b['labeled']}/{b['unlabeled']}/{b['validation']}, "
                      f"a Λ step ({setup['influence']}) every N = {setup['inner_steps']} θ steps",
                  "| | median s per θ step |", "|---|---|",
                  f"| base (no weights) | {_seconds(r['base_step'])} |",
                  f"| with weights ((N θ + 1 Λ) / N) | {_seconds(r['weighted_step'])} |",
                  f"| plain compiled Keras train_step (same model, loss, batch) | {_seconds(r['keras_step'])} |",
                  f"ratio with / without weights: {r['ratio']:.3f}; base / Keras: {r['base_vs_keras']:.3f}"]
    return "\n".join(lines)
