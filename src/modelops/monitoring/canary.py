"""`modelops analyze`: a canary (or shadow) against main, over a window, answered by `rule`.

Which predictors: the env's rendered manifests (main, and the canary with its traffic share or the
shadow; their versions and content hashes). The evidence:

- requests, 5xx and latency (checks `errors` and `slow`): `counters`, from Prometheus or the local
  runtime;
- outcomes fed back (check `online_error` for classifiers, `online_abs_error` for regression): the
  feedback log `<logs>/<model>/feedback/<YYYY-MM-DD>/*.jsonl`, one line per row with `ts`,
  `hash`, `request_id`, `row`, `truth`, `prediction`; a canary's rows are compared with main's
  (two samples), a shadow's with main's on the same (request id, row) (pairs);
- informing only (no decision): the sampled inference log's prediction distributions (PSI of the
  score, predicted-class shares) and, for a shadow, its agreement with main on the same requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from modelops.config import Params
from modelops.errors import CanaryAborted, CanaryWaiting
from modelops.monitoring import rule
from modelops.monitoring.counters import (
    AnalysisError,
    PrometheusSource,
    RuntimeSource,
    Source,
    prometheus_url,
    runtime_backends,
    slow_bound,
)
from modelops.monitoring.logs import (
    DEFAULT_LAST,
    Records,
    iso,
    parse_time,
    read_feedback,
    read_records,
)
from modelops.params_after import CanaryMargins
from modelops.runtime.desired import PredictorSpec

EXIT = {"promote": 0, "abort": CanaryAborted.exit_code, "wait": CanaryWaiting.exit_code}


@dataclass(frozen=True)
class Pair:
    """The two predictors compared: main, and the canary or shadow."""

    model: str
    env: str
    namespace: str
    main: PredictorSpec
    canary: PredictorSpec

    @property
    def kind(self) -> str:
        return "shadow" if self.canary.shadow else "canary"

    @property
    def hashes(self) -> tuple[str, str]:
        return self.main.content_hash, self.canary.content_hash


def predictors(model: str, env: str, which: str | None = None) -> Pair:
    """Main and the canary (else the shadow; `which` picks one) of `model` as gitops/envs/<env> says."""
    from modelops.delivery import manifests
    from modelops.runtime.desired import deployment

    known = manifests.envs()
    if env not in known:
        raise AnalysisError(f"unknown env {env!r} (known: {', '.join(known)})")
    found = [
        deployment(o)
        for o in manifests.render(env)
        if o.get("kind") in manifests.MODEL_KINDS and o.get("metadata", {}).get("name") == model
    ]
    if not found:
        raise AnalysisError(f"gitops/envs/{env}: no SeldonDeployment or InferenceService named {model!r}")
    d = found[0]
    main = next(p for p in d.predictors if p.name == manifests.MAIN)
    extras = sorted((p for p in d.predictors if p is not main), key=lambda p: p.shadow)
    if which:
        extras = [p for p in extras if ("shadow" if p.shadow else "canary") == which]
    if not extras:
        kind = which or "canary or shadow"
        raise AnalysisError(
            f"{model} has no {kind} in gitops/envs/{env}/{model}.yaml (predictors: "
            f"{', '.join(f'{p.name} {p.version}' for p in d.predictors)}): nothing to analyze"
        )
    if extras[0].content_hash == main.content_hash:
        raise AnalysisError(
            f"{model} in {env}: the {extras[0].name} serves main's own content hash "
            f"{main.content_hash[:12]}: nothing tells them apart"
        )
    return Pair(model, env, d.namespace, main, extras[0])


def with_canaries(env: str, params: Params) -> list[str]:
    """The models of params.yaml with a canary or shadow in `env`, in params order."""
    from modelops.delivery import manifests, promote

    if env not in manifests.envs():
        raise AnalysisError(f"unknown env {env!r} (known: {', '.join(manifests.envs())})")
    found = []
    for model in params.models:
        path = promote.GITOPS / "envs" / env / f"{model}.yaml"
        if path.exists() and promote.read_state(path)[1]:
            found.append(model)
    return found


def deployed_since(pair: Pair) -> datetime | None:
    """When the canary landed: the committer date of the newest commit that changed how often the
    canary's hash occurs in the env's patch file (None outside a git repository)."""
    from modelops.delivery.gitflow import git

    path = f"gitops/envs/{pair.env}/{pair.model}.yaml"
    found = git("log", "-1", "--format=%cI", "-S", pair.canary.content_hash, "--", path, check=False)
    return parse_time(found) if found else None


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    """One fed-back row: when it arrived, who predicted it, and its loss."""

    ts: datetime
    content_hash: str
    key: tuple[str, int]  # (request id, row)
    loss: float


def read_outcomes(log_dir: Path, model: str, task: str, since: datetime, until: datetime) -> Records:
    """The feedback log's rows of `model` with since <= ts < until (`logs.read_feedback`), each
    with its loss under "outcome" (0/1 for a classifier, |truth - prediction| for regression)."""
    found = read_feedback(log_dir, model, since, until)
    rows, found.rows = found.rows, []
    for rec in rows:
        try:
            if task == "regression":
                loss = abs(float(rec["truth"]) - float(rec["prediction"]))
                if not math.isfinite(loss):
                    raise ValueError
            else:
                loss = float(str(rec["truth"]) != str(rec["prediction"]))
        except (ValueError, TypeError):
            found.skip(f"{model} outcome {rec['request_id']}:{rec['row']}", "bad truth or prediction")
            continue
        key = (rec["request_id"], rec["row"])
        found.rows.append({"outcome": Outcome(parse_time(str(rec["ts"])), str(rec["hash"]), key, loss)})
    return found


def online_check(
    pair: Pair, plan: rule.Plan, margins: CanaryMargins, task: str, found: Records
) -> rule.Result:
    """The online loss: canary vs main on their own rows, or a shadow vs main on the same rows."""
    regression = task == "regression"
    name, kind = ("online_abs_error", "mean") if regression else ("online_error", "proportion")
    outcomes: list[Outcome] = [r["outcome"] for r in found.rows]
    main_hash, canary_hash = pair.hashes
    order = lambda o: (o.ts, o.key)  # noqa: E731 (arrival order: a late outcome never moves an earlier one)
    main = sorted((o for o in outcomes if o.content_hash == main_hash), key=order)
    canary = sorted((o for o in outcomes if o.content_hash == canary_hash), key=order)
    if not main and not canary:
        return rule.Result(name, kind, "inactive", note=f"no outcomes fed back in {found.directory}")
    if pair.kind == "shadow":
        theirs = {o.key: o.loss for o in canary}
        both = [(o.loss, theirs[o.key]) for o in main if o.key in theirs]
        m, c = (np.array([p[i] for p in both], dtype="float64") for i in (0, 1))
        if regression:
            return rule.stream_paired(name, plan, None, margins.online_abs_error_ratio, m, c)
        return rule.stream_paired(name, plan, margins.online_error, None, m, c)
    # Two samples: main's from the canary's first outcome on, so both cover the same traffic period.
    start = canary[0].ts if canary else None
    m = np.array([o.loss for o in main if start is None or o.ts >= start], dtype="float64")
    c = np.array([o.loss for o in canary], dtype="float64")
    if regression:
        return rule.stream_mean(name, plan, margins.online_abs_error_ratio, m, c)
    return rule.stream_share(name, plan, margins.online_error, m, c)


# --------------------------------------------------------------------------- counters


BLOCKS = 30  # time blocks the slow check's dispersion is estimated over, when it first could decide


def counter_checks(
    source: Source, pair: Pair, plan: rule.Plan, margins: CanaryMargins, since: datetime, until: datetime
) -> list[rule.Result]:
    """`errors` and `slow`, each decided at the first moment both predictors had its n_req (both
    sources keep history), else, while waiting, on the counters up to `until`.

    `slow` counts effective samples: each predictor's requests divided by the dispersion of its
    slow share over time blocks (`rule.dispersion`), since latency comes in bursts (a descheduled
    server). `errors` does not: a burst of 5xx is the canary's own failure, and is the signal."""
    main_hash, canary_hash = pair.hashes
    # Whole seconds after `since`, whatever `until` is: a later look bisects the same instants.
    seconds = range(1, max(math.ceil((until - since).total_seconds()), 1) + 1)  # the last is `until`

    def moment(s: float) -> datetime:
        return min(since + timedelta(seconds=s), until)

    def errors(at: datetime) -> Evidence:
        c = source.counts(at)
        m, k = c[main_hash], c[canary_hash]
        return Evidence(margins.error_rate, (m.errors, m.requests), (k.errors, k.requests))

    def slow(at: datetime, width: int | None = None) -> Evidence | None:
        """At `at`; with `width`, over blocks of that many seconds (the last one may be shorter)."""
        c = source.counts(at)
        m, k = c[main_hash], c[canary_hash]
        bound = slow_bound(m, k)
        if bound is None:
            return None
        note = f"slower than {bound:g} s, the bucket bound at or above the p95 of both pooled"
        found = Evidence(margins.slow_rate, (m.above(bound), m.timed), (k.above(bound), k.timed), note)
        if width is None:
            return found
        edges = [moment(s) for s in range(width, math.ceil((at - since).total_seconds()), width)]
        blocks = [source.counts(t) for t in [*edges, at]]
        phi = tuple(
            rule.dispersion(
                np.diff([0.0] + [b[h].above(bound) for b in blocks]),
                np.diff([0.0] + [b[h].timed for b in blocks]),
            )
            for h in pair.hashes
        )
        note += (
            f"; dispersion over {len(blocks)} blocks of {width} s: main {phi[0]:.2f}, canary {phi[1]:.2f} "
            f"(effective samples {found.main[1] / phi[0]:,.0f} and {found.canary[1] / phi[1]:,.0f})"
        )
        return replace(found, note=note, dispersion=(phi[0], phi[1]))

    def ready(evidence: Evidence | None) -> bool:
        return evidence is not None and rule.counts_ready(plan, *evidence.counts, evidence.dispersion)

    def judged(name: str, evidence: Evidence | None, at: datetime, samples: str) -> rule.Result:
        if evidence is None:  # slow, with no bound: nothing timed yet, or a p95 off the histogram
            c = source.counts(at)
            timed = c[main_hash].timed + c[canary_hash].timed
            note = "the p95 is above the largest latency bucket" if timed else "no timed requests yet"
            status = "inactive" if timed >= 2 * plan.min_samples else "wait"
            return rule.Result(name, "proportion", status, margins.slow_rate, samples=samples, note=note)
        found = rule.counts(name, plan, *evidence.counts, samples, evidence.dispersion)
        return replace(found, note="; ".join(x for x in (evidence.note, found.note) if x))

    waiting = f"counters {_span(since, until)}"
    results = []
    at = rule.earliest(lambda s: ready(errors(moment(s))), seconds)
    if at is None:
        results.append(judged("errors", errors(until), until, waiting))
    else:
        first = moment(at)
        results.append(
            judged("errors", errors(first), first, f"counters {_span(since, first)} (first n_req)")
        )
    # slow: the first second its raw counts have n_req (bisected, as errors) fixes the block width
    # (at most BLOCKS blocks up to then); from there, block by block, the first whose effective
    # samples have n_req. Each step reads only what came before it: a later look finds the same.
    at = rule.earliest(lambda s: ready(slow(moment(s))), seconds)
    width = max(1, math.ceil(at / BLOCKS)) if at is not None else max(1, math.ceil(seconds[-1] / BLOCKS))
    whole = int((until - since).total_seconds())  # candidates are whole seconds, never a partial one
    for s in range(math.ceil(at / width) * width, whole + 1, width) if at is not None else ():
        found = slow(moment(s), width)
        if ready(found):
            first = moment(s)
            results.append(judged("slow", found, first, f"counters {_span(since, first)} (first n_req)"))
            break
    else:
        results.append(judged("slow", slow(until, width), until, waiting))
    return results


@dataclass(frozen=True)
class Evidence:
    """One share check's counters at a moment: (events, requests) of main and of the canary."""

    margin: float
    main: tuple[float, float]
    canary: tuple[float, float]
    note: str = ""
    dispersion: tuple[float, float] = (1.0, 1.0)

    @property
    def counts(self) -> tuple[float, tuple[float, float], tuple[float, float]]:
        return self.margin, self.main, self.canary


def _span(since: datetime, until: datetime) -> str:
    return f"from {iso(since)} to {iso(until)}"


def counter_source(
    pair: Pair, since: datetime, prometheus: str | None, runtime: str | None, state_dir: Path | None
) -> Source:
    """Prometheus when a URL is given (or in $MODELOPS_PROMETHEUS_URL), else the local runtime."""
    import httpx

    from modelops.runtime import credentials, sync

    if url := prometheus_url(prometheus):
        return PrometheusSource(url, pair.namespace, pair.model, pair.hashes, since)
    if runtime:
        headers = credentials.headers()  # $MODELOPS_TOKEN or $MODELOPS_AUTH_TOKENS_FILE, if any
        try:
            answer = httpx.get(runtime.rstrip("/") + "/_modelops/status", headers=headers, timeout=10)
            status = answer.raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise AnalysisError(f"the local runtime at {runtime} did not answer: {exc}") from None
    else:
        status = sync.running(pair.env, state_dir or sync.STATE_DIR)
        if status is None:
            raise AnalysisError(
                f"no request counters for {pair.model} in {pair.env}: give --prometheus URL (or "
                f"$MODELOPS_PROMETHEUS_URL), or --runtime URL, or run `modelops sync --env {pair.env}`"
            )
        runtime = status["endpoint"]
        headers = sync.client_headers(pair.env, state_dir or sync.STATE_DIR)
    backends = runtime_backends(status, pair.namespace, pair.model, pair.hashes)
    return RuntimeSource(runtime, backends, since, headers=headers)


# --------------------------------------------------------------------------- the analysis


@dataclass
class Analysis:
    """Everything `modelops analyze` found and answered, as the report and the JSON show it."""

    pair: Pair
    since: datetime
    until: datetime
    task: str
    plan: rule.Plan
    margins: CanaryMargins
    checks: list[rule.Result]
    decision: str
    reason: str
    source: str
    queries: list[str]
    log_dir: Path
    info: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT[self.decision]

    @property
    def message(self) -> str:
        p = self.pair
        return f"{self.headline} (main {p.main.version}): {self.reason}"

    @property
    def headline(self) -> str:
        p = self.pair
        verb = {"promote": "promote", "abort": "abort", "wait": "wait on"}[self.decision]
        return f"{p.model} in {p.env}: {verb} the {p.kind} {p.canary.version}"


def analyze(
    model: str,
    env: str,
    params: Params,
    until: datetime,
    since: datetime | None = None,
    log_dir: Path | None = None,
    prometheus: str | None = None,
    runtime: str | None = None,
    which: str | None = None,
    state_dir: Path | None = None,
) -> Analysis:
    """Gather the evidence on `model`'s canary (or shadow) in `env` and answer promote/abort/wait."""
    from modelops.monitoring import divergence
    from modelops.monitoring.logs import default_log_dir

    ds = params.dataset_of(model)
    pair = predictors(model, env, which)
    since = since or deployed_since(pair) or until - DEFAULT_LAST
    if since >= until:
        raise AnalysisError(
            f"empty window: since {since.isoformat()} is not before until {until.isoformat()}"
        )
    log_dir = log_dir or default_log_dir(env)
    source = counter_source(pair, since, prometheus, runtime, state_dir)
    outcomes = read_outcomes(log_dir, model, ds.task, since, until)
    cfg = params.canary
    online_active = any(r["outcome"].content_hash in pair.hashes for r in outcomes.rows)
    plan = rule.Plan(cfg.alpha, cfg.beta, 2 + int(online_active), cfg.min_samples)
    checks = counter_checks(source, pair, plan, cfg.margins, since, until)
    checks.append(online_check(pair, plan, cfg.margins, ds.task, outcomes))
    # The slow check drops out when the pooled p95 is off the histogram: it then spends no alpha.
    active = sum(1 for c in checks if c.status != "inactive")
    if active != plan.k:
        plan = rule.Plan(cfg.alpha, cfg.beta, max(active, 1), cfg.min_samples)
        checks = counter_checks(source, pair, plan, cfg.margins, since, until)
        checks.append(online_check(pair, plan, cfg.margins, ds.task, outcomes))
    decision, reason = rule.decide(checks)
    records = read_records(log_dir, model, since, until)
    info = divergence.describe(pair.hashes, pair.kind, ds, records)
    skipped = outcomes.skip_examples + records.skip_examples
    return Analysis(
        pair,
        since,
        until,
        ds.task,
        plan,
        cfg.margins,
        checks,
        decision,
        reason,
        source.where,
        source.queries,
        log_dir,
        info,
        skipped,
    )


def enforce(result: Analysis) -> None:
    """Exit status for CI: CanaryAborted (20), CanaryWaiting (21), or success (promote)."""
    if result.decision == "abort":
        raise CanaryAborted(result.message)
    if result.decision == "wait":
        raise CanaryWaiting(result.message)
