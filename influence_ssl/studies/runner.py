"""One study runner: (base configuration, named methods, seeds, one rule for choosing on validation) -> results.

A method is a list of candidate overrides of the base configuration (one, or a grid); per seed, the candidate
whose run ends with the lowest final VALIDATION loss is kept (the one selection rule: the test set plays no
part). A method may instead mirror another's choice with overrides of its own (the reversed control runs at
ours' chosen η). Within a seed every run shares the split, the initialisation, the data order and the
augmentations, so differences between methods are paired.

Every run is kept in a RunCache under the hash of its configuration: a restarted study, or another study that
needs the same run, reads it instead of training again; the same configuration reached twice (the tuned λ at
the preset's λ is the base run) is trained once.
"""
import dataclasses
import json
import math
import os
import time

import numpy as np

from influence_ssl.runs import build, execute
from influence_ssl.runs.config import config_hash, hashed_values
from influence_ssl.runs.provenance import provenance


@dataclasses.dataclass(frozen=True)
class Method:
    """A row of a study. candidates: override dicts of the base configuration (by flag name), chosen among on
    validation; mirror: start from the chosen overrides of that (earlier) method, with `overrides` and then
    each candidate on top (learned λ over SoftMatch at SoftMatch's chosen momentum, η chosen). `x` places the
    row on a study's axis (label count, validation size); `paper` names the paper's setting it stands for."""

    name: str
    label: str = ""
    candidates: tuple = ({},)
    mirror: str = None
    overrides: dict = None
    x: float = None
    paper: tuple = None


def lowest_validation_loss(candidates):
    """The selection rule: the (overrides, record, ...) whose run ends with the lowest validation loss (the first
    on ties; a diverged run's loss is inf, and a NaN loss counts as inf: neither is chosen over a finished run)."""
    return min(candidates, key=lambda c: _loss(c[1]))


def _loss(record):
    loss = record["validation_loss"]
    return loss if loss is not None and math.isfinite(loss) else math.inf


ARRAY_KEYS = ("lambda", "counts", "wrong", "ood")  # execute.weight_arrays


def arrays_fit(config, record, arrays):
    """Whether saved per-example arrays can stand for `config`'s run: none for a diverged run; else every key of
    one length, with OOD rows where the configuration puts out-of-distribution examples in the unlabeled set."""
    if "diverged" in record:
        return arrays is None
    if arrays is None or any(key not in arrays for key in ARRAY_KEYS):
        return False
    if len({len(arrays[key]) for key in ARRAY_KEYS}) != 1:
        return False
    return not (config.data.ood and config.data.ood_fraction > 0) or bool(np.any(arrays["ood"]))


class RunCache:
    """One JSON (and, for a finished run, one .npz of per-example arrays) per run, named by its config hash.
    A file is written whole or not at all; its configuration is checked on reading."""

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def paths(self, config):
        stem = os.path.join(self.directory, config_hash(config))
        return stem + ".json", stem + ".npz"

    def load(self, config):
        """(record, arrays or None) of a saved run of `config`, or None."""
        record_path, arrays_path = self.paths(config)
        if not os.path.exists(record_path):
            return None
        with open(record_path) as f:
            saved = json.load(f)
        if json.dumps(saved.get("key"), sort_keys=True) != json.dumps(hashed_values(config), sort_keys=True):
            return None  # a hash collision or a hand-edited file: train it again
        arrays = None
        if os.path.exists(arrays_path):
            with np.load(arrays_path, allow_pickle=False) as f:
                arrays = {key: f[key] for key in f.files}
        if not arrays_fit(config, saved["record"], arrays):
            return None  # a finished run's arrays missing, cut or without its OOD rows: train it again
        return saved["record"], arrays

    def save(self, config, record, arrays):
        record_path, arrays_path = self.paths(config)
        if arrays is not None:
            np.savez_compressed(arrays_path + ".tmp.npz", **arrays)
            os.replace(arrays_path + ".tmp.npz", arrays_path)
        body = {"key": hashed_values(config), "record": record,
                "provenance": provenance(config=json.loads(config.dumps()))}
        with open(record_path + ".tmp", "w") as f:
            json.dump(body, f, indent=1, sort_keys=True)
        os.replace(record_path + ".tmp", record_path)


class Runs:
    """Trains (or reads from the cache) the runs of one seed; the seed's split is loaded once."""

    def __init__(self, cache, seed):
        self.cache, self.seed, self.fresh = cache, seed, 0
        self._data = {}

    def data(self, config):
        key = json.dumps(dataclasses.asdict(config.data), sort_keys=True, default=list)
        if key not in self._data:
            self._data = {key: build.load_data(config)[0]}  # one split in memory at a time
        return self._data[key]

    def get(self, config):
        saved = self.cache.load(config)
        if saved is not None:
            return saved
        record, arrays = execute.run(config, self.data(config))
        self.cache.save(config, record, arrays)
        self.fresh += 1
        return record, arrays


def run_seed(base, methods, seed, cache):
    """{method: (chosen overrides, record, arrays)} of one seed, and how many runs were trained (not read)."""
    runs = Runs(cache, seed)
    seeded = base.replace(seed=seed)
    out = {}
    for m in methods:
        start = {**out[m.mirror][0], **(m.overrides or {})} if m.mirror else {}
        candidates = [{**start, **c} for c in m.candidates]
        tried = [(c, *runs.get(seeded.replace(**c))) for c in candidates]
        out[m.name] = lowest_validation_loss(tried)
    return out, runs.fresh


def run_study(base, methods, seeds, cache, log=print):
    """{seed: {method: (overrides, record, arrays)}} over `seeds`, with a progress line per seed."""
    start, per_seed = time.time(), {}
    for i, seed in enumerate(seeds):
        per_seed[seed], fresh = run_seed(base, methods, seed, cache)
        elapsed = time.time() - start
        left = elapsed / (i + 1) * (len(seeds) - i - 1)
        log(f"seed {seed}: {len(methods)} methods, {fresh} run(s) trained "
            f"[{elapsed:.0f}s, about {left:.0f}s left]")
    return per_seed


def check_methods(methods):
    """ValueError for a mirror of a method that does not come earlier, or a repeated name."""
    seen = set()
    for m in methods:
        if m.name in seen:
            raise ValueError(f"Two methods are named {m.name!r}.")
        if m.mirror and m.mirror not in seen:
            raise ValueError(f"{m.name!r} mirrors {m.mirror!r}, which must come before it.")
        seen.add(m.name)
