"""A real Prometheus for tests: its binaries, a server on a free loopback port (stopped by PID through
`tests.processes.Processes`), its query API, and a TSDB backfilled with a past of scrapes.

`backfill` gives Prometheus a history without waiting for it: each `Pod`'s requests are replayed
through the model server's own metrics (`modelops_serving.metrics.Metrics`, so the series, labels
and buckets are the servers' by construction), a snapshot of their exposition is taken every scrape
interval with the target labels a scrape adds (`namespace` and `pod`, as gitops/monitoring
assumes), and the samples become TSDB blocks through `promtool tsdb create-blocks-from openmetrics`.
A Prometheus then started on that directory answers queries over the past as if it had scraped the
servers all along.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port
from tests.processes import Processes, wait_for

SCRAPE_INTERVAL = timedelta(seconds=30)


def binary(name: str) -> str:
    """`name` (prometheus, promtool) next to this interpreter (make setup-tools puts both there),
    else on PATH. Missing, it fails the test under CI (a lost install step must not pass as skipped
    tests) and skips it on a laptop."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        message = (
            f"{name} not found next to the Python interpreter nor on PATH: run `make setup-tools` "
            "(or apt-get install prometheus / brew install prometheus)"
        )
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return found


def start(processes: Processes, workdir: Path, config: dict[str, Any] | None = None) -> str:
    """A Prometheus on `workdir`/tsdb (backfilled, or new) with `config` (default: scrapes nothing),
    on a free port of 127.0.0.1; its URL once it is ready. `processes` stops it."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config or {"scrape_configs": []}))
    port = free_port()
    log = workdir / "prometheus.log"
    args = [
        binary("prometheus"),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    processes.start(args, log, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    wait_for(
        "Prometheus to be ready", lambda: httpx.get(url + "/-/ready", timeout=5).status_code == 200, log=log
    )
    return url


def query(url: str, expr: str, at: datetime | None = None) -> list[dict[str, Any]]:
    """An instant query's result (now, or at `at`)."""
    params = {"query": expr} | ({"time": f"{at.timestamp():.3f}"} if at else {})
    body = httpx.get(url + "/api/v1/query", params=params, timeout=10).raise_for_status().json()
    return body["data"]["result"]


# --------------------------------------------------------------------------- backfilled history


@dataclass(frozen=True)
class Request:
    """One request a server handled: when, its time inside the handler, its HTTP status."""

    at: datetime
    seconds: float
    status: int = 200
    endpoint: str = "v1"


@dataclass(frozen=True)
class Pod:
    """One model server pod as its scrapes see it: where it runs, what it serves, what it handled."""

    namespace: str
    name: str
    model: str
    version: str
    content_hash: str
    requests: Sequence[Request]


def _series(name: str, labels: dict[str, str]) -> str:
    escape = lambda v: v.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")  # noqa: E731
    return name + "{" + ",".join(f'{k}="{escape(v)}"' for k, v in sorted(labels.items())) + "}"


def scrapes(pod: Pod, since: datetime, until: datetime, interval: timedelta) -> dict[str, list[str]]:
    """Per series, the samples ("value timestamp") that a scrape of `pod` every `interval` from
    `since` to `until` stores: the server's metrics after the requests handled by then."""
    from modelops_serving.metrics import Metrics
    from prometheus_client.parser import text_string_to_metric_families

    metrics = Metrics()
    metrics.set_model(pod.model, pod.version, pod.content_hash, ())
    pending = sorted(pod.requests, key=lambda r: r.at)
    target = {"job": "modelops", "namespace": pod.namespace, "pod": pod.name}
    out: dict[str, list[str]] = {}
    at, handled = since, 0
    while at <= until:
        while handled < len(pending) and pending[handled].at <= at:
            r = pending[handled]
            metrics.observe_request(r.endpoint, r.status, r.seconds)
            handled += 1
        for family in text_string_to_metric_families(metrics.exposition().decode()):
            for s in family.samples:
                key = _series(s.name, s.labels | target)
                out.setdefault(key, []).append(f"{s.value!r} {at.timestamp():.3f}")
        at += interval
    return out


def backfill(
    tsdb: Path, pods: Iterable[Pod], since: datetime, until: datetime, interval: timedelta = SCRAPE_INTERVAL
) -> None:
    """TSDB blocks in `tsdb` holding the scrapes of `pods` from `since` to `until`."""
    tsdb.parent.mkdir(parents=True, exist_ok=True)
    source = tsdb.with_name(tsdb.name + ".om")
    series: dict[str, list[str]] = {}
    for pod in pods:
        series |= scrapes(pod, since, until, interval)
    with source.open("w") as out:
        for key in sorted(series):  # a metric's series together, each in time order
            out.writelines(f"{key} {sample}\n" for sample in series[key])
        out.write("# EOF\n")
    proc = subprocess.run(
        [binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(source), str(tsdb)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"promtool could not backfill {source}:\n{proc.stdout}{proc.stderr}"
