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
from tests.gitops_models import add_manifests

UV = Path.home() / ".local/bin/uv"
MODEL = "credit-hgb"  # the demo's default: the first model with manifests, changed by its PR
OTHER = "hpc-forest"  # the next one, left unchanged


def committed_clone(dest: Path) -> Path:
    """A clone of the project's committed state, as CI and a new user get it."""
    run(["git", "clone", "-q", str(PROJECT_ROOT), str(dest)], dest.parent)
    return dest


def test_make_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    """README's first command: merge deploys, revert rolls back, on this machine, from a fresh clone,
    with two models served: the PR changes one, the other answers at v1 from the same server."""
    clone = committed_clone(tmp_path / "modelops")
    # The demo serves the first two models of params.yaml that have manifests; until the second
    # ships its own, it gets credit-hgb's renamed (untracked files reach the demo's forge too).
    add_manifests(clone, OTHER)
    proc = run(["make", "demo", f"UV={UV}"], clone, env={"VIRTUAL_ENV": ""}, timeout=1800)
    out = proc.stdout
    # 1. main's dvc.lock is trained (or reproduced exactly), both models promoted to both envs as v1.
    for model in (MODEL, OTHER):
        for env in ("staging", "production"):
            assert f"promote({env}): {model} v1" in out, out[-3000:]

    # 2-5. the versions each model answered with, in order, from the response headers.
    def answers(model: str) -> list[tuple[str, str]]:
        pattern = rf"/seldon/modelops-(\w+)/{model}/api/v1.0/predictions\n\s+-> (v\d+) \(hash"
        return re.findall(pattern, out)

    steps = ["production", "staging", "production", "production", "production", "production"]
    assert answers(MODEL) == list(zip(steps, ["v1", "v2", "v2", "v1", "v2", "v2"], strict=True)), out
    assert answers(OTHER) == [(env, "v1") for env in steps], out
    # ... and from the same server processes after each of the changed model's deploys
    assert out.count(f"{OTHER} in production: still v1, same server") == 4
    # 3. the report CI posted on the PR: a verdict for the changed model, against the one deployed now.
    report = "\n".join(line for line in out.splitlines() if line.lstrip().startswith("|"))
    assert MODEL in report and "passes the quality gate" in report
    assert "champion v1 in production" in out
    # 4. promote.yml committed staging for the changed model only and opened its production PR;
    # the merge and the revert are commits.
    assert f"promote(staging): {MODEL} v2" in out and "it opened PR #2" in out
    assert f"promote(staging): {OTHER} v2" not in out and "it opened PR #3" not in out
    assert f'Revert "promote(production): {MODEL} v2"' in out
    # 6. v2 as a canary with outcomes fed back: canary.yml proposes finishing it; merged.
    assert f"canary.yml opened PR #3: promote(production): {MODEL} v2 (canary finished)" in out, out[-4000:]
    assert f"merged it: promote(production): {MODEL} v2 (canary finished)" in out
    # 7. a one-tree model as a canary: canary.yml commits its abort by itself; v2 alone serves.
    assert f"canary(production): {MODEL} v3 takes 50%" in out
    assert f"canary.yml committed to main: abort(production): {MODEL} back to v2 only" in out, out[-4000:]
    assert f"production serves {MODEL} v2 only" in out
    # 8. a timeline that names the changed model, and the runtimes are stopped.
    assert f"== timeline (changed by the PR: {MODEL}; unchanged, served at v1 throughout: {OTHER}) ==" in out
    timeline = re.findall(r"^\s*([0-9.]+) s  (.+)$", out, re.MULTILINE)
    assert [name for _, name in timeline][-1] == "total" and len(timeline) == 8, out[-2000:]
    work = clone / ".scratch/demo/work"
    assert (work / ".git").is_dir() and not list((work / ".modelops/runtime").glob("*.json"))
    print("make demo, after setup:\n" + "\n".join(f"{seconds:>7} s  {name}" for seconds, name in timeline))


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
