"""The canary rule (pure functions): is the canary worse than main, and are there enough samples to say?

Every check compares one per-request "bad" quantity of the canary with main's: the 5xx share, the
share of requests slower than a latency bound, and where outcomes are fed back the online loss
(misclassified share, or absolute error). For each check, with margin m:

    H0: delta <= 0 (the canary is no worse)      H1: delta >= m (worse by at least the margin)

A one-sided two-sample z-test (pooled variance for shares; Welch for means; the mean of per-pair
differences when a shadow answered the same requests) rejects H0 when z > z(1 - alpha/k), k the
number of active checks (Bonferroni): a healthy canary is aborted with probability <= alpha.
Each check needs n_req samples per predictor before it answers, the size at which a canary worse by
the margin is caught with probability >= 1 - beta:

    n_req = max(min_samples, ceil((z(1 - alpha/k) + z(1 - beta))^2 * (var_main + var_alt) / m^2))

with var_main main's variance and var_alt the alternative's (a share p + m, so a main with no errors
still gives a finite n_req; a loss (1 + ratio) times main's), both estimated from the two
predictors' samples pooled (see below why not from main's alone). Answer: abort if any check
rejects H0; promote if every check has its n_req and none rejects; wait otherwise.

Scheduled runs look again and again; a test repeated on a growing sample would abort a healthy
canary more often than alpha. So a check decides on the FIRST n_req samples of each predictor:
per-request samples in time order (`first_ready`: the first n with n >= n_req estimated on the
first n), or for counters the earliest moment both predictors had n_req (`earliest`, bisecting a
counter source's history: Prometheus, or the local runtime's recorder). A later look then reaches
the same answer. Testing counters as they stand at every look instead would abort healthy canaries
more often than alpha (docs/delivery.md has the measurement).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from scipy.stats import hypergeom, norm

Status = Literal["abort", "pass", "wait", "inactive"]

TESTS = {
    "proportion": "one-sided Fisher exact (z: pooled two-proportion)",
    "mean": "one-sided Welch z",
    "paired": "one-sided paired z (same requests)",
}


@dataclass(frozen=True)
class Plan:
    """One analysis' levels: alpha spread over the k active checks, beta, and the samples floor."""

    alpha: float
    beta: float
    k: int
    min_samples: int

    @property
    def level(self) -> float:
        """Each check's significance level (Bonferroni: alpha / k)."""
        return self.alpha / max(self.k, 1)

    @cached_property
    def z_alpha(self) -> float:
        """The critical z of each check, one-sided at alpha / k."""
        return float(norm.isf(self.level))

    @cached_property
    def z_beta(self) -> float:
        return float(norm.isf(self.beta))

    def n_required(self, variance: float, margin: float, share: bool = False) -> float:
        """Samples per predictor that detect a shift of `margin` with power 1 - beta (infinite when
        nothing sizes it yet: no margin, or no variance estimate); `share`: for Fisher's test."""
        return float(_required(self, np.asarray(variance, dtype="float64"), margin, share))


@dataclass(frozen=True)
class Arm:
    """One predictor's evidence on one check: samples, their mean (a share for counts), variance."""

    n: float
    mean: float
    var: float
    events: float | None = None  # the bad events counted (shares)

    def as_dict(self) -> dict[str, Any]:
        out = {"n": _round(self.n), "mean": _round(self.mean), "var": _round(self.var)}
        if self.events is not None:
            out["events"] = _round(self.events)
        return out


@dataclass(frozen=True)
class Result:
    """One check: its evidence, n_req, z and status (abort | pass | wait | inactive)."""

    name: str
    kind: str  # proportion | mean | paired
    status: Status
    margin: float | None = None
    n_req: float | None = None
    main: Arm | None = None
    canary: Arm | None = None
    delta: float | None = None
    z: float | None = None
    z_crit: float | None = None
    p_value: float | None = None
    level: float | None = None  # the check's significance level, alpha / k
    samples: str = ""  # which samples were tested: "first n_req in time order", "counters up to ..."
    note: str = ""

    @property
    def test(self) -> str:
        return TESTS[self.kind]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["test"] = self.test
        out["main"] = self.main.as_dict() if self.main else None
        out["canary"] = self.canary.as_dict() if self.canary else None
        for key in ("margin", "delta", "z", "z_crit", "p_value", "level"):
            out[key] = _round(out[key])
        out["n_req"] = None if self.n_req is None or not math.isfinite(self.n_req) else int(self.n_req)
        return out


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


# --------------------------------------------------------------------------- variances and tests


def share_variance(p: float | np.ndarray, margin: float) -> float | np.ndarray:
    """var_main + var_alt of a share: p(1 - p) + (p + m)(1 - p - m), p capped at 1 - m."""
    p = np.clip(p, 0.0, 1.0 - margin)
    q = p + margin
    return p * (1 - p) + q * (1 - q)


def proportion_test(
    x_main: float, n_main: float, x_canary: float, n_canary: float
) -> tuple[float, float, float]:
    """(canary share - main share, pooled-variance z, one-sided p of Fisher's exact test).

    The decision uses Fisher's p (the hypergeometric tail of the canary's events given the total):
    with rare events and a canary taking a small share of traffic, the z-test's normal tail
    aborts healthy canaries more often than its level (6.5% at a nominal 5% for 2 per mille errors
    on 848 vs 2544 requests); the exact test never does. Counts are rounded to whole requests
    (Prometheus' increase(), used for a series that reset, gives fractions)."""
    p_main, p_canary = x_main / n_main, x_canary / n_canary
    pooled = (x_main + x_canary) / (n_main + n_canary)
    se = math.sqrt(max(pooled * (1 - pooled), 0.0) * (1 / n_main + 1 / n_canary))
    xm, xc, nm, nc = (round(v) for v in (x_main, x_canary, n_main, n_canary))
    p_value = float(hypergeom.sf(xc - 1, nm + nc, xm + xc, nc))
    return p_canary - p_main, _z(p_canary - p_main, se), min(max(p_value, 0.0), 1.0)


def welch_z(main: Arm, canary: Arm) -> tuple[float, float]:
    """(canary mean - main mean, Welch z)."""
    se = math.sqrt(main.var / main.n + canary.var / canary.n)
    return canary.mean - main.mean, _z(canary.mean - main.mean, se)


def normal_p(z: float) -> float:
    """One-sided p of a z statistic (H1: the canary is worse)."""
    return float(norm.sf(z))


def _z(delta: float, se: float) -> float:
    if se > 0:
        return delta / se
    return 0.0 if delta == 0 else math.copysign(math.inf, delta)


def _status(p_value: float, plan: Plan) -> Status:
    return "abort" if p_value < plan.level else "pass"


# --------------------------------------------------------------------------- samples: which ones
#
# n_req is sized from BOTH predictors' samples pooled, not from main's alone. The moment a check
# decides then depends on the sum of the two samples, which under H0 is independent of their
# difference (exactly so in the normal approximation): choosing when to stop does not bias the test.
# Sized from main alone, a check would stop early exactly when main looked unusually good, and
# abort healthy canaries more often (a one-off run at a 5% base rate, k = 1: 4.4% against 3.2%).


def earliest[T](ready: Callable[[T], bool], points: Sequence[T]) -> T | None:
    """The first of ordered `points` (times, sample counts) at which `ready` holds, by bisection.

    Counts only grow, so readiness is taken as monotone; None when the last point is not ready."""
    if not points or not ready(points[-1]):
        return None
    lo, hi = 0, len(points) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if ready(points[mid]):
            hi = mid
        else:
            lo = mid + 1
    return points[lo]


def first_ready(plan: Plan, need: np.ndarray) -> tuple[int | None, float]:
    """need[i]: n_req sized on the first i + 1 samples of each predictor. Returns (the first n >=
    min_samples with n >= need, its n_req), or (None, the latest estimate) when there is none yet.

    Only prefixes are read, so a later look with more samples finds the same n: no re-rolling."""
    if not len(need):
        return None, math.inf
    n = np.arange(1, len(need) + 1)
    ok = (n >= plan.min_samples) & (need <= n)
    if ok.any():
        i = int(np.argmax(ok))
        return i + 1, float(i + 1)
    return None, float(max(need[-1], plan.min_samples)) if math.isfinite(need[-1]) else math.inf


def _required(
    plan: Plan, variance: np.ndarray, margin: np.ndarray | float, share: bool = False
) -> np.ndarray:
    """Plan.n_required over arrays (inf where nothing sizes it yet).

    `share`: Fisher's exact test behaves like the continuity-corrected z-test, which needs more
    samples than the plain formula; Fleiss' correction n/4 (1 + sqrt(1 + 4 / (n m)))^2 restores
    the power (at 1% errors on a 1-point margin it adds 15%)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n = (plan.z_alpha + plan.z_beta) ** 2 * variance / np.square(margin)
        if share:
            n = n / 4 * np.square(1 + np.sqrt(1 + 4 / (n * margin)))
        n = np.ceil(n - 1e-9)
    n = np.where(np.isfinite(n) & (np.asarray(margin) > 0), n, np.inf)
    return np.maximum(n, plan.min_samples)


def _cum(x: np.ndarray, n: int) -> np.ndarray:
    return np.cumsum(np.asarray(x[:n], dtype="float64"))


def _pooled_var(s1: np.ndarray, s2: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Sample variance from running sums of x and x^2 over `count` values."""
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (s2 - s1**2 / count) / (count - 1)
    return np.where(count > 1, np.maximum(var, 0.0), np.inf)


# --------------------------------------------------------------------------- the checks


def _waiting(name: str, kind: str, plan: Plan, margin: float | None, n_req: float, main: Arm, canary: Arm,
             samples: str, note: str) -> Result:  # fmt: skip
    z_crit, level = plan.z_alpha, plan.level
    return Result(
        name,
        kind,
        "wait",
        margin,
        n_req,
        main,
        canary,
        z_crit=z_crit,
        level=level,
        samples=samples,
        note=note,
    )


def _decided(name: str, kind: str, plan: Plan, margin: float, n_req: float, main: Arm, canary: Arm,
             test: tuple[float, float, float], samples: str) -> Result:  # fmt: skip
    delta, z, p_value = test
    status = _status(p_value, plan)
    return Result(
        name, kind, status, margin, n_req, main, canary, delta, z, plan.z_alpha, p_value, plan.level, samples
    )  # fmt: skip


def counts_required(
    plan: Plan, margin: float, main: tuple[float, float], canary: tuple[float, float]
) -> float:
    """n_req of a share check on counters: (events, requests) per predictor, sized on both pooled.

    Main's share is taken as a canary worse by the margin would show it: the pooled share less the
    canary's part of the margin (exact under H1; under H0 it only makes n_req smaller, and the
    false-abort rate does not depend on n)."""
    (x_m, n_m), (x_c, n_c) = main, canary
    pooled = (x_m + x_c - margin * n_c) / (n_m + n_c) if n_m + n_c else 0.0
    return plan.n_required(float(share_variance(pooled, margin)), margin, share=True)


def counts_ready(
    plan: Plan,
    margin: float,
    main: tuple[float, float],
    canary: tuple[float, float],
    dispersion: tuple[float, float] = (1.0, 1.0),
) -> bool:
    """Whether both predictors have the share check's n_req (effective samples: requests / dispersion)."""
    main, canary = _effective(main, dispersion[0]), _effective(canary, dispersion[1])
    n_req = counts_required(plan, margin, main, canary)
    return main[1] >= n_req and canary[1] >= n_req


def dispersion(events: Sequence[float], requests: Sequence[float]) -> float:
    """How much more one predictor's share varies between time blocks than independent requests
    would let it: Pearson's X^2 over the blocks with requests / (blocks - 1), floored at 1 (the
    quasi-binomial dispersion; 1 with fewer than two such blocks, or a share of 0 or 1).

    Its requests then count as requests / dispersion independent ones (the design effect). Latency
    needs it: a server descheduled on a busy node answers a burst of requests slowly together, and a
    second of such a burst counted as hundreds of independent samples aborted healthy canaries far
    more often than alpha (tests/unit/test_canary_rule.py measures both)."""
    x, n = np.asarray(events, dtype="float64"), np.asarray(requests, dtype="float64")
    x, n = x[n > 0], n[n > 0]
    if len(n) < 2:
        return 1.0
    p = float(x.sum() / n.sum())
    if not 0.0 < p < 1.0:
        return 1.0
    pearson = float(np.sum(np.square(x - n * p) / (n * p * (1 - p))))
    return max(1.0, pearson / (len(n) - 1))


def _effective(counts: tuple[float, float], factor: float) -> tuple[float, float]:
    return counts[0] / factor, counts[1] / factor


def counts(
    name: str,
    plan: Plan,
    margin: float,
    main: tuple[float, float],
    canary: tuple[float, float],
    samples: str,
    dispersion: tuple[float, float] = (1.0, 1.0),
) -> Result:
    """A share check on counters: (events, requests) per predictor. With a `dispersion` per
    predictor above 1, n_req and Fisher's test count effective samples (both counts divided by it);
    the arms still show the counters as they are."""
    (x_m, n_m), (x_c, n_c) = main, canary
    p_m = x_m / n_m if n_m else 0.0
    p_c = x_c / n_c if n_c else 0.0
    (ex_m, en_m), (ex_c, en_c) = _effective(main, dispersion[0]), _effective(canary, dispersion[1])
    n_req = counts_required(plan, margin, (ex_m, en_m), (ex_c, en_c))
    arms = Arm(n_m, p_m, p_m * (1 - p_m), x_m), Arm(n_c, p_c, p_c * (1 - p_c), x_c)
    if en_m < n_req or en_c < n_req:
        return _waiting(name, "proportion", plan, margin, n_req, *arms, samples, _short(n_req, en_m, en_c))
    test = proportion_test(ex_m, en_m, ex_c, en_c)
    return _decided(name, "proportion", plan, margin, n_req, *arms, test, samples)


def stream_share(name: str, plan: Plan, margin: float, main: np.ndarray, canary: np.ndarray) -> Result:
    """A share check on per-request 0/1 samples in time order: decided on the first n_req of each."""
    n = min(len(main), len(canary))
    count = np.arange(1, n + 1)
    pooled = (_cum(main, n) + _cum(canary, n)) / (2 * count) - margin / 2  # main's share under H1
    at, n_req = first_ready(plan, _required(plan, share_variance(pooled, margin), margin, share=True))
    if at is None:
        note = _short(n_req, len(main), len(canary))
        return _waiting(name, "proportion", plan, margin, n_req, _arm(main), _arm(canary), FIRST, note)
    m, c = main[:at], canary[:at]
    test = proportion_test(m.sum(), at, c.sum(), at)
    return _decided(
        name, "proportion", plan, margin, n_req, _arm(m), _arm(c), test, f"first {at:,} in time order"
    )


def _relative(plan: Plan, ratio: float, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(margin, n_req) of a loss whose alternative is (1 + ratio) times main's, from pooled moments.

    Under that alternative the pooled mean is mu (1 + ratio/2), and the pooled variance
    sigma^2 (1 + (1 + ratio)^2) / 2 plus the spread of the two means (mu ratio / 2)^2: main's mu and
    sigma^2 follow, the margin is ratio * mu and var_main + var_alt = sigma^2 (1 + (1 + ratio)^2)."""
    mu = mean / (1 + ratio / 2)
    spread = 1 + (1 + ratio) ** 2
    sigma2 = np.maximum(var - (mu * ratio / 2) ** 2, 0.0) / (spread / 2)
    return ratio * mu, _required(plan, sigma2 * spread, ratio * mu)


def stream_mean(name: str, plan: Plan, ratio: float, main: np.ndarray, canary: np.ndarray) -> Result:
    """A loss with a relative margin (ratio * main's mean): Welch z on the first n_req of each."""
    n = min(len(main), len(canary))
    count = 2 * np.arange(1, n + 1)
    s1 = _cum(main, n) + _cum(canary, n)
    s2 = _cum(np.square(main), n) + _cum(np.square(canary), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        margins, need = _relative(plan, ratio, s1 / count, _pooled_var(s1, s2, count))
    at, n_req = first_ready(plan, need)
    if at is None:
        note = _short(n_req, len(main), len(canary))
        if n and margins[-1] <= 0:
            note = "the mean loss is 0 so far: a relative margin is 0, nothing sizes n_req yet"
        margin = float(margins[-1]) if n else None
        return _waiting(name, "mean", plan, margin, n_req, _arm(main), _arm(canary), FIRST, note)
    m, c = _arm(main[:at]), _arm(canary[:at])
    delta, z = welch_z(m, c)
    test = (delta, z, normal_p(z))
    return _decided(
        name, "mean", plan, float(margins[at - 1]), n_req, m, c, test, f"first {at:,} in time order"
    )


def stream_paired(
    name: str, plan: Plan, margin: float | None, ratio: float | None, main: np.ndarray, canary: np.ndarray
) -> Result:
    """Paired losses (a shadow and main on the same rows, in time order): z of the mean of the
    differences canary - main.

    Shares (`margin`, absolute): a difference in {-1, 0, 1} whose mean is m has variance at least
    m(1 - m), which floors the observed one (identical answers still give a finite n_req). Losses
    (`ratio`): the margin is ratio * main's mean loss, from both sides' pooled mean."""
    n = min(len(main), len(canary))
    d = np.asarray(canary[:n], dtype="float64") - np.asarray(main[:n], dtype="float64")
    count = np.arange(1, n + 1)
    var = _pooled_var(_cum(d, n), _cum(np.square(d), n), count)
    if margin is not None:
        margins = np.full(n, margin)
        need = _required(plan, np.maximum(var, margin * (1 - margin)), margin)
    else:
        r = float(ratio or 0)
        margins = r * (_cum(main, n) + _cum(canary, n)) / (2 * count) / (1 + r / 2)
        need = _required(plan, var, margins)
    at, n_req = first_ready(plan, need)
    if at is None:
        m_now = float(margins[-1]) if n else margin
        note = _short(n_req, n, None)
        return _waiting(
            name, "paired", plan, m_now, n_req, _arm(main), _arm(canary), FIRST + " (pairs)", note
        )
    head = d[:at]
    delta = float(head.mean())
    z = _z(delta, math.sqrt(float(head.var(ddof=1)) / at))
    arms = _arm(main[:at]), _arm(canary[:at])
    test = (delta, z, normal_p(z))
    return _decided(
        name, "paired", plan, float(margins[at - 1]), n_req, *arms, test, f"first {at:,} pairs in time order"
    )


FIRST = "first n_req in time order"


def _arm(x: np.ndarray) -> Arm:
    x = np.asarray(x, dtype="float64")
    if not len(x):
        return Arm(0, 0.0, 0.0)
    return Arm(len(x), float(x.mean()), float(x.var(ddof=1)) if len(x) > 1 else 0.0)


def _short(n_req: float, n_main: float, n_canary: float | None) -> str:
    """Why a check waits: the samples it needs and those it has (`n_canary` None: pairs)."""
    has = f"{n_main:,.0f} pairs" if n_canary is None else f"main has {n_main:,.0f}, canary {n_canary:,.0f}"
    if not math.isfinite(n_req):
        return f"n_req cannot be sized yet ({has})"
    return f"needs {int(n_req):,} {'pairs' if n_canary is None else 'samples per predictor'}; {has}"


# --------------------------------------------------------------------------- the answer


def decide(results: list[Result]) -> tuple[str, str]:
    """(promote | abort | wait, why) from the checks' statuses."""
    active = [r for r in results if r.status != "inactive"]
    worse = [r for r in active if r.status == "abort"]
    if worse:
        return "abort", "; ".join(
            f"{r.name}: the canary is worse (p {r.p_value:.2g} < {r.level:.2g}, z {r.z:.2f})" for r in worse
        )
    if not active:
        return "wait", "no check has evidence yet"
    waiting = [r for r in active if r.status == "wait"]
    if waiting:
        return "wait", "; ".join(f"{r.name}: {r.note}" for r in waiting)
    return "promote", (
        f"all {len(active)} checks have their n_req samples per predictor and none shows the canary worse"
    )
