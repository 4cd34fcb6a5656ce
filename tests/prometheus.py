"""A real Prometheus for tests: its binaries (make setup-tools), a server on a free loopback port
(stopped by PID through `tests.processes.Processes`), and its query API."""

from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port
from tests.processes import Processes, wait_for


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
