"""influence_ssl.stats against independent oracles: brute-force sign enumeration in exact rational
arithmetic, an exact integer-sum distribution, scipy's tests, a slow loop bootstrap, a decision-rule
Holm; plus the wording rule and the input errors."""
import ast
import dataclasses
import itertools
import json
import math
import pathlib
import sys
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats

from influence_ssl import stats

# ---------------------------------------------------------------- oracles

def brute_perm_p(d):
    """Exact sign-flip p by enumerating all 2^n patterns, with the values read as the decimals they
    were written as (Fraction(str(x))): ties are then exact, never lost or made by float rounding."""
    d = [Fraction(str(x)) for x in d]
    observed = abs(sum(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed
               for signs in itertools.product((-1, 1), repeat=len(d)))
    return Fraction(hits, 2 ** len(d))


def integer_perm_p(d):
    """Exact sign-flip p for integer d from the distribution of the signed sum (dynamic programming)."""
    counts = {0: 1}
    for x in d:
        nxt = {}
        for s, c in counts.items():
            nxt[s + x] = nxt.get(s + x, 0) + c
            nxt[s - x] = nxt.get(s - x, 0) + c
        counts = nxt
    observed = abs(sum(d))
    return sum(c for s, c in counts.items() if abs(s) >= observed) / 2 ** len(d)


def holm_by_rejection(p):
    """Adjusted Holm p as the smallest level at which Holm's step-down procedure rejects each
    hypothesis (the definition), searched over the levels where the decisions can change."""
    p = list(p)
    valid = [i for i, x in enumerate(p) if not math.isnan(x)]
    m = len(valid)
    order = sorted(valid, key=lambda i: p[i])

    def rejected(level):
        out = set()
        for k, i in enumerate(order):  # reject while p_(k) <= level / (m - k)
            if p[i] * (m - k) > level:
                break
            out.add(i)
        return out

    levels = sorted({min(1.0, p[i] * (m - k)) for k, i in enumerate(order)} | {1.0})
    result = [float("nan")] * len(p)
    for i in valid:
        result[i] = min((level for level in levels if i in rejected(level)), default=1.0)  # cap at 1
    return result


def slow_percentile(values, q):
    """numpy's default (linear) percentile, by hand."""
    values = sorted(values)
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (pos - lo) * (values[hi] - values[lo])


def with_differences(d):
    """(a, b) whose differences are d, on a non-trivial baseline."""
    b = np.round(np.random.default_rng(len(d)).uniform(70, 90, len(d)), 1)
    return b + np.asarray(d, float), b


# ---------------------------------------------------------------- permutation p

def test_ten_seeds_all_positive_is_two_in_1024():
    assert stats.paired(np.arange(1, 11) * 0.1 + 80, np.full(10, 80.0)).p_perm == 2 / 1024
    assert stats.permutation_p([0.3] * 10) == 2 / 1024  # equal values: every pattern but 2 is smaller


def test_seven_positive_three_zero_matches_brute_force():
    d = [0.4, 0.1, 0.7, 0.2, 0.0, 0.5, 0.3, 0.0, 0.6, 0.0]
    exact = brute_perm_p(d)
    assert exact == Fraction(2, 2 ** 7)  # zeros only multiply both counts by 2^3
    assert stats.paired(*with_differences(d)).p_perm == pytest.approx(float(exact), abs=1e-15)


@pytest.mark.parametrize("case", range(40))
def test_exact_p_matches_brute_force_with_ties_and_zeros(case):
    rng = np.random.default_rng(case)
    n = int(rng.integers(1, 11))
    # Few distinct one-decimal values: many ties, zeros, and sums that float rounding would split.
    d = np.round(rng.choice([-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.7], n), 1).tolist()
    assert stats.permutation_p(d) == pytest.approx(float(brute_perm_p(d)), abs=1e-15)


def test_float_rounding_ties_still_count():
    # 0.1 + 0.2 != 0.3 in floats: without a tolerance the pattern (+0.1, +0.2, -0.3 ...) mismatches.
    d = [0.1, 0.2, -0.3, 0.3, 0.0]
    assert stats.permutation_p(d) == pytest.approx(float(brute_perm_p(d)), abs=1e-15)


def test_all_zero_and_single_seed_give_one():
    assert stats.permutation_p([0.0] * 6) == 1.0
    assert stats.paired([81.0], [80.0]).p_perm == 1.0


def test_exact_at_twenty_seeds_matches_integer_distribution():
    d = np.random.default_rng(20).integers(-3, 8, 20).tolist()
    assert stats.permutation_p(d) == pytest.approx(integer_perm_p(d), abs=1e-15)


def test_monte_carlo_above_twenty_seeds():
    d = np.random.default_rng(7).integers(-4, 7, 30).tolist()
    exact = integer_perm_p(d)
    assert 0.01 < exact < 0.5  # a case where the estimate has room to be wrong
    mc = stats.permutation_p(d, seed=3)
    assert abs(mc - exact) < 5 * math.sqrt(exact * (1 - exact) / stats.MC_PATTERNS)
    assert stats.permutation_p(d, seed=3) == mc
    assert stats.permutation_p(d, seed=4) != mc
    assert stats.permutation_p([1.0] * 25) == 1 / (stats.MC_PATTERNS + 1)  # never 0
    assert stats.permutation_p([0.0] * 25) == 1.0


# ---------------------------------------------------------------- t-test, Wilcoxon, summaries

# scipy's wilcoxon takes a different path for each: exact (no ties or zeros), an exact permutation
# test (ties or zeros, n <= 13) and the normal approximation (ties or zeros, n > 13).
@pytest.mark.parametrize("n, zeros", [(8, False), (20, False), (7, True), (16, True)])
def test_t_and_wilcoxon_match_scipy(n, zeros):
    rng = np.random.default_rng(n)
    a = rng.normal(80, 2, n)
    d = np.round(rng.normal(0.3, 1, n), 1) if zeros else rng.normal(0.3, 1, n)
    if zeros:
        d[:2] = 0.0
    b = a - d
    c = stats.paired(a, b)
    assert c.p_t == pytest.approx(scipy.stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert c.p_wilcoxon == pytest.approx(scipy.stats.wilcoxon(a, b).pvalue, rel=1e-12)
    # Without the Wilcoxon test: every other field is the same, p_wilcoxon is nan.
    lean = stats.paired(a, b, wilcoxon=False).to_dict()
    assert np.isnan(lean.pop("p_wilcoxon")) and lean == {k: v for k, v in c.to_dict().items() if k != "p_wilcoxon"}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's own warnings on the degenerate inputs
def test_degenerate_t_and_wilcoxon():
    same = [80.0, 81.0, 82.0]
    assert np.isnan(scipy.stats.ttest_rel(same, same).pvalue)  # what the special case replaces
    zero = stats.paired(same, same)
    assert (zero.p_t, zero.p_wilcoxon, zero.p_perm) == (1.0, 1.0, 1.0)
    constant = stats.paired([80.5, 81.5, 82.5, 83.5], [80.0, 81.0, 82.0, 83.0])  # d == 0.5 exactly
    assert constant.p_t == 0.0
    assert constant.p_wilcoxon == pytest.approx(scipy.stats.wilcoxon([0.5] * 4).pvalue)
    # Constant d = 0.1: scipy's variance is rounding noise here, its p is not 0; ours is.
    assert scipy.stats.ttest_rel([0.1] * 3, [0.0] * 3).pvalue > 0
    assert stats.paired([0.1] * 3, [0.0] * 3).p_t == 0.0
    single = stats.paired([81.0], [80.0])
    assert (single.p_t, single.p_wilcoxon, single.std, single.ci_low, single.ci_high) == (1.0, 1.0, 0.0, 1.0, 1.0)


def test_means_std_and_counts():
    a = np.array([80.0, 81.5, 79.0, 82.0, 80.25, 80.0])
    b = np.array([79.0, 81.5, 79.5, 80.0, 80.2, 80.0])
    c = stats.paired(a, b)
    d = a - b
    assert (c.n, c.mean_a, c.mean_b) == (6, pytest.approx(a.mean()), pytest.approx(b.mean()))
    assert c.mean == pytest.approx(d.mean()) and c.std == pytest.approx(np.std(d, ddof=1))
    assert (c.wins, c.ties, c.losses) == (3, 2, 1)
    c = stats.paired(a, b, tie_tolerance=0.1)  # the 0.05 difference becomes a tie
    assert (c.wins, c.ties, c.losses) == (2, 3, 1)


def test_to_dict_is_plain_and_frozen():
    c = stats.paired([1.0, 2.0, 3.5], [1.0, 1.5, 3.0])
    d = c.to_dict()
    assert list(d) == [f.name for f in dataclasses.fields(c)]
    assert all(type(v) in (int, float) for v in d.values())
    assert json.loads(json.dumps(d)) == d
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.mean = 0.0


# ---------------------------------------------------------------- bootstrap

def test_bootstrap_matches_slow_loop_with_same_draws():
    rng = np.random.default_rng(21)
    a, b = rng.normal(80, 1, 7), rng.normal(79.5, 1, 7)
    d = (a - b).tolist()
    c = stats.paired(a, b, n_boot=2000, seed=5, confidence=0.9)
    idx = np.random.default_rng(5).integers(0, 7, size=(2000, 7))
    means = [math.fsum(d[i] for i in row) / 7 for row in idx]
    assert c.ci_low == pytest.approx(slow_percentile(means, 0.05), abs=1e-12)
    assert c.ci_high == pytest.approx(slow_percentile(means, 0.95), abs=1e-12)


def test_bootstrap_contains_mean_and_is_reproducible():
    rng = np.random.default_rng(22)
    a, b = rng.normal(80, 1, 10), rng.normal(79.5, 1, 10)
    c = stats.paired(a, b, seed=11)
    assert c.ci_low < c.mean < c.ci_high
    assert (c.ci_low, c.ci_high) == (stats.paired(a, b, seed=11).ci_low, stats.paired(a, b, seed=11).ci_high)
    assert (c.ci_low, c.ci_high) != (stats.paired(a, b, seed=12).ci_low, stats.paired(a, b, seed=12).ci_high)
    wider = stats.paired(a, b, seed=11, confidence=0.99)
    assert wider.ci_low < c.ci_low and wider.ci_high > c.ci_high


def test_bootstrap_narrows_with_more_seeds():
    d = [0.5, -0.2, 0.9, 0.1, 0.4, -0.6, 1.1, 0.3, 0.0, 0.7]
    width = {}
    for repeat in (1, 4):  # same spread, 4x the seeds: the width should about halve
        a, b = with_differences(d * repeat)
        c = stats.paired(a, b, seed=0)
        width[repeat] = c.ci_high - c.ci_low
    assert 0.35 < width[4] / width[1] < 0.65


# ---------------------------------------------------------------- Holm and tables

def test_holm_hand_example():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)


def test_holm_nan_passthrough_and_cap():
    out = stats.holm([0.01, float("nan"), 0.04, 0.6, 0.5])  # m = 4, not 5
    np.testing.assert_allclose(out, [0.04, np.nan, 0.12, 1.0, 1.0], rtol=1e-12)
    assert stats.holm([]).shape == (0,)


@pytest.mark.parametrize("case", range(30))
def test_holm_matches_rejection_definition(case):
    rng = np.random.default_rng(case)
    m = int(rng.integers(1, 9))
    p = np.round(rng.uniform(0, 0.4, m), 2)  # coarse: ties
    p[rng.random(m) < 0.2] = np.nan
    out = stats.holm(p)
    np.testing.assert_allclose(out, holm_by_rejection(p.tolist()), rtol=1e-12)
    valid = ~np.isnan(p)
    assert np.all(out[valid] >= p[valid]) and np.all(out[valid] <= 1)
    order = np.argsort(p[valid])
    assert np.all(np.diff(out[valid][order]) >= 0)  # monotone in p


def test_compare_table_applies_holm_on_the_chosen_p():
    rows = {
        "strong": stats.paired(np.arange(10) + 1.0, np.arange(10) + 0.0),
        "weak": stats.paired([1.0, 2.0, 3.0, 4.0, 5.0], [0.9, 2.1, 2.8, 4.1, 4.7]),
        "none": stats.paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
    }
    table = stats.compare_table(rows)
    assert list(table) == ["strong", "weak", "none"]
    np.testing.assert_allclose([t["p_holm"] for t in table.values()],
                               stats.holm([r.p_perm for r in rows.values()]))
    assert table["strong"]["p_holm"] == pytest.approx(3 * 2 / 1024)
    assert {k: v for k, v in table["weak"].items() if k != "p_holm"} == rows["weak"].to_dict()
    by_t = stats.compare_table(rows, key="p_t")
    np.testing.assert_allclose([t["p_holm"] for t in by_t.values()], stats.holm([r.p_t for r in rows.values()]))
    with pytest.raises(ValueError):
        stats.compare_table(rows, key="mean")


# ---------------------------------------------------------------- wording

def row(mean, low, high, p_holm, **extra):
    return {"mean": mean, "ci_low": low, "ci_high": high, "p_holm": p_holm, **extra}


def test_verdict_examples():
    assert stats.verdict(row(0.4, 0.15, 0.66, 0.01)) == "beyond noise (+0.40, 95% CI [+0.15, +0.66], p_holm = 0.01)"
    assert (stats.verdict(row(0.1, -0.2, 0.41, 0.4))
            == "no detectable difference (+0.10, 95% CI [-0.20, +0.41], p_holm = 0.40)")
    at_90 = stats.verdict(row(0.1, -0.2, 0.41, 0.4, confidence=0.9))
    assert at_90.startswith("no detectable difference (+0.10, 90% CI")


def test_verdict_at_the_threshold():
    below = stats.verdict(row(0.3, 0.01, 0.6, 0.0499))
    assert below.startswith("beyond noise") and below.endswith("p_holm = 0.0499)")  # not "0.05"
    assert stats.verdict(row(0.3, 0.01, 0.6, 0.0501)).startswith("no detectable difference")
    assert stats.verdict(row(0.3, 0.01, 0.6, 0.05)).startswith("no detectable difference")
    assert stats.verdict(row(0.3, 0.01, 0.6, 0.02), alpha=0.01).startswith("no detectable difference")
    assert stats.verdict(row(0.3, 0.01, 0.6, float("nan"))).startswith("no detectable difference")
    with pytest.raises(ValueError):
        stats.verdict(stats.paired([1.0, 2.0], [0.0, 1.0]).to_dict())  # uncorrected: no p_holm


def test_format_difference():
    assert [stats.format_difference(x) for x in (0.4, -0.2, 0.0)] == ["+0.40", "-0.20", "+0.00"]
    assert stats.format_difference(1.23456, digits=3) == "+1.235"


# ---------------------------------------------------------------- errors and imports

@pytest.mark.parametrize("call", [
    lambda: stats.paired([1.0, 2.0], [1.0]),
    lambda: stats.paired([], []),
    lambda: stats.paired([1.0, float("nan")], [1.0, 2.0]),
    lambda: stats.paired([1.0, 2.0], [1.0, float("inf")]),
    lambda: stats.paired([[1.0, 2.0]], [[1.0, 2.0]]),
    lambda: stats.paired([1.0], [2.0], confidence=1.0),
    lambda: stats.paired([1.0], [2.0], n_boot=0),
    lambda: stats.paired([1.0], [2.0], tie_tolerance=-0.1),
    lambda: stats.holm([0.1, 1.2]),
    lambda: stats.holm([[0.1]]),
], ids=["length", "empty", "nan", "inf", "2-D", "confidence", "n_boot", "tie_tolerance", "holm-range", "holm-2-D"])
def test_bad_input_raises_one_line_value_error(call):
    with pytest.raises(ValueError) as info:
        call()
    assert "\n" not in str(info.value)


def test_imports_only_numpy_scipy_and_stdlib():
    tree = ast.parse(pathlib.Path(stats.__file__).read_text())
    nodes = list(ast.walk(tree))
    names = {alias.name.split(".")[0] for node in nodes if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in nodes if isinstance(node, ast.ImportFrom)}
    assert names - set(sys.stdlib_module_names) == {"numpy", "scipy"}
