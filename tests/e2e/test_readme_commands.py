"""The README's commands, run as a user would: `make demo` in a fresh clone, `make mlflow-ui`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from modelops.workspace import PROJECT_ROOT
from tests.conftest import free_port, run

UV = Path.home() / ".local/bin/uv"


def committed_clone(dest: Path) -> Path:
    """A clone of the project's committed state, as CI and a new user get it."""
    run(["git", "clone", "-q", str(PROJECT_ROOT), str(dest)], dest.parent)
    return dest


def test_make_demo_reproduces_and_prints_metrics(tmp_path: Path) -> None:
    clone = committed_clone(tmp_path / "modelops")
    proc = run(["make", "demo", f"UV={UV}"], clone, env={"VIRTUAL_ENV": ""}, timeout=900)
    # committed outputs (validation result, metrics, plots) match, so DVC only rebuilds the cached ones
    for stage in ("ingest", "prepare", "train@credit-hgb", "package@credit-hgb"):
        assert f"Running stage '{stage}'" in proc.stdout
    for stage in ("validate", "evaluate@credit-hgb"):
        assert f"Stage '{stage}' didn't change" in proc.stdout
    row = re.search(r"^\| credit-hgb \| ([0-9.]+) \|", proc.stdout, re.MULTILINE)
    assert row, proc.stdout[-2000:]
    assert re.search(r"credit-hgb: MLflow run [0-9a-f]{32} at sqlite:///", proc.stdout)
    committed = (PROJECT_ROOT / "models/credit-hgb/metrics.json").read_text()
    assert (clone / "models/credit-hgb/metrics.json").read_text() == committed
    assert run(["git", "status", "--porcelain"], clone).stdout == ""


def test_make_mlflow_ui_serves_the_repository_store(trained_repo: Path, tmp_path: Path) -> None:
    port = free_port()
    makefile = PROJECT_ROOT / "Makefile"
    proc = subprocess.Popen(
        ["make", "-f", str(makefile), "mlflow-ui", f"UV={UV}", f"PORT={port}"],
        cwd=trained_repo,
        start_new_session=True,
        env=os.environ | {"UV_PROJECT": str(PROJECT_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, body = time.monotonic() + 90, ""
        while time.monotonic() < deadline and not body:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10",
                    timeout=2,
                ) as resp:
                    body = resp.read().decode()
            except OSError:
                time.sleep(1)
        assert '"name": "modelops"' in body or '"name":"modelops"' in body, body
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
