"""`modelops sync`: the local stand-in for Argo CD + Seldon, serving what `gitops/envs/<env>` says.

Like Argo CD it tracks a branch (fetching `origin` when there is one), renders the env with the same
kustomize at that commit and validates it (`runtime.desired`). Like Seldon it starts one server
process per predictor replica of every SeldonDeployment of the env (the project's own
`modelops-serve`, with the manifest's container env and `modelUri`) and routes one loopback
endpoint, `/seldon/<namespace>/<deployment>/...`, by the predictors' traffic and shadow flags
(`runtime.controller`, `runtime.router`). This module runs it: a daemon per env, its state file,
and the one-shot `sync`, `stop` and `status` views.

With a tokens file (`--tokens-file` or `$MODELOPS_AUTH_TOKENS_FILE`) the router and the servers it
starts require its bearer tokens; the state record keeps the file's path so that `status`,
`analyze` and `sync` itself can send one (runtime/credentials.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from modelops_serving import auth

from modelops.delivery import manifests
from modelops.runtime import credentials
from modelops.runtime.controller import (
    DRAIN_TIMEOUT_S,
    READY_TIMEOUT_S,
    STATE_DIR,
    STOP_TIMEOUT_S,
    Controller,
    inference_log_dir,
)
from modelops.runtime.desired import SyncError, git
from modelops.runtime.recorder import Recorder
from modelops.runtime.router import create_app

# Monitoring and the CLI reach these through `modelops.runtime.sync`.
__all__ = [
    "STATE_DIR",
    "Controller",
    "SyncError",
    "client_headers",
    "describe",
    "inference_log_dir",
    "running",
    "stop",
    "sync",
    "watch",
]


def state_file(env: str, state_dir: Path = STATE_DIR) -> Path:
    return state_dir / f"{env}.json"


def record_of(env: str, state_dir: Path = STATE_DIR) -> dict[str, Any] | None:
    """The env's state record (pid, endpoint, tokens file), or None."""
    try:
        return json.loads(state_file(env, state_dir).read_text())
    except (OSError, ValueError):
        return None


def client_headers(env: str, state_dir: Path = STATE_DIR) -> dict[str, str]:
    """The Authorization header for the env's runtime (credentials.py: its own tokens file)."""
    return credentials.headers((record_of(env, state_dir) or {}).get("tokens_file"))


def _tokens(path: str | Path | None) -> auth.TokenFile | None:
    """The tokens file as the router holds it (absolute path); a file that cannot be used stops here."""
    if path is None:
        return None
    try:
        return auth.TokenFile(Path(path).resolve())
    except auth.AuthConfigError as exc:
        raise SyncError(f"not started: {exc}") from None


def watch(
    env: str,
    *,
    port: int = 0,
    interval_s: float = 3.0,
    branch: str = "main",
    remote: str | None = "origin",
    max_replicas: int = 1,
    state_dir: Path = STATE_DIR,
    tokens_file: Path | None = None,
) -> None:
    """Serve `env` in the foreground, reconciling every `interval_s` until SIGTERM or Ctrl-C;
    with `tokens_file`, behind its bearer tokens (the servers too)."""
    import uvicorn

    tokens = _tokens(tokens_file)
    repo = Path(git(Path.cwd(), "rev-parse", "--show-toplevel"))
    state_dir = (repo / state_dir) if not state_dir.is_absolute() else state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    controller = Controller(
        repo, env, branch, remote, max_replicas, state_dir, tokens.path if tokens else None
    )
    controller.endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    record = state_file(env, state_dir)

    @contextlib.asynccontextmanager
    async def tasks() -> AsyncIterator[None]:
        first = await controller.reconcile()
        print_result(first)
        mine = {"pid": os.getpid(), "endpoint": controller.endpoint, "env": env}
        record.write_text(json.dumps(mine | ({"tokens_file": str(tokens.path)} if tokens else {})))

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                result = await controller.reconcile()
                if result["outcome"] in ("applied", "failed"):
                    print_result(result)

        poller = asyncio.create_task(loop())
        scraper = asyncio.create_task(recorder.run(backend_urls))
        try:
            yield
        finally:
            for task in (poller, scraper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(controller.stop_all)
            with contextlib.suppress(FileNotFoundError):
                if json.loads(record.read_text()).get("pid") == os.getpid():
                    record.unlink()

    recorder = Recorder()

    def backend_urls() -> list[str]:
        return [b.url for b in controller.router.table.backends()]

    async def counters(since: float) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:  # a fresh sample first: counts up to now
            await recorder.scrape(client, backend_urls())
        return {"interval_s": recorder.interval_s, "servers": recorder.export(since)}

    app = create_app(
        controller.router,
        controller.status,
        lambda: controller.reconcile(force=True),
        tasks,
        counters,
        tokens,
    )
    # access_log off: no request line (and so no query string) is ever logged
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    guarded = f", bearer tokens from {tokens.path}" if tokens else ""
    tracking = controller.status()["tracking"]
    print(f"modelops sync: {env} on {controller.endpoint} (tracking {tracking}{guarded})", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def print_result(result: dict[str, Any]) -> None:
    rev = (result.get("applied_rev") or "none")[:12]
    if result["outcome"] == "failed":
        print(f"sync {result['env']}: NOT applied ({result['last_error']}); serving {rev}", flush=True)
        return
    for d in result["deployments"]:
        served = d["unserved"] or ", ".join(
            f"{p['name']} {p['version']} {'shadow' if p['shadow'] else str(p['traffic']) + '%'}"
            for p in d["predictors"]
        )
        print(f"sync {result['env']}: {result['outcome']} {rev}: {d['url']} -> {served}", flush=True)


def running(env: str, state_dir: Path = STATE_DIR) -> dict[str, Any] | None:
    """The status of the env's runtime if one answers, else None."""
    record = record_of(env, state_dir)
    if record is None:
        return None
    headers = credentials.headers(record.get("tokens_file"))
    try:
        answer = httpx.get(record["endpoint"] + "/_modelops/status", headers=headers, timeout=5)
        if answer.status_code in (401, 403):  # it runs, and refuses us: never start a second one
            raise SyncError(
                f"the {env} runtime at {record['endpoint']} refused the bearer token: "
                f"{answer.json().get('error')} (set {credentials.TOKEN_ENV} to one of its tokens)"
            )
        return answer.raise_for_status().json()
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def sync(
    env: str,
    *,
    port: int = 0,
    state_dir: Path = STATE_DIR,
    tokens_file: Path | None = None,
    **watch_options: Any,
) -> dict[str, Any]:
    """Sync `env` now: start its runtime in the background if none runs, else make it reconcile.
    A runtime runs with the tokens file it was started with: another one is refused."""
    manifests.render(env)  # an unknown env fails here, naming the known ones
    tokens = _tokens(tokens_file)
    current = running(env, state_dir)
    if current is not None:
        recorded = (record_of(env, state_dir) or {}).get("tokens_file")
        if tokens is not None and str(tokens.path) != recorded:
            now = f"with the tokens of {recorded}" if recorded else "without bearer tokens"
            raise SyncError(
                f"the {env} runtime at {current['endpoint']} runs {now}; to use {tokens.path}, stop it "
                f"first (`modelops sync --env {env} --stop`); nothing was changed"
            )
        try:
            answer = httpx.post(
                current["endpoint"] + "/_modelops/sync",
                headers=credentials.headers(recorded),
                timeout=READY_TIMEOUT_S + 60,
            )
            result = answer.raise_for_status().json()
        except httpx.HTTPError as exc:
            raise SyncError(f"the {env} runtime at {current['endpoint']} did not answer: {exc}") from None
    else:
        options = watch_options | ({"tokens_file": tokens.path} if tokens else {})
        result = _start_daemon(env, port, state_dir, options)
    if result.get("last_error"):
        serving = result.get("applied_rev") or "nothing"
        raise SyncError(f"{env}: not applied: {result['last_error']} (still serving {serving})")
    return result


def _start_daemon(env: str, port: int, state_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file(env, state_dir).unlink(missing_ok=True)
    args = [sys.executable, "-m", "modelops.cli", "sync", "--env", env, "--watch", "--port", str(port)]
    args += ["--state-dir", str(state_dir)]
    for key, value in options.items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    log_path = state_dir / f"{env}.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_S + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-5:])
            raise SyncError(f"the {env} runtime exited with {process.returncode}: {tail} (log: {log_path})")
        if (status := running(env, state_dir)) is not None:
            return {"outcome": "started" if status["applied_rev"] else "failed", **status}
        time.sleep(0.2)
    raise SyncError(f"the {env} runtime did not come up in time (log: {log_path})")


def stop(env: str, state_dir: Path = STATE_DIR) -> bool:
    """Stop the env's runtime and its servers; False if none was running."""
    current = running(env, state_dir)
    if current is None:
        state_file(env, state_dir).unlink(missing_ok=True)
        return False
    os.kill(int(current["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(int(current["pid"])):
        time.sleep(0.1)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    return True


def describe(state: dict[str, Any] | None, model: str) -> str:
    """One cell for `modelops status`: the versions the runtime serves for `model`, and if in sync."""
    if state is None:
        return "not running"
    for d in state["deployments"]:
        if d["name"] == model:
            served = (
                "nothing"
                if d["unserved"]
                else " ".join(
                    p["version"] if p["name"] == manifests.MAIN else f"+{p['name']} {p['version']}"
                    for p in d["predictors"]
                )
            )
            sync_state = "in sync" if state["in_sync"] else f"behind {(state['tracked_rev'] or '?')[:12]}"
            return f"{served} ({sync_state}, {state['endpoint']})"
    return "not served"
