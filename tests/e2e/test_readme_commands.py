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


def test_make_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    """README's first command: merge deploys, revert rolls back, on this machine, from a fresh clone."""
    clone = committed_clone(tmp_path / "modelops")
    proc = run(["make", "demo", f"UV={UV}"], clone, env={"VIRTUAL_ENV": ""}, timeout=1200)
    out = proc.stdout
    # 1. main's committed dvc.lock is reproduced exactly, and promoted to both envs as v1.
    assert "reproduced the committed dvc.lock exactly" in out
    assert "promote(staging): credit-hgb v1" in out and "promote(production): credit-hgb v1" in out
    # 2-5. the versions production and staging answered with, in order, from the response headers.
    answers = re.findall(r"/seldon/modelops-(\w+)/credit-hgb/api/v1.0/predictions\n\s+-> (v\d+) \(hash", out)
    expected = [("production", "v1"), ("staging", "v2"), ("production", "v2"), ("production", "v1")]
    assert answers == expected, out
    # 3. the report CI posted on the PR: the verdict first, against the model deployed now.
    assert "| ## ✅ credit-hgb: passes the quality gate" in out
    assert "champion v1 in production" in out
    # 4. promote.yml committed staging and opened the production PR; its merge and revert are commits.
    assert "promote(staging): credit-hgb v2" in out and "it opened PR #2" in out
    assert 'Revert "promote(production): credit-hgb v2"' in out
    # 6. a timeline, and the runtimes are stopped (no server outlives the demo).
    timeline = re.findall(r"^\s*([0-9.]+) s  (.+)$", out, re.MULTILINE)
    assert [name for _, name in timeline][-1] == "total" and len(timeline) == 6, out[-2000:]
    work = clone / ".scratch/demo/work"
    assert (work / ".git").is_dir() and not list((work / ".modelops/runtime").glob("*.json"))
    print(f"make demo: {timeline[-1][0]} s of demo after setup")


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
