"""The local runtime's counter history: what Prometheus keeps for a cluster, kept by the router.

Every `interval_s` the router scrapes each server's `/metrics` and keeps, per server URL, the
samples of its request, 5xx and latency-histogram counters (with the content hash it serves), for
`keep_s`. `modelops analyze` reads them back (`GET /_modelops/counters?since=T`) and can then ask
what the counters were at any earlier moment, as it asks Prometheus: the canary rule decides on
the first moment both predictors had n_req, so a later look reaches the same answer instead of
re-testing a growing sample (which aborted healthy canaries more often than alpha).

A sample is kept only when a counter moved (an idle server costs nothing), and the last one before
`since` is always returned, as the baseline of servers that were already running.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

REQUESTS = "modelops_requests_total"
LATENCY = "modelops_request_seconds_bucket"
INFO = "modelops_model_info"


@dataclass(frozen=True)
class Sample:
    """One scrape of one server: when, the content hash it serves, and its cumulative counters."""

    t: float
    hash: str
    requests: float
    errors: float
    buckets: tuple[tuple[float, float], ...]  # (le, count), le ascending, +Inf last

    def as_list(self) -> list[Any]:
        return [self.t, self.hash, self.requests, self.errors, [[_le(le), n] for le, n in self.buckets]]

    @staticmethod
    def from_list(raw: list[Any]) -> Sample:
        t, content_hash, requests, errors, buckets = raw
        return Sample(
            float(t), str(content_hash), float(requests), float(errors),
            tuple((float(le), float(n)) for le, n in buckets),
        )  # fmt: skip


def _le(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le)


def parse(text: str, t: float) -> Sample:
    """A server's /metrics text as a Sample (requests and histogram summed over endpoints)."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = 0.0
    buckets: dict[float, float] = {}
    served = ""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == REQUESTS:
                requests += s.value
                if s.labels.get("status", "").startswith("5"):
                    errors += s.value
            elif s.name == LATENCY:
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif s.name == INFO and s.labels.get("hash"):
                served = s.labels["hash"]
    return Sample(t, served, requests, errors, tuple(sorted(buckets.items())))


@dataclass
class Recorder:
    """Per server URL, its samples (oldest dropped after `keep_s`)."""

    interval_s: float = 1.0
    keep_s: float = 6 * 3600.0
    series: dict[str, deque[Sample]] = field(default_factory=dict)

    def add(self, url: str, sample: Sample) -> None:
        kept = self.series.setdefault(url, deque())
        last = kept[-1] if kept else None
        if last is None or (last.hash, last.requests, last.buckets) != (
            sample.hash,
            sample.requests,
            sample.buckets,
        ):
            kept.append(sample)
        while kept and kept[0].t < sample.t - self.keep_s and len(kept) > 1:
            kept.popleft()

    async def scrape(self, client: httpx.AsyncClient, urls: Iterable[str]) -> None:
        """One sample of every server that answers (one that does not is simply not sampled)."""

        async def one(url: str) -> None:
            try:
                answer = await client.get(url + "/metrics", timeout=5.0)
                answer.raise_for_status()
            except httpx.HTTPError:
                return
            self.add(url, parse(answer.text, time.time()))

        await asyncio.gather(*(one(u) for u in set(urls)))

    async def run(self, urls: Callable[[], Iterable[str]]) -> None:
        """Scrape the servers `urls()` names every interval, until cancelled."""
        async with httpx.AsyncClient() as client:
            while True:
                await self.scrape(client, urls())
                await asyncio.sleep(self.interval_s)

    def export(self, since: float) -> dict[str, list[list[Any]]]:
        """Per server: its samples after `since`, and the last one at or before it (the baseline)."""
        out: dict[str, list[list[Any]]] = {}
        for url, kept in self.series.items():
            before = [s for s in kept if s.t <= since][-1:]
            out[url] = [s.as_list() for s in (*before, *(s for s in kept if s.t > since))]
        return out


def increase(samples: list[Sample], since: float, at: float, content_hash: str) -> Sample:
    """What one server counted for `content_hash` in (since, at]: like Prometheus' increase() with
    exact values, a drop being a restart (the new value counts whole); a server whose first sample
    is after `since` counts from zero."""
    prev: Sample | None = None
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for s in samples:
        if s.t > at:
            break
        if s.hash != content_hash:
            prev = None  # another model on this port: nothing of it counts
            continue
        if s.t <= since:
            prev = s
            continue
        base = prev if prev is not None and s.requests >= prev.requests else None
        requests += s.requests - (base.requests if base else 0.0)
        errors += max(s.errors - (base.errors if base else 0.0), 0.0)
        before = dict(base.buckets) if base else {}
        for le, n in s.buckets:
            buckets[le] = buckets.get(le, 0.0) + max(n - before.get(le, 0.0), 0.0)
        prev = s
    return Sample(at, content_hash, requests, errors, tuple(sorted(buckets.items())))
