"""Timing and memory helpers shared by the benchmarks (pergrad_speed, sec44).

Every timed call is forced to finish by fetching its outputs to numpy; warm-up calls (which
include tracing) are timed apart from the measured ones.
"""
import os
import resource
import time

import tensorflow as tf


def xent(logits, labels):
    """Per-example sparse softmax cross-entropy [B]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def fetch(out):
    """Every tensor of `out` as numpy: the call has really finished when this returns."""
    return [t.numpy() for t in tf.nest.flatten(out)]


def time_round_robin(fns, args, repeats, catch=(), failed=None):
    """{name: (warm-up s, [call s, ...])}. One warm-up call each (tracing included), then the
    timed calls interleave the functions, so load from other processes hits all of them alike.

    A function whose warm-up raises one of the exception types `catch` (e.g. out of memory) is left
    out of the timings; with a dict `failed`, failed[name] = the exception.
    """
    warmups, times = {}, {}
    for name, fn in fns.items():
        start = time.perf_counter()
        try:
            fetch(fn(*args))
        except catch as e:
            if failed is not None:
                failed[name] = e
            continue
        warmups[name] = time.perf_counter() - start
        times[name] = []
    for _ in range(repeats):
        for name in times:
            start = time.perf_counter()
            fetch(fns[name](*args))
            times[name].append(time.perf_counter() - start)
    return {name: (warmups[name], times[name]) for name in times}


def peak_rss_bytes():
    """This process's peak resident memory (Linux VmHWM; else ru_maxrss, which Linux gives in KiB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if os.uname().sysname == "Darwin" else rss * 1024
