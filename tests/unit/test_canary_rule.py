"""The canary rule, measured: many seeded simulated windows per check type, counted.

Each check type is simulated as the analysis sees it: `errors` and `slow` through
`canary.counter_checks` over a counter source with history (as Prometheus is: the decision falls at
the first moment both predictors had n_req, found by bisecting time), the online losses through
the stream checks (first n_req samples of each predictor in time order, or pairs for a shadow).

Healthy windows: the canary's per-request distribution is main's. The false-abort rate must stay
within alpha, and within alpha for the whole family of three checks (Bonferroni).
Worse windows: the canary is worse by exactly the check's margin. It must be aborted, on no more
samples per predictor than docs/delivery.md documents (`analysis_render.sample_sizes`), in
>= 1 - beta of the windows.

Monte Carlo tolerance: each rate is a share of W = 2000 independent windows, so its standard error
at the bound is sqrt(p (1 - p) / W): 0.0049 at alpha = 0.05, 0.0067 at beta = 0.1. The asserts
allow three standard errors (alpha + 0.015, 1 - beta - 0.02): a rule that truly meets its bound
fails them with probability below 0.2% per assert, while a bound missed by 2 points (e.g. a
test repeated on a growing sample, or n_req sized from main alone) shows. The seeds make every
run identical.
"""

from __future__ import annotations

import math
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from modelops.monitoring import analysis_render, canary, rule
from modelops.monitoring.counters import ArmCounts
from modelops.params_after import CanaryParams
from modelops.runtime.desired import PredictorSpec

W = 2000
PARAMS = CanaryParams()
ALPHA, BETA, MIN = PARAMS.alpha, PARAMS.beta, PARAMS.min_samples
MARGINS = PARAMS.margins
FALSE_ABORT_MAX = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / W)  # 0.0646
POWER_MIN = 1 - BETA - 3 * math.sqrt(BETA * (1 - BETA) / W)  # 0.880
# The server's latency buckets (serving/src/modelops_serving/metrics.py), and +Inf.
BOUNDS = np.array(
    [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, np.inf]
)
SINCE = datetime(2026, 11, 23, tzinfo=UTC)
MAIN_HASH, CANARY_HASH = "a" * 64, "b" * 64


def documented(check: str, condition: str, k: int = 3) -> int:
    """n_req per predictor as docs/delivery.md lists it (default params)."""
    rows = analysis_render.sample_sizes(ALPHA, BETA, MIN, MARGINS.model_dump(), k)
    return next(n for c, cond, n in rows if c == check and condition in cond)


def spec(name: str, content_hash: str, traffic: int, shadow: bool = False) -> PredictorSpec:
    return PredictorSpec(name, traffic, shadow, 1, f"file:///{content_hash}/", name, content_hash, ())


PAIR = canary.Pair("m", "production", "ns", spec("main", MAIN_HASH, 75), spec("canary", CANARY_HASH, 25))


class Simulated:
    """A counter source with history, as Prometheus is, over simulated requests: at `SINCE + t
    seconds` each predictor has answered its share of t requests (main 75%, canary 25%)."""

    where = "simulation"

    def __init__(
        self, failed: dict[str, np.ndarray], latency: dict[str, np.ndarray], share: float, rate: float = 1.0
    ) -> None:
        self.share, self.rate = share, rate
        self.errors = {h: np.concatenate([[0], np.cumsum(x)]) for h, x in failed.items()}
        # requests at or under each bucket bound after each request (row n: the first n requests)
        self.buckets = {}
        for h, x in latency.items():
            below = (x[:, None] <= BOUNDS[None, :]).astype(np.int32)
            self.buckets[h] = np.vstack([np.zeros(len(BOUNDS), np.int32), np.cumsum(below, axis=0)])
        self.total = int(min(len(x) for x in failed.values()) / share / rate)
        self.queries: list[str] = []

    def counts(self, at: datetime) -> dict[str, ArmCounts]:
        t = (at - SINCE).total_seconds()
        out = {}
        for h, part in ((MAIN_HASH, 1 - self.share), (CANARY_HASH, self.share)):
            n = min(int(t * self.rate * part), len(self.errors[h]) - 1)
            buckets = dict(zip(BOUNDS.tolist(), self.buckets[h][n].tolist(), strict=True))
            out[h] = ArmCounts(float(n), float(self.errors[h][n]), buckets)
        return out


def lognormal(rng: np.random.Generator, n: int, median: float, worse: float = 0.0) -> np.ndarray:
    """Latencies (s), sigma 0.5; `worse`: that share of requests is ten times slower."""
    x = median * np.exp(0.5 * rng.standard_normal(n))
    slow = rng.random(n) < worse
    x[slow] *= 10
    return x


def counter_window(rng, p_error: float, delta_error: float, median: float, worse_slow: float, n: int, k: int):
    """One window of `errors` and `slow` through canary.counter_checks; n requests to the canary."""
    main_n = 3 * n
    failed = {
        MAIN_HASH: (rng.random(main_n) < p_error).astype(float),
        CANARY_HASH: (rng.random(n) < p_error + delta_error).astype(float),
    }
    latency = {MAIN_HASH: lognormal(rng, main_n, median), CANARY_HASH: lognormal(rng, n, median, worse_slow)}
    source = Simulated(failed, latency, 0.25)
    until = SINCE + timedelta(seconds=source.total)
    plan = rule.Plan(ALPHA, BETA, k, MIN)
    return canary.counter_checks(source, PAIR, plan, MARGINS, SINCE, until)


# A p95 exactly at a bucket bound is the hardest case for the slow check (its bound is chosen from
# the data): P(latency > 5 ms) = 5% with a median of 2.197 ms and sigma 0.5.
AT_BOUND = 0.005 / math.exp(0.5 * 1.6448536)
TYPICAL = 0.002  # p95 at 4.6 ms, 3.3% above the 5 ms bound


ROWS = {"errors": ("errors", "0.1%"), "slow": ("slow", "5.0%")}
# Requests per documented n_req a check may need: `slow` counts effective samples (requests over
# the dispersion of its share across time blocks, >= 1): with independent requests the estimate
# over 30 blocks stays under 1.6 in all but ~2% of windows (chi-square with 29 df / 29).
ROOM = {"errors": 1.0, "slow": 1.6}


def rates(results: list[rule.Result], documented_n: int | None = None) -> tuple[float, float, float]:
    """(share aborted, share aborted on at most documented_n samples, share still waiting)."""
    aborted = [r for r in results if r.status == "abort"]
    within = [r for r in aborted if documented_n is None or (r.n_req is not None and r.n_req <= documented_n)]
    return (
        len(aborted) / len(results),
        len(within) / len(results),
        sum(r.status == "wait" for r in results) / len(results),
    )


# --------------------------------------------------------------------------- counters: errors, slow


def seed(*case: object) -> int:
    """A seed per simulated case, the same in every process (unlike hash() of a str)."""
    return zlib.crc32(repr(case).encode())


def counter_results(
    check: str, p_error: float, delta_error: float, median: float, worse_slow: float, k: int, n: int
) -> list[rule.Result]:
    """W windows of one counter check, `n` requests to the canary in each."""
    rng = np.random.default_rng(seed(check, delta_error, worse_slow, k))
    return [
        next(
            r for r in counter_window(rng, p_error, delta_error, median, worse_slow, n, k) if r.name == check
        )
        for _ in range(W)
    ]


@pytest.mark.parametrize(
    ("check", "p_error", "median"), [("errors", 0.002, TYPICAL), ("slow", 0.0, AT_BOUND)]
)
def test_a_healthy_canary_is_aborted_by_a_counter_check_at_most_alpha_of_the_time(
    check: str, p_error: float, median: float
) -> None:
    # long enough to decide: a healthy canary's n_req is at most the documented one (errors: main's
    # and the canary's 5xx pooled size it as for a share of 0 to 0.2%)
    n = int(1.1 * ROOM[check] * documented(*ROWS[check], k=1))
    aborted, _, waiting = rates(counter_results(check, p_error, 0.0, median, 0.0, 1, n))
    print(f"{check}: healthy canary aborted in {aborted:.2%} of {W} windows (alpha {ALPHA})")
    assert aborted <= FALSE_ABORT_MAX
    assert waiting < 0.01  # the windows are long enough to decide


@pytest.mark.parametrize(
    ("check", "delta_error", "worse_slow", "row"),
    [
        ("errors", MARGINS.error_rate, 0.0, ("errors", "1.0%")),
        # ten times slower on 5.2% of requests: the share above the 5 ms bound rises by the margin
        ("slow", 0.0, MARGINS.slow_rate / (1 - 0.0334), ROWS["slow"]),
    ],
)
def test_a_canary_worse_by_the_margin_is_aborted_within_the_documented_samples(
    check: str, delta_error: float, worse_slow: float, row: tuple[str, str]
) -> None:
    bound = documented(*row)
    # a window as long as the documented n_req (slow: effective samples, so with the room the
    # dispersion needs): an abort within it is seen, later ones are not
    found = counter_results(check, 0.002, delta_error, TYPICAL, worse_slow, 3, int(ROOM[check] * bound))
    aborted, within, _ = rates(found, bound)
    print(
        f"{check}: canary worse by the margin aborted in {aborted:.2%}, on <= {bound} samples in {within:.2%}"
    )
    assert within >= POWER_MIN


def stalled(rng: np.random.Generator, n: int, per_second: float, median: float) -> np.ndarray:
    """Latencies of n requests arriving `per_second`: in a random 10% of seconds the server is
    descheduled and every request of that second takes 1.6 times as long (about 3% of requests above
    the slow bound becomes 25% in those seconds, as the local runtime showed on a loaded machine)."""
    x = lognormal(rng, n, median)
    second = (np.arange(n) / per_second).astype(int)
    return np.where((rng.random(second[-1] + 1) < 0.1)[second], 1.6 * x, x)


def stalled_results(monkeypatch: pytest.MonkeyPatch, counted_as_independent: bool) -> list[rule.Result]:
    """W windows of a healthy canary taking half of 100 requests a second, both predictors'
    servers stalling now and then; `counted_as_independent`: the rule without the dispersion."""
    if counted_as_independent:
        monkeypatch.setattr(rule, "dispersion", lambda *_: 1.0)
    rng = np.random.default_rng(seed("stalled"))
    plan, n = rule.Plan(ALPHA, BETA, 1, MIN), 3000
    found = []
    for _ in range(W):
        none = np.zeros(n)
        latency = {h: stalled(rng, n, 50.0, TYPICAL) for h in (MAIN_HASH, CANARY_HASH)}
        source = Simulated({MAIN_HASH: none, CANARY_HASH: none}, latency, 0.5, rate=100.0)
        until = SINCE + timedelta(seconds=source.total)
        found.append(canary.counter_checks(source, PAIR, plan, MARGINS, SINCE, until)[1])
    return found


def test_latency_in_bursts_counts_as_fewer_samples_and_keeps_alpha(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why `slow` divides each predictor's requests by their dispersion over time blocks: a server
    that stalls answers a whole second slowly, and counted as independent requests those seconds
    abort a healthy canary far more often than alpha; counted as effective samples, within alpha."""
    aborted, _, waiting = rates(stalled_results(monkeypatch, counted_as_independent=False))
    monkeypatch.undo()
    naive, _, _ = rates(stalled_results(monkeypatch, counted_as_independent=True))
    print(f"stalling servers: healthy canary aborted in {aborted:.2%} (as independent requests {naive:.2%})")
    assert aborted <= FALSE_ABORT_MAX and waiting < 0.01
    assert naive > FALSE_ABORT_MAX


# --------------------------------------------------------------------------- outcomes: streams


def stream_results(kind: str, worse: bool, k: int) -> list[rule.Result]:
    """W windows of one online check on per-row losses in time order (pairs for a shadow)."""
    rng = np.random.default_rng(seed(kind, worse, k))
    plan = rule.Plan(ALPHA, BETA, k, MIN)
    n = int(1.1 * documented("online_abs_error", "up to 1", k))  # the longest need of these streams
    out = []
    for _ in range(W):
        if kind == "online_error":  # misclassified share 15%
            main = (rng.random(n) < 0.15).astype(float)
            canary = (rng.random(n) < 0.15 + worse * MARGINS.online_error).astype(float)
            out.append(rule.stream_share(kind, plan, MARGINS.online_error, main, canary))
        elif kind == "online_abs_error":  # |normal errors|; worse: every error 1 + ratio times larger
            main = np.abs(rng.standard_normal(n))
            canary = np.abs(rng.standard_normal(n)) * (1 + worse * MARGINS.online_abs_error_ratio)
            out.append(rule.stream_mean(kind, plan, MARGINS.online_abs_error_ratio, main, canary))
        elif kind == "shadow online_error":  # the same rows; the shadow differs from main on 4%
            main = (rng.random(n) < 0.2).astype(float)
            u = rng.random(n)
            if worse:  # wrong wherever main is, and on 1 in 16 of main's right answers: + 5 points
                canary = np.maximum(main, (u < MARGINS.online_error / 0.8).astype(float))
            else:  # 2.5% of main's right answers wrong, 10% of its wrong ones right: the same share
                canary = np.where(main == 1, (u >= 0.1).astype(float), (u < 0.025).astype(float))
            out.append(rule.stream_paired(kind, plan, MARGINS.online_error, None, main, canary))
        else:  # shadow online_abs_error: errors correlated 0.8 with main's; worse: 1 + ratio times
            e = rng.standard_normal(n)
            s = 0.8 * e + 0.6 * rng.standard_normal(n)
            main, canary = np.abs(e), np.abs(s) * (1 + worse * MARGINS.online_abs_error_ratio)
            out.append(rule.stream_paired(kind, plan, None, MARGINS.online_abs_error_ratio, main, canary))
    return out


STREAMS = {  # the documented row each simulated situation falls in
    "online_error": ("online_error", "up to 20.0%"),
    "online_abs_error": ("online_abs_error", "up to 1"),
    "shadow online_error": ("online_error, shadow (pairs)", "up to 10%"),
    "shadow online_abs_error": ("online_abs_error, shadow (pairs)", "up to 1 x"),
}


@pytest.mark.parametrize("kind", list(STREAMS))
def test_a_healthy_canary_is_aborted_by_an_online_check_at_most_alpha_of_the_time(kind: str) -> None:
    aborted, _, waiting = rates(stream_results(kind, worse=False, k=1))
    print(f"{kind}: healthy canary aborted in {aborted:.2%} of {W} windows (alpha {ALPHA})")
    assert aborted <= FALSE_ABORT_MAX
    assert waiting < 0.01


@pytest.mark.parametrize("kind", list(STREAMS))
def test_a_canary_worse_by_the_margin_online_is_aborted_within_the_documented_samples(kind: str) -> None:
    bound = documented(*STREAMS[kind])
    aborted, within, _ = rates(stream_results(kind, worse=True, k=3), bound)
    print(
        f"{kind}: canary worse by the margin aborted in {aborted:.2%}, on <= {bound} samples in {within:.2%}"
    )
    assert within >= POWER_MIN


# --------------------------------------------------------------------------- the family, and looking again


def test_the_three_checks_together_abort_a_healthy_canary_at_most_alpha_of_the_time() -> None:
    """errors + slow (p95 at a bucket bound, the hard case) + online error, k = 3: the whole rule."""
    rng = np.random.default_rng(2026)
    plan = rule.Plan(ALPHA, BETA, 3, MIN)
    n, rows = int(1.1 * documented("errors", "0.1%")), int(1.1 * documented("online_error", "20.0%"))
    answers = []
    for _ in range(W):
        checks = counter_window(rng, 0.002, 0.0, AT_BOUND, 0.0, n, k=3)
        online = rule.stream_share("online_error", plan, MARGINS.online_error, *(
            (rng.random(rows) < 0.15).astype(float) for _ in range(2)
        ))  # fmt: skip
        answers.append(rule.decide([*checks, online])[0])
    aborted = answers.count("abort") / W
    print(f"errors + slow + online_error: healthy canary aborted in {aborted:.2%} of {W} windows")
    assert aborted <= FALSE_ABORT_MAX
    assert answers.count("promote") / W >= 1 - FALSE_ABORT_MAX - 0.01


def test_a_later_look_at_more_samples_gives_the_same_answer() -> None:
    """Decided on the first n_req: the stream checks and the counters with history do not re-roll."""
    rng = np.random.default_rng(5)
    plan = rule.Plan(ALPHA, BETA, 3, MIN)
    for _ in range(50):
        ours, theirs = ((rng.random(6000) < 0.15).astype(float) for _ in range(2))
        first = rule.stream_share("online_error", plan, MARGINS.online_error, ours[:3000], theirs[:3000])
        later = rule.stream_share("online_error", plan, MARGINS.online_error, ours, theirs)
        assert first.status in ("abort", "pass") and (first.status, first.n_req, first.z) == (
            later.status, later.n_req, later.z,
        )  # fmt: skip
    n = 2 * documented("errors", "1.0%")
    failed = {
        MAIN_HASH: (rng.random(3 * n) < 0.005).astype(float),
        CANARY_HASH: (rng.random(n) < 0.005).astype(float),
    }
    latency = {MAIN_HASH: lognormal(rng, 3 * n, TYPICAL), CANARY_HASH: lognormal(rng, n, TYPICAL)}
    source = Simulated(failed, latency, 0.25)
    end = SINCE + timedelta(seconds=source.total)
    looks = [
        canary.counter_checks(source, PAIR, plan, MARGINS, SINCE, SINCE + (end - SINCE) * f)
        for f in (0.7, 1.0)
    ]
    assert [(r.status, r.n_req, r.z) for r in looks[0]] == [(r.status, r.n_req, r.z) for r in looks[1]]
    assert all(r.status in ("abort", "pass") for r in looks[0])


def test_testing_a_growing_sample_at_every_look_would_exceed_alpha() -> None:
    """Why the rule decides on the first n_req: counters tested as they stand (as the local
    runtime's were before it kept a history) at five looks, at 1, 2, 3, 4 and 5 times n_req,
    abort a healthy canary in more than alpha of the windows. docs/delivery.md quotes this rate."""
    rng = np.random.default_rng(9)
    plan = rule.Plan(ALPHA, BETA, 1, MIN)
    margin = MARGINS.online_error
    n = int(rule.counts_required(plan, margin, (150, 1000), (150, 1000)))
    ever = 0
    for _ in range(W):
        ours, theirs = ((rng.random(5 * n) < 0.15) for _ in range(2))
        ever += any(
            rule.counts("x", plan, margin, (ours[:m].sum(), m), (theirs[:m].sum(), m), "").status == "abort"
            for m in (n, 2 * n, 3 * n, 4 * n, 5 * n)
        )
    print(f"five looks at a growing sample: a healthy canary aborted in {ever / W:.2%} of {W} windows")
    assert ever / W > ALPHA


def test_fisher_keeps_alpha_where_the_z_test_does_not() -> None:
    """Rare errors and a canary with a quarter of main's requests: the pooled z-test's normal tail
    aborts healthy canaries above its level; Fisher's exact test (the rule's) stays within it."""
    rng = np.random.default_rng(3)
    xm, xc = rng.binomial(2544, 0.002, 20_000), rng.binomial(848, 0.002, 20_000)
    z_abort = fisher_abort = 0
    for a, b in zip(xm, xc, strict=True):
        _, z, p = rule.proportion_test(a, 2544, b, 848)
        z_abort += z > 1.6448536
        fisher_abort += p < ALPHA
    print(f"z-test {z_abort / 20_000:.2%}, Fisher {fisher_abort / 20_000:.2%} at a nominal {ALPHA:.0%}")
    assert z_abort / 20_000 > ALPHA + 0.01 and fisher_abort / 20_000 <= ALPHA


def test_the_documented_sample_sizes_are_the_ones_the_rule_computes() -> None:
    """docs/delivery.md's table of n_req for the default params: analysis_render.sample_sizes."""
    from pathlib import Path

    from modelops.monitoring.analysis_render import sample_size_table

    docs = (Path(__file__).resolve().parents[2] / "docs" / "delivery.md").read_text()
    assert sample_size_table(PARAMS) in docs
