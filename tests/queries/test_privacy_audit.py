"""An empirical privacy audit of the DP engine: the loss we charge is a loss we can't beat.

The README's guarantee is a loss of epsilon for one contributor's whole data, replaced by
anyone else's (the pool size public). This file draws releases in process from the engine
(``mechanism_release``, the function every released number goes through) over twin pools
that differ in one contributor, and bounds the privacy loss from below with a
likelihood-ratio test:

- Setup. Groups A, B and C are public keys and ``v`` is an integer in [0, 10]. The dataset
  allows ``max_rows_per_contributor`` k = 8 (a large k, so the broken mechanism below
  loses k * epsilon / 2 = 4 even under add/remove, well above the 1.5 x threshold).
  ``COUNT(*)`` and ``SUM(v)`` by group are audited as separate queries, each carrying the
  whole charged epsilon = 1 (the engine: integer Laplace of scale 2k/eps = 16 for the
  count and 2k * 10/eps = 160 for the sum).
- The audited contributor is heavy: 2k = 16 rows, all at v = 10, so truncation must keep
  exactly 8 (the test checks that the true truncated pools differ by exactly 8 rows, or
  80 for the sum).
- Replace: the pool plus the heavy contributor in A, against the pool plus them in B.
  Add/remove: the pool alone, against the pool plus them in B.
- The event is fixed in advance from the true truncated values (never from the draws).
  Replace, one direction: Y_A <= mu1_A and Y_B >= mu1_B (the second pool's true values),
  whose likelihood ratio is exactly e^eps for integer Laplace noise; the other direction
  swaps the pools (Y_A >= mu0_A and Y_B <= mu0_B). Add/remove: Y_B >= mu1_B, and
  Y_B <= mu0_B the other way.
- With n releases per pool, the event is seen ``favoured`` times where it is likely and
  ``against`` times where it is not: ``eps_lb = ln(p1_lower / p0_upper)`` with one-sided
  Clopper-Pearson bounds at alpha = 3e-8. Both bounds hold with probability at least
  1 - 2 alpha, and then eps_lb is at most the true loss of that event. The engine must give
  ``eps_lb <= 1.5 x mechanism.epsilon``.
- The test of the test: the same engine set to ``max_rows_per_contributor=1`` and the heavy
  contributor's 8 rows under 8 separate identifiers (noise calibrated for one row, not one
  contributor: the true loss is 8 for a replacement and 4 for add/remove) must give
  ``eps_lb > 1.5`` in every direction.

The Clopper-Pearson bounds are computed here without scipy: the beta quantile by
bisection on the regularized incomplete beta function (continued fraction). They are
checked against exact binomial tail sums, against scipy when it is installed, and
``test_audit_design_error_rates`` works out, exactly, how often the audit itself can be
wrong (below 1e-6 altogether).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from cleanroom.queries import dp
from cleanroom.queries.sql import compile_sql

SCHEMA = {
    "columns": [
        {"name": "g", "type": "string", "categories": ["A", "B", "C"]},
        {"name": "v", "type": "integer", "lower": 0, "upper": 10},
    ]
}
GROUPS = ("A", "B", "C")
V_MAX = 10
QUERIES = {
    "count": "SELECT g, COUNT(*) AS y FROM t GROUP BY g",
    "sum": "SELECT g, SUM(v) AS y FROM t GROUP BY g",
}
EPSILON = 1.0
K = 8  # max_rows_per_contributor of the audited engine
# The integer Laplace scales the engine must use at EPSILON (replace-one: L1 = 2k rows,
# or 2k * 10 for the sum); the design test's exact error rates assume them.
ENGINE_SCALES = {"count": 2 * K / EPSILON, "sum": 2 * K * V_MAX / EPSILON}
# Calibrated for one row: what the broken mechanism (k = 1) uses.
BROKEN_SCALES = {"count": 2 / EPSILON, "sum": 2 * V_MAX / EPSILON}
# What the heavy contributor moves in each group after truncation to K rows.
SHIFTS = {"count": K, "sum": K * V_MAX}
RELATIONS = {"replace": 2, "add_remove": 1}  # groups whose true value moves

ALPHA = 3e-8  # each one-sided Clopper-Pearson bound fails with probability <= ALPHA
FACTOR = 1.5  # eps_lb must stay within FACTOR x the charged epsilon
N_ENGINE = 2_000  # releases per pool for the engine
N_BROKEN = 800  # releases per pool for the broken mechanism
DIRECTIONS = ("replace: A->B", "replace: B->A", "add", "remove")
HEAVY_ID = 1_000_000


# -- Clopper-Pearson without scipy ---------------------------------------------------------

_TINY = 1e-300


def _lgamma(values: np.ndarray) -> np.ndarray:
    return np.array([math.lgamma(float(v)) for v in values.ravel()]).reshape(values.shape)


def _nonzero(values: np.ndarray) -> np.ndarray:
    return np.where(np.abs(values) < _TINY, _TINY, values)


def _beta_continued_fraction(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The continued fraction of I_x(a, b) (modified Lentz), elementwise; converges fast for
    x < (a + 1) / (a + b + 2). Elements leave the loop as soon as they have converged."""
    out = np.empty_like(x)
    index = np.arange(x.size)
    x, a, b = x.copy(), a.copy(), b.copy()
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 / _nonzero(1.0 - qab * x / qap)
    h = d.copy()
    for m in range(1, 100_000):
        m2 = 2 * m
        step = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 / _nonzero(1.0 + step * d)
        c = _nonzero(1.0 + step / c)
        h = h * d * c
        step = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 / _nonzero(1.0 + step * d)
        c = _nonzero(1.0 + step / c)
        delta = d * c
        h = h * delta
        done = np.abs(delta - 1.0) < 1e-15
        if done.any():
            out[index[done]] = h[done]
            keep = ~done
            if not keep.any():
                return out
            index, x, a, b, qab, qap, qam, c, d, h = (
                array[keep] for array in (index, x, a, b, qab, qap, qam, c, d, h)
            )
    raise ArithmeticError("the incomplete beta continued fraction did not converge")


def regularized_beta(x: np.ndarray, a: np.ndarray, b: np.ndarray, log_beta: np.ndarray) -> Any:
    """I_x(a, b) for 0 < x < 1, elementwise (``log_beta`` = ln B(a, b))."""
    direct = x < (a + 1.0) / (a + b + 2.0)
    front = np.exp(a * np.log(x) + b * np.log1p(-x) - log_beta)
    fraction = _beta_continued_fraction(
        np.where(direct, x, 1.0 - x), np.where(direct, a, b), np.where(direct, b, a)
    )
    return np.where(direct, front * fraction / a, 1.0 - front * fraction / b)


def beta_lower_quantile(q: float, a: Any, b: Any) -> np.ndarray:
    """The largest x (to 1e-12 relative) with I_x(a, b) <= q, for integers a >= 1, b >= 1 and
    q < 1/2: bisection on [0, a / (a + b - 1)], where I is at least 1/2 (a binomial's
    median is its integer mean). The lower end is returned: never above the root."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    log_beta = _lgamma(a) + _lgamma(b) - _lgamma(a + b)
    low = np.zeros_like(a)
    high = a / (a + b - 1.0)
    for _ in range(400):
        middle = 0.5 * (low + high)
        below = regularized_beta(middle, a, b, log_beta) <= q
        low = np.where(below, middle, low)
        high = np.where(below, high, middle)
        if np.all(high - low <= 1e-12 * high):
            return low
    raise ArithmeticError("bisection did not converge")


def clopper_pearson(k: Any, n: int, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """One-sided (lower, upper) Clopper-Pearson bounds for k successes in n, each at level
    alpha: P(lower > p) <= alpha and P(upper < p) <= alpha whatever the true p.

    lower: P(X >= k | lower) = alpha, the alpha quantile of Beta(k, n - k + 1) (0 if k = 0);
    upper: P(X <= k | upper) = alpha, 1 - the alpha quantile of Beta(n - k, k + 1) (1 if
    k = n), computed on the lower tail so that nothing cancels near 1.
    """
    k = np.atleast_1d(np.asarray(k, dtype=float))
    assert np.all((k >= 0) & (k <= n) & (k == np.round(k)))
    lower = np.zeros_like(k)
    upper = np.ones_like(k)
    some = k > 0
    if some.any():
        lower[some] = beta_lower_quantile(alpha, k[some], n - k[some] + 1)
    some = k < n
    if some.any():
        root = beta_lower_quantile(alpha, n - k[some], k[some] + 1)
        # 1 - root rounded up, never down: near 1 a double is coarse (1 - x is exact there).
        below = 1.0 - root
        upper[some] = np.where(1.0 - below > root, np.nextafter(below, 2.0), below)
    return lower, upper


@functools.cache
def clopper_pearson_table(n: int, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Both bounds for every k in 0..n (what the audit and the design test look up)."""
    return clopper_pearson(np.arange(n + 1), n, alpha)


def epsilon_lower_bound(favoured: int, against: int, n: int) -> float:
    """ln(p1_lower / p0_upper): the event seen `favoured` times in n releases of the pool
    where it is likely, `against` times in n of its neighbour."""
    lower, upper = clopper_pearson_table(n)
    if lower[favoured] <= 0:
        return -math.inf
    return math.log(lower[favoured] / upper[against])


# -- exact error rates of the audit --------------------------------------------------------


def event_probabilities(scale: float, shift: int, groups: int) -> tuple[float, float]:
    """(p1, p0) of the audit's event under integer (discrete) Laplace noise of `scale`,
    P(Z = z) proportional to exp(-|z| / scale): each of `groups` independent cells must fall
    on the far side of a true value that the neighbour pool moves by `shift`.

    With a = exp(-1/scale): P(Z <= 0) = 1 / (1 + a) and P(Z <= -shift) = a^shift / (1 + a),
    so p1 / p0 = exp(groups * shift / scale) exactly."""
    a = math.exp(-1.0 / scale)
    return (1.0 / (1.0 + a)) ** groups, (a**shift / (1.0 + a)) ** groups


def binomial_pmf(n: int, p: float) -> np.ndarray:
    k = np.arange(n + 1)
    log_pmf = (
        math.lgamma(n + 1)
        - _lgamma(k + 1.0)
        - _lgamma(n - k + 1.0)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    return np.exp(log_pmf)


def audit_outcome_probability(
    n: int, p_favoured: float, p_against: float, threshold: float
) -> tuple[float, float]:
    """(P(eps_lb > threshold), P(eps_lb <= threshold)) exactly, for independent
    favoured ~ Bin(n, p_favoured) and against ~ Bin(n, p_against).

    ln(lower[k1]) increases with k1, so for each k0 the outcomes above the threshold are
    k1 >= m(k0): one sorted search, and the binomial tails summed from their small end."""
    lower, upper = clopper_pearson_table(n)
    with np.errstate(divide="ignore"):
        log_lower = np.log(lower)
    assert np.all(np.diff(log_lower) > 0) and np.all(np.diff(upper) > 0)
    pmf_favoured = binomial_pmf(n, p_favoured)
    pmf_against = binomial_pmf(n, p_against)
    first_above = np.searchsorted(log_lower, np.log(upper) + threshold, side="right")
    upper_tail = np.append(np.cumsum(pmf_favoured[::-1])[::-1], 0.0)  # P(K1 >= m)
    lower_tail = np.append(0.0, np.cumsum(pmf_favoured))  # P(K1 < m)
    above = float(np.sum(pmf_against * upper_tail[first_above]))
    at_most = float(np.sum(pmf_against * lower_tail[first_above]))
    return above, at_most


def test_clopper_pearson_bounds_are_exact() -> None:
    """Each bound is where the exact binomial tail (a sum of the probabilities, in log
    space) crosses alpha: conservative (to floating point, 1e-10 of alpha), and tight (moved
    inwards by 1e-8 of itself, the tail is above alpha)."""

    def tail(k: int, n: int, p: float, upper: bool) -> float:
        terms = range(k, n + 1) if upper else range(0, k + 1)
        return math.fsum(
            math.exp(
                math.lgamma(n + 1)
                - math.lgamma(j + 1)
                - math.lgamma(n - j + 1)
                + j * math.log(p)
                + (n - j) * math.log1p(-p)
            )
            for j in terms
        )

    for n, alpha in ((N_ENGINE, ALPHA), (N_BROKEN, ALPHA), (37, 0.025), (1, ALPHA)):
        ks = sorted({0, 1, 2, n // 10, n // 3, n // 2, n - 1, n} & set(range(n + 1)))
        lower, upper = clopper_pearson(ks, n, alpha)
        for k, low, high in zip(ks, lower, upper, strict=True):
            assert 0 <= low < high <= 1 and low <= k / n <= high
            if k == 0:
                assert low == 0
                assert high == pytest.approx(-math.expm1(math.log(alpha) / n), rel=1e-10)
            else:
                assert tail(k, n, low, upper=True) <= alpha * (1 + 1e-10)  # P(X >= k | lower)
                assert tail(k, n, low * (1 + 1e-8), upper=True) > alpha
            if k == n:
                assert high == 1
                assert low == pytest.approx(alpha ** (1 / n), rel=1e-10)
            else:
                assert tail(k, n, high, upper=False) <= alpha * (1 + 1e-10)  # P(X <= k | upper)
                assert tail(k, n, high * (1 - 1e-8), upper=False) > alpha
    # The whole tables the audit uses: strictly increasing in k, nested around k / n.
    for n in (N_ENGINE, N_BROKEN):
        lower, upper = clopper_pearson_table(n)
        ratio = np.arange(n + 1) / n
        assert np.all(np.diff(lower) > 0) and np.all(np.diff(upper) > 0)
        assert np.all(lower <= ratio) and np.all(ratio <= upper)


def test_clopper_pearson_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for n, alpha in ((N_ENGINE, ALPHA), (N_BROKEN, ALPHA), (N_BROKEN, 0.025)):
        k = np.arange(n + 1)
        if n == N_ENGINE:
            lower, upper = clopper_pearson_table(n)
        else:
            lower, upper = clopper_pearson(k, n, alpha)
        inner = k[(k > 0) & (k < n)]
        np.testing.assert_allclose(
            lower[inner], stats.beta.ppf(alpha, inner, n - inner + 1), rtol=1e-8, atol=0
        )
        np.testing.assert_allclose(
            upper[inner], stats.beta.isf(alpha, inner + 1, n - inner), rtol=1e-8, atol=0
        )
        assert lower[n] == pytest.approx(stats.beta.ppf(alpha, n, 1), rel=1e-8)
        assert upper[0] == pytest.approx(stats.beta.isf(alpha, 1, n), rel=1e-8)


def test_audit_design_error_rates() -> None:
    """How often this file can be wrong, from the noise distributions and binomial counts.

    32 Clopper-Pearson bounds (engine and broken mechanism, COUNT and SUM, four directions,
    two bounds each) hold together with probability >= 1 - 32 alpha = 1 - 9.6e-7. The
    event's true likelihood ratio is exactly e^eps (replace) or e^(eps/2) (add/remove) for
    the engine, so the engine can fail only if one of its 16 bounds fails (<= 4.8e-7); the
    exact probability is far smaller. The broken mechanism passing by chance (every outcome
    of the two binomial counts, from the true event probabilities) is computed exactly too."""
    # The sorted-search computation agrees with the plain double sum over all outcomes, for
    # middling probabilities and for tails on either side.
    n = 60
    lower, upper = clopper_pearson_table(n)
    for p1, p0, threshold in ((0.45, 0.15, -1.0), (0.7, 0.1, 1.0), (0.7, 0.1, -1.5)):
        pmf1, pmf0 = binomial_pmf(n, p1), binomial_pmf(n, p0)
        outcomes = [(k1, k0) for k1 in range(1, n + 1) for k0 in range(n + 1)]
        lb = {(k1, k0): math.log(lower[k1] / upper[k0]) for k1, k0 in outcomes}
        brute_above = math.fsum(
            pmf1[k1] * pmf0[k0] for k1, k0 in outcomes if lb[k1, k0] > threshold
        )
        # k1 = 0 gives lower = 0, eps_lb = -inf: at most any threshold.
        brute_at_most = pmf1[0] + math.fsum(
            pmf1[k1] * pmf0[k0] for k1, k0 in outcomes if lb[k1, k0] <= threshold
        )
        above, at_most = audit_outcome_probability(n, p1, p0, threshold)
        assert above == pytest.approx(brute_above, rel=1e-9)
        assert at_most == pytest.approx(brute_at_most, rel=1e-9)
        assert min(above, at_most) > 1e-12

    engine_failure: dict[str, float] = {}
    broken_passing: dict[str, float] = {}
    for kind in ("count", "sum"):
        for relation, groups in RELATIONS.items():
            # Both directions of a relation have the same (p1, p0) by symmetry.
            p1, p0 = event_probabilities(ENGINE_SCALES[kind], SHIFTS[kind], groups)
            true_loss = groups * SHIFTS[kind] / ENGINE_SCALES[kind]
            assert math.log(p1 / p0) == pytest.approx(true_loss, rel=1e-12)
            assert true_loss == pytest.approx(EPSILON if relation == "replace" else EPSILON / 2)
            above, _ = audit_outcome_probability(N_ENGINE, p1, p0, FACTOR * EPSILON)
            engine_failure[f"{kind}-{relation}"] = above
            assert above <= 2 * ALPHA

            p1, p0 = event_probabilities(BROKEN_SCALES[kind], SHIFTS[kind], groups)
            true_loss = groups * SHIFTS[kind] / BROKEN_SCALES[kind]
            assert true_loss == pytest.approx(8.0 if relation == "replace" else 4.0)
            _, at_most = audit_outcome_probability(N_BROKEN, p1, p0, FACTOR * EPSILON)
            broken_passing[f"{kind}-{relation}"] = at_most
    # Two directions per relation.
    engine_total = 2 * sum(engine_failure.values())
    broken_total = 2 * sum(broken_passing.values())
    print(f"\nengine fails wrongly, per direction: {engine_failure}; all 8: {engine_total:.3g}")
    print(f"broken passes wrongly, per direction: {broken_passing}; all 8: {broken_total:.3g}")
    # All 32 bounds hold together except with probability <= 32 alpha = 9.6e-7, whatever
    # the noise; the engine's 16 except with probability <= 4.8e-7.
    assert 32 * ALPHA < 1e-6
    assert engine_total <= 16 * ALPHA
    # Exactly, for the calibrated integer Laplace noise: ~3e-34 for the engine's 8 directions
    # (the true ratio e^eps, or e^(eps/2), is far from e^(1.5 eps)); ~7.4e-8 for the broken
    # mechanism's 8, almost all from SUM replace (3.7e-8 each direction).
    assert engine_total < 1e-30
    assert broken_total <= 1e-7


# -- drawing releases from the engine ------------------------------------------------------

Row = tuple[int, str, int]  # contributor_id, g, v


def pool_rows(seed: int = 20_240_611, contributors: int = 45) -> list[Row]:
    """A fixed pool: 1 to 12 rows per contributor (so truncation at 8 bites on some),
    uploaded interleaved."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for contributor in range(1, contributors + 1):
        for _ in range(int(rng.integers(1, 13))):
            rows.append((contributor, GROUPS[int(rng.integers(3))], int(rng.integers(0, 11))))
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def true_values(rows: list[Row], k: int, kind: str) -> dict[str, int]:
    """Each group's true COUNT or SUM after keeping each contributor's first k rows (upload
    order), computed here independently of the engine."""
    seen: Counter[int] = Counter()
    out = dict.fromkeys(GROUPS, 0)
    for contributor, group, value in rows:
        seen[contributor] += 1
        if seen[contributor] <= k:
            out[group] += 1 if kind == "count" else value
    return out


def as_frame(rows: list[Row], path: Path) -> pl.LazyFrame:
    """The pool as an IPC scan (what the engine itself turns an in-memory pool into), written
    once so that thousands of releases do not copy it again each time."""
    frame = pl.DataFrame(
        {
            "contributor_id": [r[0] for r in rows],
            "g": [r[1] for r in rows],
            "v": [r[2] for r in rows],
        },
        schema={"contributor_id": pl.Int64, "g": pl.String, "v": pl.Int64},
    )
    frame.write_ipc(path)
    return pl.scan_ipc(path, memory_map=True)


def build(kind: str, k: int) -> dp.Mechanism:
    plan = compile_sql(QUERIES[kind], table="t", schema=SCHEMA)
    unit = dp.PrivacyUnit(max_rows_per_contributor=k, max_rows=1_000_000)
    return dp.mechanism_build(plan=plan, unit=unit, epsilon=EPSILON)


def draw(mechanism: dp.Mechanism, frame: pl.LazyFrame, n: int) -> np.ndarray:
    """n independent releases, one row per release, one column per group (A, B, C)."""
    out = np.empty((n, len(GROUPS)), dtype=np.int64)
    for i in range(n):
        release = dp.mechanism_release(mechanism=mechanism, frame=frame)
        assert tuple(row[0] for row in release.rows) == GROUPS
        out[i] = [row[1] for row in release.rows]
    return out


@dataclass(frozen=True)
class Direction:
    name: str
    favoured: int  # times the event occurred where it is likely
    against: int  # times it occurred in the neighbour pool
    n: int

    @property
    def eps_lb(self) -> float:
        return epsilon_lower_bound(self.favoured, self.against, self.n)

    @property
    def eps_hat(self) -> float:
        if self.favoured == 0 or self.against == 0:
            return math.inf if self.favoured else -math.inf
        return math.log(self.favoured / self.against)

    def __str__(self) -> str:
        return (
            f"{self.name:14} eps_lb {self.eps_lb:6.3f}  eps_hat {self.eps_hat:6.3f}  "
            f"({self.favoured}/{self.n} vs {self.against}/{self.n})"
        )


def audit(
    mechanism: dp.Mechanism, *, kind: str, heavy: list[Row], moved: list[Row], n: int, path: Path
) -> list[Direction]:
    """Draw n releases from each of three pools and test four directions.

    `heavy` is the audited contributor's upload in group A, `moved` the same in group B;
    the pools: base, base + heavy (A) and base + moved (B)."""
    k = mechanism.unit.max_rows_per_contributor
    base = pool_rows()
    pools = {"P": base, "A": base + heavy, "B": base + moved}
    truth = {name: true_values(rows, k, kind) for name, rows in pools.items()}
    shift = SHIFTS[kind]
    # Truncation did its job: the heavy contributor moves exactly 8 rows (80 for SUM).
    assert truth["B"]["B"] - truth["A"]["B"] == truth["A"]["A"] - truth["B"]["A"] == shift
    assert truth["B"]["B"] - truth["P"]["B"] == truth["A"]["A"] - truth["P"]["A"] == shift
    assert truth["A"]["C"] == truth["B"]["C"] == truth["P"]["C"]
    # A count is released clamped at 0: every threshold is positive, so Y >= mu is raw >= mu.
    assert min(min(values.values()) for values in truth.values()) >= 1

    releases = {
        name: draw(mechanism, as_frame(rows, path / f"{kind}-{k}-{name}.arrow"), n)
        for name, rows in pools.items()
    }
    a, b = GROUPS.index("A"), GROUPS.index("B")
    mu0, mu1, mu_pool = truth["A"], truth["B"], truth["P"]

    # Fixed in advance from the true values; each as (pool where likely, neighbour pool).
    def to_b(y: np.ndarray) -> np.ndarray:  # replace, heavy in A -> heavy in B
        return (y[:, a] <= mu1["A"]) & (y[:, b] >= mu1["B"])

    def to_a(y: np.ndarray) -> np.ndarray:  # replace, heavy in B -> heavy in A
        return (y[:, a] >= mu0["A"]) & (y[:, b] <= mu0["B"])

    def added(y: np.ndarray) -> np.ndarray:  # pool -> pool + heavy in B
        return y[:, b] >= mu1["B"]

    def removed(y: np.ndarray) -> np.ndarray:  # pool + heavy in B -> pool
        return y[:, b] <= mu_pool["B"]

    out = []
    for name, event, likely, unlikely in zip(
        DIRECTIONS, (to_b, to_a, added, removed), "BABP", "ABPB", strict=True
    ):
        out.append(
            Direction(
                name,
                favoured=int(np.count_nonzero(event(releases[likely]))),
                against=int(np.count_nonzero(event(releases[unlikely]))),
                n=n,
            )
        )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["count", "sum"])
def test_engine_loss_stays_within_its_charge(kind: str, tmp_path: Path) -> None:
    mechanism = build(kind, K)
    (noise,) = mechanism.noise.values()
    assert noise == ("Integer Laplace", pytest.approx(ENGINE_SCALES[kind], rel=1e-9))
    assert mechanism.epsilon == pytest.approx(EPSILON, rel=1e-9) and mechanism.epsilon <= EPSILON
    heavy = [(HEAVY_ID, "A", V_MAX)] * (2 * K)  # 16 rows: truncation must keep 8
    moved = [(HEAVY_ID, "B", V_MAX)] * (2 * K)
    directions = audit(mechanism, kind=kind, heavy=heavy, moved=moved, n=N_ENGINE, path=tmp_path)
    print(f"\nengine {kind} (charged epsilon {mechanism.epsilon:.3f}):")
    for direction in directions:
        print(f"  {direction}")
    for direction in directions:
        assert direction.eps_lb <= FACTOR * mechanism.epsilon, str(direction)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["count", "sum"])
def test_audit_catches_noise_calibrated_for_one_row(kind: str, tmp_path: Path) -> None:
    """The test of the test: a mechanism that treats each row as the unit (k = 1, the heavy
    contributor's 8 rows under 8 identifiers) charges 1 while losing 8 (replace) or 4
    (add/remove). The audit must say so in every direction."""
    mechanism = build(kind, 1)
    (noise,) = mechanism.noise.values()
    assert noise == ("Integer Laplace", pytest.approx(BROKEN_SCALES[kind], rel=1e-9))
    heavy = [(HEAVY_ID + i, "A", V_MAX) for i in range(K)]
    moved = [(HEAVY_ID + i, "B", V_MAX) for i in range(K)]
    directions = audit(mechanism, kind=kind, heavy=heavy, moved=moved, n=N_BROKEN, path=tmp_path)
    print(f"\nbroken {kind} (charged epsilon {mechanism.epsilon:.3f}):")
    for direction in directions:
        print(f"  {direction}")
    for direction in directions:
        assert direction.eps_lb > FACTOR * mechanism.epsilon, str(direction)
