"""What the serving benchmarks share: the model and its settings, request bodies per protocol, wrk
(its Lua script and one run), and servers started in their own process group and always stopped.

serving.py (this server against seldon-core and MLServer) and serving_protocols.py (V2 against v1 on
one server, beside the HTTP floor) both build on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "credit-hgb"
MODEL_DIR = ROOT / "models" / MODEL_NAME / "model"
COMPETITORS_BIN = ROOT / "benchmarks" / "competitors" / ".venv" / "bin"
RESULTS = ROOT / "benchmarks" / "results" / "serving.json"
BATCH_ROWS = 1000
START_TIMEOUT_S = 90.0
COMPETITORS = {"seldon", "seldon-2w", "mlserver"}
BENCH_TOKEN = "benchmark-token-0123456789abcdef0123456789abcdef"

# wrk calls done() once at the end; one JSON line on stdout carries everything the report needs.
WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if os.getenv("BENCH_TOKEN") then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
end
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass
class Scenario:
    """One wrk run: a request body, its row count and the number of open connections."""

    label: str
    rows: int
    connections: int


SCENARIOS = (
    Scenario("1 row, c=1", 1, 1),
    Scenario("1 row, c=16", 1, 16),
    Scenario("1 row, c=64", 1, 64),
    Scenario(f"{BATCH_ROWS} rows, c=1", BATCH_ROWS, 1),
)


@dataclass
class Server:
    """How to start one server, where to send requests, and how to build its request bodies."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    ready_url: str
    infer_url: str
    body: Any  # Callable[[pd.DataFrame], dict]
    parse: Any  # Callable[[dict], np.ndarray]
    scenarios: tuple[Scenario, ...] = SCENARIOS
    cwd: Path | None = None
    notes: str = ""
    token: str | None = None  # a bearer token to send (the server requires it)
    results: list[dict[str, Any]] = field(default_factory=list)


def free_port() -> int:
    """A TCP port that nothing on loopback listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_json(url: str, body: dict, timeout: float = 30.0, token: str | None = None) -> dict:
    """POST a JSON body; the decoded JSON answer (raises on non-2xx)."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


# --- request bodies and answers, per protocol ------------------------------------------------------


def seldon_v1_body(rows: pd.DataFrame) -> dict:
    """Seldon v1: names plus an ndarray of mixed number/string rows."""
    return {"data": {"names": list(rows.columns), "ndarray": rows.astype(object).values.tolist()}}


def seldon_v1_probs(answer: dict) -> np.ndarray:
    return np.asarray(answer["data"]["ndarray"], dtype=float)


def v2_columns_body(rows: pd.DataFrame) -> dict:
    """Open Inference Protocol with one input per column and the pandas request codec.

    This is the form mlserver-sklearn decodes into a DataFrame with mixed dtypes (the pipeline's
    ColumnTransformer selects columns by name); numbers as FP64, strings as BYTES with the `str`
    content type.
    """
    inputs = []
    for col in rows.columns:
        values = rows[col].tolist()
        if pd.api.types.is_numeric_dtype(rows[col]):
            inputs.append({"name": col, "shape": [len(rows), 1], "datatype": "FP64", "data": values})
        else:
            inputs.append(
                {
                    "name": col,
                    "shape": [len(rows), 1],
                    "datatype": "BYTES",
                    "parameters": {"content_type": "str"},
                    "data": values,
                }
            )
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def v2_probs(answer: dict) -> np.ndarray:
    out = answer["outputs"][0]
    return np.asarray(out["data"], dtype=float).reshape(out["shape"])


def load_pipeline() -> Any:
    """The fitted scikit-learn pipeline inside the packaged MLflow model (cloudpickle)."""
    import cloudpickle

    path = MODEL_DIR / "model.pkl"
    if not path.exists():
        raise SystemExit(f"{path}: not found; run `dvc repro` (or `make demo`) first to train the model")
    with path.open("rb") as fh:
        return cloudpickle.load(fh)


def request_rows() -> pd.DataFrame:
    """Real rows of the model's dataset, without gaps (JSON has no NaN), 1,000 of them."""
    from modelops.config import load_params
    from modelops.pipeline import dataset, ingest

    ds = load_params(ROOT / "params.yaml").dataset_of(MODEL_NAME)
    frame = dataset.to_features(ds, ingest.load_packaged(ds)).dropna().reset_index(drop=True)
    return frame.iloc[:BATCH_ROWS].reset_index(drop=True)


def content_hash() -> str:
    from modelops_serving.integrity import tree_hash

    return tree_hash(MODEL_DIR)


def modelops_env(port: int) -> dict[str, str]:
    """The settings the manifest would give the server: model, name, version, expected hash."""
    return {
        "MODELOPS_MODEL_URI": str(MODEL_DIR),
        "MODELOPS_MODEL_NAME": MODEL_NAME,
        "MODELOPS_MODEL_VERSION": "bench",
        "MODELOPS_EXPECTED_HASH": content_hash(),
        "MODELOPS_HOST": "127.0.0.1",
        "MODELOPS_PORT": str(port),
    }


@contextlib.contextmanager
def running(server: Server, logs: Path, pin: bool) -> Iterator[subprocess.Popen]:
    """Start a server in its own process group, wait until ready, and always stop the whole group."""
    cmd = (["taskset", "-c", "1"] if pin else []) + server.cmd
    env = os.environ | {"PYTHONUNBUFFERED": "1"} | server.env
    log = (logs / f"{server.name}.log").open("wb")
    proc = subprocess.Popen(
        cmd, cwd=server.cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_ready(server, proc, logs)
        yield proc
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (gunicorn and MLServer fork workers), then SIGKILL stragglers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)


def wait_ready(server: Server, proc: subprocess.Popen, logs: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (logs / f"{server.name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{server.name} exited with {proc.returncode} before ready:\n{tail}")
        try:
            with urllib.request.urlopen(server.ready_url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{server.name} not ready after {START_TIMEOUT_S:.0f}s ({server.ready_url})")


def run_wrk(
    url: str,
    body_file: Path,
    script: Path,
    connections: int,
    seconds: int,
    pin: bool,
    token: str | None = None,
) -> dict:
    """One wrk run; its done() summary as a dict."""
    threads = min(connections, 2)
    cmd = ["taskset", "-c", "0"] if pin else []
    cmd += ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s"]
    cmd += ["-s", str(script), url]
    proc = subprocess.run(
        cmd,
        env=os.environ | {"BENCH_BODY": str(body_file)} | ({"BENCH_TOKEN": token} if token else {}),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
    raise RuntimeError(f"wrk gave no summary ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def check_answer(server: Server, rows: pd.DataFrame, expected: np.ndarray) -> float:
    """The largest difference between the server's probabilities and in-process predict_proba."""
    probe = server.parse(post_json(server.infer_url, server.body(rows.iloc[:5]), token=server.token))
    return float(np.max(np.abs(probe - expected[:5])))


def wrk_cell(server: Server, sc: Scenario, rows: pd.DataFrame, work: Path, args: argparse.Namespace) -> dict:
    """One wrk run of one scenario against a running server, as a result row (printed too)."""
    body_file = work / f"{server.name}-{sc.rows}.json"
    body_file.write_text(json.dumps(server.body(rows.iloc[: sc.rows])))
    script = work / "post.lua"
    out = run_wrk(server.infer_url, body_file, script, sc.connections, args.duration, args.pin, server.token)
    seconds = out["duration_us"] / 1e6
    errors = out["connect"] + out["read"] + out["write"] + out["status"] + out["timeout"]
    result = {
        "server": server.name,
        "scenario": sc.label,
        "rows": sc.rows,
        "connections": sc.connections,
        "requests": out["requests"],
        "requests_per_s": round(out["requests"] / seconds, 1),
        "rows_per_s": round(out["requests"] * sc.rows / seconds),
        "p50_ms": round(out["p50_us"] / 1e3, 2),
        "p99_ms": round(out["p99_us"] / 1e3, 2),
        "errors": errors,
    }
    print(
        f"  {server.name:12} {sc.label:16} {result['requests_per_s']:>9} req/s "
        f"p50 {result['p50_ms']:>7} ms  p99 {result['p99_ms']:>7} ms  errors {errors}",
        file=sys.stderr,
        flush=True,
    )
    return result
