"""What every study shares: seeds, grids, the default Λ step-size grids, and writing a results JSON."""
import json
import math
import os

from influence_ssl.runs.provenance import provenance
from influence_ssl.trainer.config import ConfigError

# Λ step sizes per optimizer and problem kind. Adam-type steps move λ by about η per visit whatever the
# gradient's scale; an SGD step is η·g, and g carries the training loss's 1/|U'| (|g| ~ 1e-4 on digits' 96
# rows, ~1e-5 on the 2-D problems' full batch of 1000), so SGD's grid is shifted by that scale.
DEFAULT_WEIGHT_LR_GRIDS = {
    "image": {"madam": (0.01, 0.04, 0.1), "adam": (0.01, 0.04, 0.1), "sgd": (30.0, 100.0, 300.0, 1000.0)},
    "text": {"madam": (0.01, 0.04, 0.1), "adam": (0.01, 0.04, 0.1), "sgd": (30.0, 100.0, 300.0, 1000.0)},
    "2d": {"madam": (0.003, 0.01, 0.03), "adam": (0.003, 0.01, 0.03), "sgd": (100.0, 1000.0, 10000.0)},
}

# The fixed λ of the tuned single-λ control, chosen per seed on validation (where a study runs it by default).
DEFAULT_TUNED_LAMBDA_GRID = (0.1, 0.3, 1.0, 3.0)


def seed_list(count, first):
    """[first, ..., first + count - 1]; ConfigError for fewer than one."""
    if count < 1:
        raise ConfigError(f"--seeds must be >= 1, got {count}.")
    return list(range(first, first + count))


def parse_grid(values, flag, *, minimum=0.0, strict=False, kind=float):
    """A comma list of numbers -> a list; ConfigError (one line) for a non-number, a non-finite value or one
    below `minimum` (or equal to it with strict)."""
    try:
        grid = [kind(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"--{flag} must be a list of numbers, got {','.join(map(str, values))}.") from None
    bad = [v for v in grid if not math.isfinite(v) or v < minimum or (strict and v == minimum)]
    if bad:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ConfigError(f"--{flag} must hold finite values {bound}, got {','.join(map(str, values))}.")
    return grid


def weight_lr_grid(values, config):
    """--weight_lr_grid: numbers, 'default' (the grid of the Λ optimizer and problem kind), or empty (the
    configuration's η alone)."""
    if list(values) == ["default"]:
        return list(DEFAULT_WEIGHT_LR_GRIDS[config.family][config.train.weight_optimizer])
    return parse_grid(values, "weight_lr_grid", strict=True) or [config.train.weight_lr]


def write_json(path, results, config=None):
    """Write `results` with a provenance object (this process's command, commit, versions, ...) to `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    body = {**results, "provenance": provenance(config=json.loads(config.dumps()) if config is not None else None)}
    with open(path + ".tmp", "w") as f:
        json.dump(body, f, indent=2, default=_plain)
    os.replace(path + ".tmp", path)
    return path


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
