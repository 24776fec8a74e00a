"""Statistics for paired seed comparisons: two methods run on the same seeds, compared per seed.

The project's one wording rule lives here (`verdict`): a difference is "beyond noise" only where its
Holm-corrected p (across the rows of one table) is below alpha. AUROC is in `influence_ssl.metrics`.
Imports only numpy and scipy.
"""
import dataclasses
import warnings

import numpy as np
import scipy.stats

EXACT_MAX_N = 20  # 2^20 sign patterns (8 MB of sums): above this the permutation test is Monte Carlo.
MC_PATTERNS = 100_000


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """Per-seed values of method a against method b on the same n seeds; differences d = a - b.

    mean, std: mean and sample std (ddof=1; 0 when n == 1) of d. ci_low, ci_high: percentile
    bootstrap CI of mean(d) at `confidence`. p_perm: sign-flip permutation p; p_t: paired t-test p;
    p_wilcoxon: Wilcoxon signed-rank p (all two-sided). wins / ties / losses: seeds with d > tol,
    |d| <= tol, d < -tol.
    """
    n: int
    mean_a: float
    mean_b: float
    mean: float
    std: float
    ci_low: float
    ci_high: float
    p_perm: float
    p_t: float
    p_wilcoxon: float
    wins: int
    ties: int
    losses: int
    confidence: float = 0.95

    def to_dict(self):
        """A plain dict of the fields (JSON-ready Python ints/floats)."""
        return dataclasses.asdict(self)


def _vector(x, name):
    x = np.asarray(x, np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite, got {x.tolist()}")
    return x


def permutation_p(d, *, seed=0):
    """Two-sided sign-flip permutation p of mean(d) = 0 for paired differences d ([n] floats).

    For n <= 20 exact: the fraction of all 2^n sign patterns (the observed one included) whose |mean|
    is >= the observed |mean|, so the smallest possible p is 2 / 2^n. Zero differences are handled
    for free (their sign flips change nothing). For n > 20: a Monte Carlo estimate from 100,000
    random sign patterns drawn with a Generator seeded by `seed`, as (hits + 1) / (100,000 + 1) so
    that it never returns 0.
    """
    d = np.asarray(d, np.float64)
    observed = abs(d.sum())  # sums, not means: same n in every pattern
    # Rounding in differently-ordered sums must not break ties against the observed value; the
    # tolerance is relative to the largest possible |sum|.
    threshold = observed - 1e-12 * np.abs(d).sum()
    if d.size <= EXACT_MAX_N:
        sums = np.zeros(1)
        for x in d:  # doubling: all 2^k signed partial sums after k elements
            sums = np.concatenate([sums + x, sums - x])
        return float(np.mean(np.abs(sums) >= threshold))
    rng = np.random.default_rng((seed, 1))  # a stream of its own, apart from the bootstrap's
    hits, chunk = 0, max(1, 2**22 // d.size)
    for start in range(0, MC_PATTERNS, chunk):
        signs = rng.integers(0, 2, size=(min(chunk, MC_PATTERNS - start), d.size)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) >= threshold))
    return (hits + 1) / (MC_PATTERNS + 1)


def _t_p(d):
    """Paired t-test p; constant differences (where scipy gives nan) and n == 1 are defined here."""
    if d.size == 1:
        return 1.0  # no degrees of freedom: no evidence either way
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0  # t = 0/0 -> 1; t = +-inf (limit of shrinking spread) -> 0
    with warnings.catch_warnings():  # nearly-constant d: scipy's precision-loss warning, p still fine
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(scipy.stats.ttest_rel(d, np.zeros_like(d)).pvalue)


def paired(a, b, *, confidence=0.95, n_boot=10000, seed=0, tie_tolerance=0.0, wilcoxon=True):
    """Compare per-seed values a[i] and b[i] ([n] finite floats each, n >= 1, same seeds).

    The bootstrap resamples seeds (n with replacement, n_boot times) with
    np.random.default_rng(seed); its CI is the (1 -+ confidence) / 2 percentiles of the resampled
    means. p_t is scipy's ttest_rel except where it is undefined: 1.0 when n == 1 or all d == 0, 0.0
    when all d are equal and nonzero. p_wilcoxon is scipy's wilcoxon (zero_method='wilcox': zeros
    dropped), 1.0 when all d == 0; wilcoxon=False leaves it nan (with ties scipy runs a permutation test
    of its own, about 0.4 s a call, which a table that reads only p_perm does not need). See
    `permutation_p` for p_perm.
    """
    a, b = _vector(a, "a"), _vector(b, "b")
    if a.size != b.size:
        raise ValueError(f"a and b must have the same length (one value per seed), got {a.size} and {b.size}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    if not tie_tolerance >= 0.0:
        raise ValueError(f"tie_tolerance must be >= 0, got {tie_tolerance}")
    d, n = a - b, a.size
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, n, size=(int(n_boot), n))].mean(axis=1)
    ci_low, ci_high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    if not wilcoxon:
        p_wilcoxon = float("nan")
    else:
        p_wilcoxon = 1.0 if np.all(d == 0) else float(scipy.stats.wilcoxon(d).pvalue)
    return PairedComparison(
        n=n, mean_a=float(a.mean()), mean_b=float(b.mean()), mean=float(d.mean()),
        std=float(d.std(ddof=1)) if n > 1 else 0.0, ci_low=float(ci_low), ci_high=float(ci_high),
        p_perm=permutation_p(d, seed=seed), p_t=_t_p(d), p_wilcoxon=p_wilcoxon,
        wins=int(np.sum(d > tie_tolerance)), ties=int(np.sum(np.abs(d) <= tie_tolerance)),
        losses=int(np.sum(d < -tie_tolerance)), confidence=float(confidence))


def holm(p_values):
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    p_values: [m] floats in [0, 1] or NaN. NaN entries come back NaN and do not count in m. With the
    k valid p sorted ascending, adjusted p_(j) = min(1, max_{i <= j} (k - i) * p_(i)) (i from 0), so
    the result is monotone in p and never below it. Returns an [m] float64 array.
    """
    p = np.asarray(p_values, np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise ValueError(f"p_values must be in [0, 1] or NaN, got {p.tolist()}")
    out = p.copy()
    index = np.flatnonzero(valid)[np.argsort(p[valid], kind="stable")]
    k = index.size
    out[index] = np.minimum(1.0, np.maximum.accumulate((k - np.arange(k)) * p[index]))
    return out


def compare_table(rows, *, key="p_perm"):
    """Holm across the rows of one table: {name: PairedComparison} -> {name: to_dict() + p_holm}.

    key: which p to correct (p_perm, p_t or p_wilcoxon). Row order is kept.
    """
    fields = [f.name for f in dataclasses.fields(PairedComparison) if f.name.startswith("p_")]
    if key not in fields:
        raise ValueError(f"key must be one of {fields}, got {key!r}")
    dicts = {name: row.to_dict() for name, row in rows.items()}
    adjusted = holm([row[key] for row in dicts.values()])
    return {name: {**row, "p_holm": float(p)} for (name, row), p in zip(dicts.items(), adjusted)}


def format_difference(d, digits=2):
    """A signed difference, e.g. +0.40 or -0.20."""
    return f"{d:+.{digits}f}"


def _format_p(p, alpha):
    # Two decimals (significant digits below 0.01), more where rounding would put the printed p on
    # the other side of alpha: "p_holm = 0.05" must never stand next to "beyond noise".
    style = "f" if p >= 0.01 else "g"
    for digits in range(2, 9):
        text = f"{p:.{digits}{style}}"
        if (float(text) < alpha) == (p < alpha):
            break
    return text


def verdict(comparison_dict, alpha=0.05):
    """The project's wording of one row of `compare_table`.

    "beyond noise (...)" only where p_holm < alpha, otherwise "no detectable difference (...)", e.g.
    "beyond noise (+0.40, 95% CI [+0.15, +0.66], p_holm = 0.01)". A NaN p_holm is never beyond noise.
    """
    if "p_holm" not in comparison_dict:
        raise ValueError("verdict needs the Holm-corrected p_holm: pass a row of compare_table()")
    c = comparison_dict
    p = c["p_holm"]
    words = "beyond noise" if p < alpha else "no detectable difference"
    level = f"{100 * c.get('confidence', 0.95):g}%"
    return (f"{words} ({format_difference(c['mean'])}, {level} CI [{format_difference(c['ci_low'])}, "
            f"{format_difference(c['ci_high'])}], p_holm = {_format_p(p, alpha)})")
