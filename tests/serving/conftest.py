"""Serving fixtures: one small model trained by the project's own pipeline, small multiclass and
regression models (tests/serving/tasks.py), and real server processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from modelops_serving.model import ServedModel

from modelops.pipeline import dataset, outputs
from tests.conftest import credit_params, free_port, shipped_dataset

NAME = "credit-small"
DS = shipped_dataset()
VERSION = "v7"
# Bearer tokens of the servers started with auth on (a rotation's old and new token); the first is sent.
TOKENS = ("serving-test-token-0123456789abcdef", "serving-test-token-rotated-fedcba987")


@dataclass
class Packaged:
    """The MLflow model directory, its hash, the fitted pipeline and a pool of real feature rows."""

    path: Path
    content_hash: str
    pipeline: object
    rows: list[list]  # real test-split rows, JSON-ready (None for missing)
    model: ServedModel = field(repr=False)
    name: str = NAME
    version: str = VERSION

    def reference(self, rows: list[list]) -> np.ndarray:
        """What the in-process pipeline predicts for these rows (the DataFrame path MLflow uses)."""
        raw = [[np.nan if v is None else v for v in r] for r in rows]
        frame = dataset.to_features(DS, pd.DataFrame(raw, columns=list(DS.features)))
        return self.pipeline.predict_proba(frame)


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    """The real credit data through ingest -> prepare -> train -> package, with a small estimator."""
    from modelops_serving.integrity import tree_hash
    from modelops_serving.model import load_model

    from modelops import tasks
    from modelops.pipeline import evaluate, ingest, package, prepare, train

    root = tmp_path_factory.mktemp("serving-model")
    hyper = {"max_iter": 40, "max_leaf_nodes": 15, "learning_rate": 0.1, "early_stopping": False}
    params = credit_params(
        {
            "data": {"source": "credit"},
            "models": {NAME: {"estimator": "hist_gradient_boosting", "threads": 1, "hyperparams": hyper}},
        }
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        DS.raw_file.parent.mkdir(parents=True)
        ingest.load_packaged(DS).to_csv(DS.raw_file, index=False)
        prepare.prepare(DS, params.split(DS.name))
        pipeline = train.train(NAME, params.model(NAME), DS)
        # package reads evaluate's test metrics (they travel in reference.json): the real ones
        split = prepare.read_split(DS.test_file)
        scored = evaluate.predict(pipeline, DS.task, dataset.to_features(DS, split))
        truth = dataset.to_target(DS, split).to_numpy()
        outputs.metrics_file(NAME).write_text(json.dumps(tasks.quality(DS.task, truth, scored)))
        out = root / "published" / NAME
        out.parent.mkdir()
        package.save_mlflow_model(NAME, DS, out)
        test = dataset.to_features(DS, prepare.read_split(DS.test_file))
    rows = [
        [None if isinstance(v, float) and v != v else v for v in r]
        for r in test.astype(object).values.tolist()
    ]
    content_hash = tree_hash(out)
    model = load_model(str(out), expected_hash=content_hash, name=NAME, version=VERSION)
    return Packaged(out, content_hash, pipeline, rows, model)


@dataclass
class Server:
    """A `python -m modelops_serving` process on a free loopback port."""

    proc: subprocess.Popen
    url: str
    log: Path
    token: str | None = None  # set: the server requires bearer tokens, and client() sends this one

    def log_text(self) -> str:
        return self.log.read_text()

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers=self.headers, **kw)

    def wait(self, predicate, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if predicate():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for the server:\n{self.log_text()}")

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait(lambda: httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200, timeout)

    def wait_live(self, timeout: float = 60) -> None:
        self.wait(lambda: httpx.get(f"{self.url}/v2/health/live", timeout=2).status_code == 200, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def start_server(tmp_path: Path, packaged: Packaged, auth: bool = False, **env: str) -> Server:
    """Start a server for the packaged model; settings overridable as MODELOPS_* keyword arguments;
    `auth`: with a tokens file of TOKENS (the Server sends the first)."""
    port = free_port()
    if auth:
        tokens = tmp_path / f"tokens-{port}"
        tokens.write_text("# the test's tokens\n" + "\n".join(TOKENS) + "\n")
        env = {"auth_tokens_file": str(tokens), **env}
    settings = {
        "MODELOPS_MODEL_URI": packaged.path.as_uri(),
        "MODELOPS_MODEL_NAME": packaged.name,
        "MODELOPS_MODEL_VERSION": packaged.version,
        "MODELOPS_EXPECTED_HASH": packaged.content_hash,
        "MODELOPS_PORT": str(port),
        "MODELOPS_SHUTDOWN_DELAY_S": "0",
        "MODELOPS_CACHE_DIR": str(tmp_path / "cache"),
        # the default rate logs a tenth of requests: into the test's directory, not the machine's /tmp
        "MODELOPS_INFERENCE_LOG_DIR": str(tmp_path / "inference-log"),
    } | {f"MODELOPS_{k.upper()}": str(v) for k, v in env.items()}
    log = tmp_path / f"server-{port}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelops_serving"],
            env=os.environ | settings,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    return Server(proc, f"http://127.0.0.1:{port}", log, TOKENS[0] if auth else None)


# Small limits, so that the limit tests stay cheap.
SMALL = {"max_rows_per_request": "2000", "max_body_bytes": str(1024 * 1024), "max_batch_wait_ms": "2"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, packaged: Packaged) -> Iterator[Server]:
    """One ready server per module, with small limits."""
    srv = start_server(tmp_path_factory.mktemp("server"), packaged, **SMALL)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def launch(tmp_path: Path, packaged: Packaged) -> Iterator:
    """Start extra servers (settings as keyword arguments); every one is stopped by PID afterwards."""
    started: list[Server] = []

    def start(**env: str) -> Server:
        srv = start_server(tmp_path, packaged, **env)
        started.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()


# ---- the other tasks: multiclass and regression models built with plain scikit-learn + MLflow ----

# The ones served by real processes: HistGradientBoosting, the estimator the project trains by default.
REGRESSION, MULTICLASS = "hgb_regressor", "hgb_classifier"


@pytest.fixture(scope="session")
def task_models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Packaged]:
    """kind (tasks.KINDS) -> its packaged model, built on first use and shared by the session."""
    from tests.serving.tasks import build

    root = tmp_path_factory.mktemp("task-models")
    built: dict[str, Packaged] = {}

    def get(kind: str) -> Packaged:
        if kind not in built:
            built[kind] = build(kind, root)
        return built[kind]

    return get


@pytest.fixture(scope="session")
def task_server(tmp_path_factory: pytest.TempPathFactory, task_models) -> Iterator[Callable[[str], Server]]:
    """kind -> a ready server of that model, started on first use; every one stopped by PID at the end.
    Bearer tokens on (its client() sends one): every test of the other tasks runs with auth."""
    started: dict[str, Server] = {}

    def get(kind: str) -> Server:
        if kind not in started:
            started[kind] = start_server(
                tmp_path_factory.mktemp(f"server-{kind}"),
                task_models(kind),
                auth=True,
                **SMALL,
            )
            started[kind].wait_ready()
        return started[kind]

    try:
        yield get
    finally:
        for srv in started.values():
            srv.stop()
