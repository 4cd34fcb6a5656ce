"""The reconciler of one env: starts a server process per predictor replica, swaps the routing
table in one step, drains and stops what is gone.

A change is applied whole or not at all: new processes must load and pass the hash check before
the table switches, and any failure leaves the running version serving. A process is keyed by its
model and container env only, so a promotion of one model never restarts another model's servers,
and a traffic change restarts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelops.delivery import manifests, signing
from modelops.errors import ModelopsError
from modelops.runtime.credentials import TOKENS_FILE_ENV
from modelops.runtime.desired import DeploymentSpec, PredictorSpec, SyncError, desired, fetch, git, source
from modelops.runtime.router import Backend, Deployment, Predictor, Router, Table

log = logging.getLogger(__name__)

STATE_DIR = Path(".modelops/runtime")
READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def inference_log_dir(env: str, state_dir: Path = STATE_DIR) -> Path:
    """Where the env's local servers write their sampled inference log."""
    return state_dir / env / "inference-log"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command() -> list[str]:
    """The model server of this environment (`modelops-serve` beside this interpreter)."""
    local = Path(sys.executable).with_name("modelops-serve")
    return [str(local)] if local.exists() else [sys.executable, "-m", "modelops_serving"]


@dataclass(eq=False)
class Replica:
    """One `modelops-serve` process serving one predictor replica."""

    key: tuple[Any, ...]
    process: subprocess.Popen[bytes]
    backend: Backend
    log_path: Path

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM (the router has stopped sending), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _replica_key(p: PredictorSpec, index: int) -> tuple[Any, ...]:
    # What makes a process: its model, container env and signing policy. Traffic and shadow are
    # routing only, so changing them never restarts a server.
    return (p.uri, p.content_hash, p.env, index, p.policy)


@dataclass
class Controller:
    """Reconciles the served state of one env with its manifests at the tracked branch."""

    repo: Path
    env: str
    branch: str = "main"
    remote: str | None = "origin"
    max_replicas: int = 1
    state_dir: Path = STATE_DIR
    # The servers' MODELOPS_AUTH_TOKENS_FILE (the router's own): the manifests' path is the
    # cluster's Secret mount, which does not exist here.
    tokens_file: Path | None = None
    router: Router = field(default_factory=Router)
    endpoint: str = ""
    replicas: dict[tuple[Any, ...], Replica] = field(default_factory=dict)
    applied_rev: str | None = None
    applied_tree: str | None = None
    applied_at: float | None = None
    tracked_rev: str | None = None
    last_error: str | None = None
    failed_rev: str | None = None
    failed_tree: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    specs: list[DeploymentSpec] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def logs(self) -> Path:
        return self.state_dir / self.env

    @property
    def mirror(self) -> Path:
        return self.state_dir / self.env / "git"

    @functools.cached_property
    def origin(self) -> str:
        return source(self.repo, self.remote)

    async def reconcile(self, force: bool = False) -> dict[str, Any]:
        """Bring the served state to the tracked commit's manifests, whole or not at all."""
        async with self._lock:
            try:
                rev = await asyncio.to_thread(fetch, self.mirror, self.origin, self.branch)
                tree = await asyncio.to_thread(git, self.mirror, "rev-parse", f"{rev}:gitops")
            except SyncError as exc:
                return self._failed(str(exc), None)
            self.tracked_rev = rev
            healthy = all(r.process.poll() is None for r in self.replicas.values())
            if tree == self.applied_tree and healthy and not force:
                self.applied_rev = rev  # same manifests, newer commit: nothing to do
                return self._result("unchanged")
            if tree == self.failed_tree and not force:
                self.failed_rev = rev
                return self._result("still failing")
            try:
                specs = await asyncio.to_thread(desired, self.mirror, rev, self.env)
                started, stopped = await self._apply(specs)
            except ModelopsError as exc:
                return self._failed(str(exc), tree)
            self.specs, self.applied_rev, self.applied_tree = specs, rev, tree
            self.applied_at, self.last_error, self.failed_tree = time.time(), None, None
            self.failed_rev = None
            self._event("applied", rev, started=started, stopped=stopped)
            return self._result("applied", started=started, stopped=stopped)

    async def _apply(self, specs: list[DeploymentSpec]) -> tuple[list[str], list[str]]:
        """Start what is new, swap the routing table, drain and stop what is gone."""
        wanted: dict[tuple[Any, ...], tuple[DeploymentSpec, PredictorSpec]] = {}
        for d in specs:
            for p in d.predictors:
                if not p.placeholder:
                    for i in range(max(1, min(p.replicas, self.max_replicas))):
                        wanted[_replica_key(p, i)] = (d, p)
        new_keys = [k for k in wanted if k not in self.replicas]
        # Verify every new model before starting anything: a bad hash or signature changes nothing.
        for key in {(*k[:3], k[4]) for k in new_keys}:
            p = next(p for k, (_, p) in wanted.items() if (*k[:3], k[4]) == key)
            await asyncio.to_thread(_verify, p)
        fresh: dict[tuple[Any, ...], Replica] = {}
        try:
            for key in new_keys:
                fresh[key] = self._start(*wanted[key], index=key[3])
            await asyncio.gather(*(self._ready(r) for r in fresh.values()))
        except BaseException:
            for replica in fresh.values():
                await asyncio.to_thread(replica.stop)
            raise
        running = {**self.replicas, **fresh}
        self.router.table = self._table(specs, wanted, running)  # the switch: one assignment
        gone = [r for k, r in self.replicas.items() if k not in wanted]
        self.replicas = {k: running[k] for k in wanted}
        if gone:
            drained = await self.router.drained([r.backend for r in gone], DRAIN_TIMEOUT_S)
            if not drained:
                log.warning("drain timed out after %.0f s; stopping the old replicas anyway", DRAIN_TIMEOUT_S)
            for replica in gone:
                await asyncio.to_thread(replica.stop)
        describe = lambda r: f"{r.backend.url} ({r.key[1][:12]})"  # noqa: E731
        return [describe(r) for r in fresh.values()], [describe(r) for r in gone]

    def _start(self, d: DeploymentSpec, p: PredictorSpec, index: int) -> Replica:
        port = free_port()
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{d.name}-{p.name}-{p.version}-{index}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
        env |= {k: v for k, v in p.env if k not in signing.PROCESS_ENV}
        env |= signing.process_env(p.policy, self.state_dir / "signers")
        env |= {
            "MODELOPS_MODEL_URI": p.uri,
            "MODELOPS_HOST": "127.0.0.1",
            "MODELOPS_PORT": str(port),
            # The router stops sending before it stops a replica: no grace period is needed.
            "MODELOPS_SHUTDOWN_DELAY_S": "0",
            "MODELOPS_CACHE_DIR": str((self.state_dir / "models").resolve()),
            # One sampled inference log per env, where `modelops monitor --env` looks first.
            "MODELOPS_INFERENCE_LOG_DIR": str(inference_log_dir(self.env, self.state_dir).resolve()),
        }
        env.pop(TOKENS_FILE_ENV, None)  # without a tokens file: no auth on loopback, as before
        if self.tokens_file is not None:
            env[TOKENS_FILE_ENV] = str(self.tokens_file)
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                serve_command(), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        key = _replica_key(p, index)
        log.info(
            "started %s/%s %s replica %d on port %d (pid %d)",
            d.name,
            p.name,
            p.version,
            index,
            port,
            process.pid,
        )
        return Replica(key, process, Backend(f"http://127.0.0.1:{port}", process.pid), log_path)

    async def _ready(self, replica: Replica) -> None:
        """Wait for the replica's readiness probe; a load or hash failure ends the wait at once."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if replica.process.poll() is not None:
                    raise SyncError(
                        f"server for {replica.key[0]} exited with {replica.process.returncode}: "
                        f"{replica.log_tail()} (log: {replica.log_path})"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    answer = await client.get(replica.backend.url + "/v2/health/ready")
                    if answer.status_code == 200:
                        return
                    reason = answer.json().get("error", "")
                    if reason and "loading" not in reason:
                        raise SyncError(f"server for {replica.key[0]} refused its model: {reason}")
                await asyncio.sleep(0.1)
        raise SyncError(
            f"server for {replica.key[0]} not ready after {READY_TIMEOUT_S:.0f} s (log: {replica.log_path})"
        )

    def _table(
        self,
        specs: list[DeploymentSpec],
        wanted: dict[tuple[Any, ...], tuple[DeploymentSpec, PredictorSpec]],
        running: dict[tuple[Any, ...], Replica],
    ) -> Table:
        table = Table()
        for d in specs:
            predictors, unserved = [], ""
            for p in d.predictors:
                if p.placeholder:
                    if p.name == manifests.MAIN:
                        unserved = f"no model promoted yet (modelUri {p.uri})"
                    continue
                backends = [running[k].backend for k, (dd, pp) in wanted.items() if dd is d and pp is p]
                predictors.append(Predictor(p.name, p.version, p.content_hash, p.traffic, p.shadow, backends))
            table.deployments[(d.namespace, d.name)] = Deployment(d.namespace, d.name, predictors, unserved)
        return table

    def _failed(self, message: str, tree: str | None) -> dict[str, Any]:
        self.last_error, self.failed_tree = message, tree or self.failed_tree
        self.failed_rev = self.tracked_rev
        self._event("failed", self.tracked_rev, error=message)
        log.error("sync %s failed; still serving %s: %s", self.env, self.applied_rev or "nothing", message)
        return self._result("failed")

    def _event(self, what: str, rev: str | None, **details: Any) -> None:
        self.events.append({"time": time.time(), "event": what, "rev": rev, **details})
        del self.events[:-50]

    def _result(self, outcome: str, **details: Any) -> dict[str, Any]:
        return {"outcome": outcome, **details, **self.status()}

    def status(self) -> dict[str, Any]:
        """What is served, from which commit, and whether that is what the tracked branch says."""
        deployments = []
        for (ns, name), d in self.router.table.deployments.items():
            spec = next((s for s in self.specs if (s.namespace, s.name) == (ns, name)), None)
            declared = {p.name: p for p in spec.predictors} if spec else {}
            deployments.append(
                {
                    "namespace": ns,
                    "name": name,
                    "url": f"{self.endpoint}/seldon/{ns}/{name}",
                    "unserved": d.unserved or None,
                    "predictors": [
                        {
                            "name": p.name,
                            "version": p.version,
                            "content_hash": p.content_hash,
                            "traffic": p.traffic,
                            "shadow": p.shadow,
                            "replicas": {"manifest": declared[p.name].replicas, "local": len(p.backends)},
                            # where each replica's own /metrics is (`modelops analyze` scrapes them)
                            "backends": [b.url for b in p.backends],
                            **p.counts(),
                        }
                        for p in d.predictors
                    ],
                }
            )
        return {
            "env": self.env,
            "endpoint": self.endpoint,
            "tracking": f"{self.branch} of {self.origin}",
            "tracked_rev": self.tracked_rev,
            "applied_rev": self.applied_rev,
            "applied_at": self.applied_at,
            "in_sync": self.applied_rev is not None and self.tracked_rev == self.applied_rev,
            "last_error": self.last_error,
            "failed_rev": self.failed_rev,
            "auth": {"tokens_required": self.tokens_file is not None, "refused": dict(self.router.refused)},
            "deployments": deployments,
            "pid": os.getpid(),
        }

    def stop_all(self) -> None:
        for replica in self.replicas.values():
            replica.stop()
        self.replicas.clear()


def _verify(p: PredictorSpec) -> None:
    """The model at `modelUri` must hash to what the manifest promises, before any process starts."""
    from modelops.delivery import publish

    try:
        actual = publish.stored_hash(p.uri)
    except ModelopsError as exc:
        raise SyncError(f"predictor {p.name!r} {p.version}: {exc}") from None
    if actual != p.content_hash:
        raise SyncError(
            f"predictor {p.name!r} {p.version}: {p.uri} hashes to {actual}, but the manifest expects "
            f"{p.content_hash}; not applied"
        )
    if p.policy is not None:
        try:
            signing.check(p.uri, p.policy)
        except ModelopsError as exc:
            raise SyncError(
                f"predictor {p.name!r} {p.version}: {p.uri} REFUSED: {exc}; not applied"
            ) from None
