"""Request, 5xx and latency counters of two predictors, from Prometheus or from the servers themselves.

Both sources read the server's own series (serving/src/modelops_serving/metrics.py):
`modelops_requests_total{endpoint, status}`, the histogram `modelops_request_seconds_bucket{le}` and
`modelops_model_info{name, version, hash}`. A predictor is told apart by the content hash its
servers export, never by a pod or predictor name, so the same queries work whatever Seldon names the
pods.

Prometheus (`--prometheus URL`, or $MODELOPS_PROMETHEUS_URL): instant queries of its HTTP API
(`/api/v1/query`) at a time t, over the range [since, t]. They assume what gitops/monitoring assumes:
each server pod is scraped with the target labels `namespace` (the env's namespace) and `pod`. The
server's counters are joined to the pod's `modelops_model_info` on (namespace, pod), keeping the
`hash` label (see `PrometheusSource.expressions`; `counted` says how a series' count over the
range is taken). Because Prometheus keeps history, the counts at any earlier t can be asked for:
the rule decides on the first moment both predictors had n_req.

The local runtime (`modelops sync`): its router's `/_modelops/status` lists each predictor's
backends, and its `/_modelops/counters` the history of their `/metrics` (runtime/recorder.py,
scraped every second): like Prometheus, it can say what the counters were at any moment since the
window start, so the rule decides on the first moment both predictors had n_req here too.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from modelops.monitoring.logs import MonitorError
from modelops.runtime.recorder import INFO, LATENCY, REQUESTS, Sample, increase

PROMETHEUS_ENV = "MODELOPS_PROMETHEUS_URL"
SLOW_QUANTILE = 0.95
TIMEOUT_S = 30.0


class AnalysisError(MonitorError):
    """The canary analysis cannot run: no canary, no counters, a source that does not answer."""


@dataclass
class ArmCounts:
    """One predictor's counters over a window: requests, 5xx answers, latency buckets (le -> count)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    @property
    def timed(self) -> float:
        """Requests with a latency observation (the histogram's +Inf bucket)."""
        return self.buckets.get(math.inf, 0.0)

    def above(self, bound: float) -> float:
        """Requests slower than `bound` (a bucket bound of the histogram)."""
        return max(self.timed - self.buckets.get(bound, 0.0), 0.0)


def slow_bound(*arms: ArmCounts, quantile: float = SLOW_QUANTILE) -> float | None:
    """The smallest bucket bound at or above the `quantile` of the arms' latencies pooled; None if
    that is +Inf (or nothing was timed).

    Pooled, not main's alone: the bound is then a symmetric function of both predictors' samples,
    so under H0 choosing it does not favour either side. Main's alone made main's share above it
    at most 5% by construction while the canary's was not, and a healthy canary whose p95 sits at
    a bucket bound was aborted more often than alpha (docs/delivery.md has the measurement)."""
    buckets: dict[float, float] = {}
    for arm in arms:
        for le, count in arm.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + count
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return None
    for le in sorted(buckets):
        if buckets[le] >= quantile * total:
            return le if math.isfinite(le) else None
    return None


def counted(series: str, span: str) -> str:
    """PromQL for what each counter series counted over the last `span`: its last value minus its
    value at the start (0 for a series born in the window: a new pod, or a status first seen),
    exact where increase() would extrapolate and lose a new series' first sample; for a series
    that reset in the window (a restarted container), increase()'s estimate."""
    last = f"last_over_time({series}[{span}])"
    return (
        f"(({last} - ({series} offset {span} or {last} * 0)) unless resets({series}[{span}]) > 0"
        f" or increase({series}[{span}]))"
    )


class Source(Protocol):
    """Where counters come from: `counts(at)` is what each predictor counted from the window start
    to `at` (both sources keep history, so any earlier `at` can be asked for)."""

    where: str
    queries: list[str]

    def counts(self, at: datetime) -> dict[str, ArmCounts]: ...


# --------------------------------------------------------------------------- Prometheus


@dataclass
class PrometheusSource:
    """Counters from a Prometheus server's HTTP API, joined to the predictors by content hash."""

    url: str
    namespace: str
    model: str
    hashes: tuple[str, ...]
    since: datetime
    queries: list[str] = field(default_factory=list)
    _seen: dict[float, dict[str, ArmCounts]] = field(default_factory=dict, repr=False)

    @property
    def where(self) -> str:
        return f"Prometheus at {self.url}"

    def __post_init__(self) -> None:
        # what the report shows: each query once, R standing for the range since the window start
        self.queries = [*self.expressions("R").values()]

    def expressions(self, span: str) -> dict[str, str]:
        """The three queries over the range `span` (PromQL, e.g. 90000ms), by what they count."""
        ns = f'namespace="{self.namespace}"'
        info = (
            f"max by (namespace, pod, hash) (max_over_time({INFO}{{{ns}, "
            f'name="{self.model}", hash=~"{"|".join(self.hashes)}"}}[{span}]))'
        )
        join = f"* on (namespace, pod) group_left (hash) {info}"
        return {
            "requests": f"sum by (hash) ({counted(f'{REQUESTS}{{{ns}}}', span)} {join})",
            "errors": f"sum by (hash) ({counted(f'{REQUESTS}{{{ns}, status=~"5.."}}', span)} {join})",
            "buckets": f"sum by (hash, le) ({counted(f'{LATENCY}{{{ns}}}', span)} {join})",
        }

    def counts(self, at: datetime) -> dict[str, ArmCounts]:
        # the bisections of several checks ask for the same times again
        key = at.timestamp()
        if key not in self._seen:
            self._seen[key] = self._counts(key)
        return self._seen[key]

    def _counts(self, at: float) -> dict[str, ArmCounts]:
        ms = max(1, int((at - self.since.timestamp()) * 1000))
        out = {h: ArmCounts() for h in self.hashes}
        for what, expr in self.expressions(f"{ms}ms").items():
            for sample in self._query(expr, at):
                arm = out.get(sample["metric"].get("hash", ""))
                if arm is None:
                    continue
                value = float(sample["value"][1])
                if what == "buckets":
                    arm.buckets[float(sample["metric"].get("le", "+Inf"))] = value
                else:
                    setattr(arm, what, value)
        return out

    def _query(self, expr: str, at: float) -> list[dict[str, Any]]:
        endpoint = self.url.rstrip("/") + "/api/v1/query"
        try:
            answer = httpx.post(endpoint, data={"query": expr, "time": f"{at:.3f}"}, timeout=TIMEOUT_S)
            body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise AnalysisError(f"{endpoint} did not answer {expr!r}: {type(exc).__name__}: {exc}") from None
        if body.get("status") != "success":
            raise AnalysisError(
                f"{endpoint} refused {expr!r}: "
                f"{body.get('errorType', answer.status_code)}: {body.get('error')}"
            )
        return body["data"]["result"]


# --------------------------------------------------------------------------- the local runtime


@dataclass
class RuntimeSource:
    """Counters from the local runtime's history (runtime/recorder.py): the router scrapes every
    server of the env each second and keeps the samples, so counts at an earlier moment are known
    as with Prometheus. Summed over each predictor's replicas, told apart by content hash."""

    url: str
    backends: dict[str, list[str]]  # content hash -> backend URLs
    since: datetime
    queries: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # the runtime's bearer token
    _samples: dict[str, list[Sample]] | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        return f"the local runtime at {self.url} (its history of each server's /metrics, summed by predictor)"

    def counts(self, at: datetime) -> dict[str, ArmCounts]:
        samples = self._history()
        out = {}
        for content_hash, urls in self.backends.items():
            arm = ArmCounts()
            for url in urls:
                got = increase(samples.get(url, []), self.since.timestamp(), at.timestamp(), content_hash)
                arm.requests += got.requests
                arm.errors += got.errors
                for le, n in got.buckets:
                    arm.buckets[le] = arm.buckets.get(le, 0.0) + n
            out[content_hash] = arm
        return out

    def _history(self) -> dict[str, list[Sample]]:
        """The router's samples since the window start, fetched once (it scrapes afresh first)."""
        if self._samples is None:
            query = f"{self.url.rstrip('/')}/_modelops/counters?since={self.since.timestamp():.3f}"
            self.queries.append(f"GET {query}")
            try:
                body = httpx.get(query, headers=self.headers, timeout=TIMEOUT_S).raise_for_status().json()
                raw = body["servers"]
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                raise AnalysisError(f"{query} did not answer: {type(exc).__name__}: {exc}") from None
            self._samples = {url: [Sample.from_list(x) for x in rows] for url, rows in raw.items()}
            for content_hash, urls in self.backends.items():
                for url in urls:
                    served = {x.hash for x in self._samples.get(url, [])[-1:]}
                    if served and served != {content_hash}:
                        raise AnalysisError(
                            f"{url} serves content hash {served.pop()}, not {content_hash}: the local "
                            "runtime is not serving what gitops/ says (run `modelops sync`)"
                        )
        return self._samples


def runtime_backends(
    status: dict[str, Any], namespace: str, model: str, hashes: tuple[str, ...]
) -> dict[str, list[str]]:
    """Backend URLs per content hash, from the runtime's status; every hash must be served."""
    found: dict[str, list[str]] = {}
    for d in status.get("deployments", []):
        if (d.get("namespace"), d.get("name")) != (namespace, model):
            continue
        for p in d.get("predictors", []):
            found.setdefault(p.get("content_hash", ""), []).extend(p.get("backends", []))
    missing = [h for h in hashes if not found.get(h)]
    if missing:
        served = ", ".join(h[:12] for h in found) or "nothing"
        raise AnalysisError(
            f"the local runtime of {status.get('env', '?')} serves {served} for {namespace}/{model}, "
            f"not {', '.join(h[:12] for h in missing)}: it is behind gitops/ (run `modelops sync`)"
        )
    return {h: found[h] for h in hashes}


def prometheus_url(given: str | None) -> str | None:
    """--prometheus, else $MODELOPS_PROMETHEUS_URL, else None (use the local runtime)."""
    return given or os.environ.get(PROMETHEUS_ENV) or None


def describe(counts: ArmCounts) -> str:
    """One line for the report."""
    return f"{counts.requests:,.0f} requests, {counts.errors:,.0f} 5xx, {counts.timed:,.0f} timed"
