"""The quality gate: may this candidate replace the model deployed now? Pure functions, no I/O.

The policy of a model is `Params.gate_policy(model)` (its task's default under `gate:` in
params.yaml, with the model's own `gate:` on top): floors every candidate must reach (for
lower-is-better metrics such as log_loss or rmse a ceiling), the most a metric may get worse than
the champion (absolute; for lower-is-better metrics an increase), and how much slower than the
champion it may predict. With the champion comparison's intervals (`review.uncertainty`), a
regression beyond its allowance fails only when it is significant (`significant_regression`, true
by default), and `require_improvement` metrics must be significantly better. `modelops report`
evaluates it per changed model and records the inputs in report.json; `modelops gate`
re-evaluates them and fails the check if any model fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from modelops.config import GatePolicy
from modelops.errors import ModelopsError
from modelops.review.uncertainty import Intervals, direction, signed, span
from modelops.stats import Interval
from modelops.tasks import ALL_METRICS, LOWER_IS_BETTER

Kind = Literal["minimum", "regression", "improvement", "latency"]
Outcome = Literal["pass", "fail", "skipped"]


class GateFailed(ModelopsError):
    """The candidate does not pass the quality gate; the message lists every reason."""

    exit_code = 10


@dataclass(frozen=True)
class Check:
    """One rule of the policy applied to one metric, and what came of it."""

    kind: Kind
    metric: str
    outcome: Outcome
    message: str
    value: float | None = None
    bound: float | None = None

    @property
    def passed(self) -> bool:
        """A skipped check does not fail the gate."""
        return self.outcome != "fail"


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: passed, the failing reasons (one sentence each) and every check."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def line(self) -> str:
        """One line for a log or the top of the report."""
        if self.passed:
            ran = sum(1 for c in self.checks if c.outcome == "pass")
            skipped = sum(1 for c in self.checks if c.outcome == "skipped")
            return f"PASS: all {ran} gate checks passed" + (f" ({skipped} skipped)" if skipped else "")
        return "FAIL: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (report.json)."""
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "checks": [asdict(c) for c in self.checks],
        }


def fmt(value: float, *others: float) -> str:
    """A metric with 3 decimals, more when fewer would print two different numbers alike."""
    for places in (3, 4, 5, 6):
        text = f"{value:.{places}f}"
        if all(f"{o:.{places}f}" != text for o in others if o != value):
            return text
    return f"{value:.6f}"


def _minimum(metric: str, bound: float, candidate: dict[str, Any]) -> Check:
    value = candidate.get(metric)
    if value is None:
        return Check(
            "minimum", metric, "fail", f"{metric} is missing from the candidate's metrics", None, bound
        )
    value = float(value)
    if metric in LOWER_IS_BETTER:
        ok, word, op = value <= bound, "maximum", ">"
    else:
        ok, word, op = value >= bound, "minimum", "<"
    if ok:
        return Check(
            "minimum",
            metric,
            "pass",
            f"{metric} {fmt(value, bound)} within {word} {fmt(bound, value)}",
            value,
            bound,
        )
    return Check(
        "minimum",
        metric,
        "fail",
        f"{metric} {fmt(value, bound)} {op} {word} {fmt(bound, value)}",
        value,
        bound,
    )


def _regression(
    metric: str,
    allowed: float,
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    name: str,
    interval: Interval | None = None,
    level: str = "95%",
    needs_significance: bool = True,
) -> Check:
    if champion is None:
        return Check(
            "regression", metric, "skipped", f"{metric}: no champion deployed yet, regression not checked"
        )
    new, old = candidate.get(metric), champion.get(metric)
    if new is None:
        return Check("regression", metric, "fail", f"{metric} is missing from the candidate's metrics")
    if old is None:
        return Check(
            "regression", metric, "skipped", f"{metric}: the champion has no value, regression not checked"
        )
    # How much worse, in the metric's own direction: positive is a regression.
    loss = float(new) - float(old) if metric in LOWER_IS_BETTER else float(old) - float(new)
    verb = "rose" if metric in LOWER_IS_BETTER else "fell"
    if loss > allowed:
        worse = f"{metric} {verb} {fmt(loss, allowed)} vs champion {name}"
        numbers = f"{fmt(float(old))} -> {fmt(float(new), float(old))}; allowed {fmt(allowed, loss)}"
        found = direction(metric, interval)
        if interval is not None and needs_significance and found != "worse":
            # "better" beside a point loss is a percentile-interval oddity, not a case to hide
            why = "within noise: its" if found == "noise" else "not significantly worse: its"
            where = "includes 0" if found == "noise" else "lies on the better side"
            return Check(
                "regression",
                metric,
                "pass",
                f"{worse}, more than the {fmt(allowed, loss)} allowed, but {why} "
                f"{level} interval {span(interval)} {where}",
                loss,
                allowed,
            )
        if interval is None:  # an old report.json: the point value alone decides, as it always did
            extra = ""
        elif found == "worse":
            extra = f"; {level} interval {span(interval)}, significant"
        else:
            extra = f"; {level} interval {span(interval)}: within noise, but significance is not required"
        return Check("regression", metric, "fail", f"{worse} ({numbers}{extra})", loss, allowed)
    change = f"{verb} {fmt(loss, allowed)}" if loss > 0 else "did not get worse"
    return Check(
        "regression",
        metric,
        "pass",
        f"{metric} {change} vs champion {name} (allowed {fmt(allowed, loss)})",
        loss,
        allowed,
    )


def _improvement(
    metric: str,
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    name: str,
    interval: Interval | None,
    level: str,
) -> Check:
    """`require_improvement`: the candidate must be significantly better than the champion."""
    if champion is None:
        return Check(
            "improvement", metric, "skipped", f"{metric}: no champion deployed yet, improvement not required"
        )
    if candidate.get(metric) is None:
        return Check("improvement", metric, "fail", f"{metric} is missing from the candidate's metrics")
    must = f"{metric} must improve significantly on champion {name}"
    if interval is None:
        return Check("improvement", metric, "fail", f"{must}, but no interval was recorded")
    found = direction(metric, interval)
    change = f"{signed(interval.value)} ({level} interval {span(interval)})"
    if found == "better":
        return Check(
            "improvement",
            metric,
            "pass",
            f"{metric} improved significantly on champion {name}: {change}",
            interval.value,
        )
    what = "got significantly worse" if found == "worse" else "is within noise"
    return Check("improvement", metric, "fail", f"{must}; it {what}: {change}", interval.value)


def _latency(ratio: float | None, allowed: float | None, has_champion: bool) -> Check:
    if allowed is None:
        return Check("latency", "latency", "skipped", "latency: the policy sets no ratio, not checked")
    if ratio is None:
        why = "no champion deployed yet" if not has_champion else "no latency measured"
        return Check("latency", "latency", "skipped", f"latency: {why}, ratio not checked", None, allowed)
    if ratio > allowed:
        return Check(
            "latency",
            "latency",
            "fail",
            f"predicts {ratio:.2f}x slower than the champion (allowed {allowed:.2f}x)",
            ratio,
            allowed,
        )
    return Check(
        "latency",
        "latency",
        "pass",
        f"latency {ratio:.2f}x the champion's (allowed {allowed:.2f}x)",
        ratio,
        allowed,
    )


def evaluate(
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    latency_ratio: float | None,
    policy: GatePolicy,
    champion_name: str = "the champion",
    champion_error: str | None = None,
    intervals: Intervals | None = None,
) -> Verdict:
    """Apply the policy: floors, regression vs the champion and required improvements (skipped
    without one), latency ratio.

    `champion_error`: a champion is deployed but could not be loaded; that fails the gate, since
    skipping its regression checks would let any candidate through. `intervals`: each delta's
    interval; without them a regression is judged on its point value alone.
    """
    found = intervals.deltas if intervals else {}
    level = intervals.label if intervals else "95%"
    checks = [_minimum(m, b, candidate) for m, b in _ordered(policy.minimum)]
    if champion_error:
        checks.append(
            Check(
                "regression",
                "champion",
                "fail",
                f"the champion {champion_name} could not be loaded, so regressions were not checked: "
                f"{champion_error}",
            )
        )
    checks += [
        _regression(m, a, candidate, champion, champion_name, found.get(m), level, policy.needs_significance)
        for m, a in _ordered(policy.max_regression)
    ]
    required = _ordered(dict.fromkeys(policy.require_improvement or []))
    checks += [_improvement(m, candidate, champion, champion_name, found.get(m), level) for m, _ in required]
    checks.append(_latency(latency_ratio, policy.max_latency_ratio, champion is not None))
    reasons = [c.message for c in checks if c.outcome == "fail"]
    return Verdict(not reasons, reasons, checks)


def _ordered(bounds: dict[str, Any]) -> list[tuple[str, Any]]:
    """The policy's metrics in the project's metric order, so reports read the same every time."""
    order = {m: i for i, m in enumerate(ALL_METRICS)}
    return sorted(bounds.items(), key=lambda kv: order.get(kv[0], len(order)))


def enforce(verdict: Verdict) -> None:
    """Raise GateFailed listing every reason when the verdict is a fail."""
    if not verdict.passed:
        raise GateFailed("the quality gate failed:\n" + "\n".join(f"  - {r}" for r in verdict.reasons))


def enforce_all(verdicts: dict[str, Verdict]) -> None:
    """Raise GateFailed naming every failing model with each of its reasons (none: a pass)."""
    failed = {model: v for model, v in verdicts.items() if not v.passed}
    if not failed:
        return
    lines = [f"the quality gate failed for {len(failed)} of {len(verdicts)} changed models:"]
    for model, verdict in failed.items():
        lines.append(f"  {model}:")
        lines += [f"    - {r}" for r in verdict.reasons]
    raise GateFailed("\n".join(lines))
