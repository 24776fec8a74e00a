"""The one timing loop of the pergrad autotunes (conv.fastest_impl, api.fastest_method).

Candidates are timed in interleaved rounds, alternating their order, after one warm-up call each (which
traces it); the median per candidate is kept. Interleaving spreads the machine's drift and the allocator's
first growth over all candidates, where timing one after another would hand them to whichever runs first.
"""
import time

ROUNDS = 3


def median_seconds(fns, args, rounds=ROUNDS):
    """{name: median seconds of fns[name](*args)}; each call's result is fetched (`.numpy()`), so the time
    includes the computation and not just its dispatch."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn(*args).numpy()
    for round_ in range(rounds):
        order = list(fns) if round_ % 2 == 0 else list(reversed(list(fns)))
        for name in order:
            start = time.perf_counter()
            fns[name](*args).numpy()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}
