"""Serving benchmark: this server against seldon-core-microservice and MLServer, same model, one run.

Every server serves the pipeline's real model (models/credit-hgb, from `dvc repro`) on loopback and
is loaded by wrk (POST bodies from a Lua script) for --duration seconds per run: single-row
requests at concurrency 1, 16 and 64, and 1,000-row requests at concurrency 1. In-process
`predict_proba` on one thread is the floor. Servers, each started, measured and stopped in turn:

  modelops          `python -m modelops_serving`, default settings (Seldon v1 and V2 bodies)
  seldon            seldon-core-microservice 1.19 + modelops_serving.seldon.SeldonModel, defaults
  seldon-2w         the same with --workers 2 (GUNICORN_WORKERS)
  mlserver          MLServer 1.7 + mlserver-sklearn, adaptive batching on, pandas-codec V2 bodies
  auth              this server with bearer tokens off and on (MODELOPS_AUTH_TOKENS_FILE), single
                    rows at c=16, the two measured in alternation (--auth-rounds each) in this run
  protocols         one server, V2 against Seldon v1 bodies, beside the HTTP floor (a minimal ASGI
                    app, same uvicorn), --rounds rounds with the order rotating: the V2/v1 ratios,
                    the spread of throughput and p99, and the share of the floor (serving_protocols.py)

With --pin (the default) wrk runs on CPU 0 and each server, with all its processes, on CPU 1, so
the load generator never takes cycles from the server it measures; every server gets one core.
The competitors run from their own locked environment (benchmarks/competitors/.venv).

    uv sync --frozen --project benchmarks/competitors   # once
    apt-get install -y wrk                              # Debian's wrk 4
    uv run --frozen python benchmarks/serving.py [--duration 10] [--only modelops seldon]
    uv run --frozen python benchmarks/serving.py --only auth --duration 5   # auth on vs off only
    uv run --frozen python benchmarks/serving.py --only protocols --duration 5 --rounds 5   # no competitors
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from serving_kit import (
    BATCH_ROWS,
    BENCH_TOKEN,
    COMPETITORS,
    COMPETITORS_BIN,
    MODEL_DIR,
    MODEL_NAME,
    RESULTS,
    ROOT,
    SCENARIOS,
    WRK_SCRIPT,
    Server,
    check_answer,
    content_hash,
    free_port,
    load_pipeline,
    modelops_env,
    post_json,
    request_rows,
    running,
    seldon_v1_body,
    seldon_v1_probs,
    v2_columns_body,
    v2_probs,
    wrk_cell,
)
from serving_protocols import markdown as protocols_markdown
from serving_protocols import measure_protocols

# --- the model, its rows and the in-process floor --------------------------------------------------


def in_process(pipeline: Any, rows: pd.DataFrame, seconds: float) -> dict[str, Any]:
    """Median wall time of predict_proba on one row and on the batch, one thread (the floor)."""
    from threadpoolctl import threadpool_limits

    def timed(x: pd.DataFrame) -> float:
        times = []
        deadline = time.perf_counter() + seconds / 2
        while time.perf_counter() < deadline or len(times) < 5:
            start = time.perf_counter()
            pipeline.predict_proba(x)
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    with threadpool_limits(limits=1):
        single, batch = timed(rows.iloc[:1]), timed(rows)
    return {
        "single_ms": round(single * 1e3, 3),
        "single_rows_per_s": round(1 / single),
        "batch_ms": round(batch * 1e3, 2),
        "batch_rows_per_s": round(len(rows) / batch),
    }


# --- the servers -----------------------------------------------------------------------------------


def servers(work: Path, only: set[str] | None, seldon_class: str) -> list[Server]:
    """Every server to measure, with fresh ports; MLServer's model directory is written here."""
    out: list[Server] = []
    seldon_bin = str(COMPETITORS_BIN / "seldon-core-microservice")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out.append(
        Server(
            "modelops",
            [sys.executable, "-m", "modelops_serving"],
            modelops_env(port),
            f"{base}/v2/health/ready",
            f"{base}/api/v1.0/predictions",
            seldon_v1_body,
            seldon_v1_probs,
            notes="Seldon v1 body",
        )
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out.append(
        Server(
            "modelops-v2",
            [sys.executable, "-m", "modelops_serving"],
            modelops_env(port),
            f"{base}/v2/health/ready",
            f"{base}/v2/models/{MODEL_NAME}/infer",
            v2_columns_body,
            v2_probs,
            scenarios=(SCENARIOS[1], SCENARIOS[3]),
            notes="the same server, V2 body (as MLServer's)",
        )
    )
    for name, workers in (("seldon", None), ("seldon-2w", 2)):
        http, grpc, metrics = free_port(), free_port(), free_port()
        cmd = [seldon_bin, seldon_class, "--service-type", "MODEL"]
        cmd += ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
        if workers:
            cmd += ["--workers", str(workers)]
        out.append(
            Server(
                name,
                cmd,
                modelops_env(http),
                f"http://127.0.0.1:{http}/health/ping",
                f"http://127.0.0.1:{http}/api/v1.0/predictions",
                seldon_v1_body,
                seldon_v1_probs,
                cwd=work,
                notes="defaults" if not workers else f"--workers {workers}",
            )
        )
    http, grpc, metrics = free_port(), free_port(), free_port()
    out.append(
        Server(
            "mlserver",
            [str(COMPETITORS_BIN / "mlserver"), "start", str(mlserver_dir(work, http, grpc, metrics))],
            {},
            f"http://127.0.0.1:{http}/v2/models/{MODEL_NAME}/ready",
            f"http://127.0.0.1:{http}/v2/models/{MODEL_NAME}/infer",
            v2_columns_body,
            v2_probs,
            notes="adaptive batching 64 rows / 1 ms, default parallel workers",
        )
    )
    return [s for s in out if only is None or s.name in only]


def mlserver_dir(work: Path, http: int, grpc: int, metrics: int) -> Path:
    """A model repository for MLServer: the fitted pipeline as joblib, batching on, predict_proba."""
    root = work / "mlserver"
    model = root / MODEL_NAME
    model.mkdir(parents=True, exist_ok=True)
    # Written from the competitors' environment (numpy < 2, as seldon-core pins), so MLServer reads a
    # joblib file pickled by its own numpy; the wrapper's compat shim reads our numpy-2 pickle first.
    dump = (
        "import sys, cloudpickle, joblib\n"
        "from modelops_serving.seldon import numpy2_pickle_compat\n"
        "numpy2_pickle_compat()\n"
        "with open(sys.argv[1], 'rb') as fh:\n"
        "    joblib.dump(cloudpickle.load(fh), sys.argv[2])\n"
    )
    python = str(COMPETITORS_BIN / "python")
    subprocess.run(
        [python, "-c", dump, str(MODEL_DIR / "model.pkl"), str(model / "model.joblib")], check=True
    )
    settings = {
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "load_models_at_startup": True,
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": 64,
        "max_batch_time": 0.001,
        "parameters": {"uri": "./model.joblib", "version": "bench", "extra": {"predict_fn": "predict_proba"}},
    }
    (model / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return root


def measure(
    server: Server, rows: pd.DataFrame, expected: np.ndarray, work: Path, args: argparse.Namespace
) -> None:
    """Check the server's answer against in-process predict, then one wrk run per scenario."""
    with running(server, work / "logs", args.pin):
        parity = check_answer(server, rows, expected)
        for sc in server.scenarios:
            server.results.append(
                wrk_cell(server, sc, rows, work, args) | {"max_abs_diff_vs_in_process": parity}
            )


def auth_pair(work: Path) -> tuple[Server, Server]:
    """This server twice, as the manifests run it: bearer tokens off, and on (a tokens file)."""
    tokens = work / "tokens"
    tokens.write_text(f"# as Secret modelops-serving-tokens mounts it\n{BENCH_TOKEN}\n")
    pair = []
    for name, extra, token in (
        ("auth-off", {}, None),
        ("auth-on", {"MODELOPS_AUTH_TOKENS_FILE": str(tokens)}, BENCH_TOKEN),
    ):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        pair.append(
            Server(
                name,
                [sys.executable, "-m", "modelops_serving"],
                modelops_env(port) | extra,
                f"{base}/v2/health/ready",
                f"{base}/api/v1.0/predictions",
                seldon_v1_body,
                seldon_v1_probs,
                notes="Seldon v1 body" + (", Authorization: Bearer" if token else ""),
                token=token,
            )
        )
    return pair[0], pair[1]


def measure_auth(rows: pd.DataFrame, expected: np.ndarray, work: Path, args: argparse.Namespace) -> dict:
    """Single rows at c=16 against the server with auth off and on, both up at once (one idles
    while the other is measured, both on the server CPU), in alternating order for --auth-rounds
    rounds: drift of a shared machine hits both alike. The ratio is of the medians."""
    off, on = auth_pair(work)
    sc = SCENARIOS[1]
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    with running(off, work / "logs", args.pin), running(on, work / "logs", args.pin):
        try:  # auth really is on: without the token, refused
            post_json(on.infer_url, on.body(rows.iloc[:1]))
            raise RuntimeError("the auth-on server answered a request without a token")
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise
        parity = max(check_answer(off, rows, expected), check_answer(on, rows, expected))
        for i in range(args.auth_rounds):
            for key, server in (("off", off), ("on", on)) if i % 2 == 0 else (("on", on), ("off", off)):
                runs[key].append(wrk_cell(server, sc, rows, work, args))

    def median(key: str, what: str) -> float:
        return float(np.median([r[what] for r in runs[key]]))

    ratio = median("on", "requests_per_s") / median("off", "requests_per_s")
    return {
        "scenario": sc.label,
        "rounds": args.auth_rounds,
        "requests_per_s": {k: median(k, "requests_per_s") for k in runs},
        "p99_ms": {k: median(k, "p99_ms") for k in runs},
        "errors": sum(r["errors"] for k in runs for r in runs[k]),
        "max_abs_diff_vs_in_process": parity,
        "throughput_on_vs_off": round(ratio, 3),
        "runs": runs,
    }


# --- report ----------------------------------------------------------------------------------------


def find(results: list[dict], server: str, scenario: str) -> dict | None:
    return next((r for r in results if r["server"] == server and r["scenario"] == scenario), None)


def ratios(results: list[dict], floor: dict[str, Any], auth: dict | None) -> dict[str, float | None]:
    """The quantities issues 3 and 14 set targets on."""
    c16, batch = "1 row, c=16", f"{BATCH_ROWS} rows, c=1"
    ours, seldon, mlserver = (find(results, s, c16) for s in ("modelops", "seldon", "mlserver"))
    ours_batch = find(results, "modelops", batch)

    def div(a: dict | None, b: dict | None, key: str) -> float | None:
        return round(a[key] / b[key], 2) if a and b and b[key] else None

    return {
        "throughput_vs_seldon_c16 (target >= 5)": div(ours, seldon, "requests_per_s"),
        "throughput_vs_mlserver_c16 (target >= 1.5)": div(ours, mlserver, "requests_per_s"),
        "p99_ms_c16 (target <= 10)": ours["p99_ms"] if ours else None,
        "batch_rows_per_s_vs_in_process (target >= 0.5)": (
            round(ours_batch["rows_per_s"] / floor["batch_rows_per_s"], 2) if ours_batch else None
        ),
        "auth_on_vs_off_c16 (target >= 0.95)": auth["throughput_on_vs_off"] if auth else None,
    }


def markdown(results: list[dict], floor: dict[str, Any], notes: dict[str, str], auth: dict | None) -> str:
    lines = [
        "| server | requests | req/s | rows/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        name = f"{r['server']} ({notes[r['server']]})" if notes.get(r["server"]) else r["server"]
        lines.append(
            f"| {name} | {r['scenario']} | {r['requests_per_s']:,.0f} | {r['rows_per_s']:,} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['errors']} |"
        )
    lines.append(
        f"| in-process predict_proba (1 thread) | 1 row | {1e3 / floor['single_ms']:,.0f} | "
        f"{floor['single_rows_per_s']:,} | {floor['single_ms']} | | |"
    )
    lines.append(
        f"| in-process predict_proba (1 thread) | {BATCH_ROWS} rows | "
        f"{1e3 / floor['batch_ms']:,.1f} | {floor['batch_rows_per_s']:,} | {floor['batch_ms']} | | |"
    )
    for key in ("off", "on") if auth else ():
        rate, p99 = auth["requests_per_s"][key], auth["p99_ms"][key]
        lines.append(
            f"| modelops, bearer tokens {key} (median of {auth['rounds']}, alternated) | {auth['scenario']} "
            f"| {rate:,.0f} | {rate:,.0f} | | {p99} | {auth['errors']} |"
        )
    return "\n".join(lines)


def section(name: str, title: str, only: set[str] | None, failures: dict[str, str], run: Any) -> Any:
    """Run one extra section (unless --only leaves it out); a failure is recorded, not raised."""
    if only is not None and name not in only:
        return None
    print(f"{name}: {title}", file=sys.stderr, flush=True)
    try:
        return run()
    except Exception as exc:
        failures[name] = str(exc)[-2000:]
        print(f"  {name} FAILED: {exc}", file=sys.stderr, flush=True)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--only", nargs="*", help="server names to run (default: all)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not taskset wrk/server")
    parser.add_argument(
        "--seldon-class", default="modelops_serving.seldon.SeldonModel", help="the Seldon wrapper class"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="default: results/serving.json; --only auth / protocols: serving-auth / -protocols.json",
    )
    parser.add_argument("--auth-rounds", type=int, default=3, help="alternated runs each of auth off/on")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the protocols section")
    args = parser.parse_args()
    only = set(args.only) if args.only else None
    if args.out is None:  # a partial run must not overwrite the full run's results
        sections = {
            frozenset({"auth"}): "serving-auth.json",
            frozenset({"protocols"}): "serving-protocols.json",
        }
        args.out = RESULTS.with_name(sections.get(frozenset(only or ()), RESULTS.name))

    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu)")
    if args.pin and (shutil.which("taskset") is None or (os.cpu_count() or 1) < 2):
        print("taskset or a second CPU missing: running unpinned", file=sys.stderr)
        args.pin = False
    if (only is None or only & COMPETITORS) and not (COMPETITORS_BIN / "seldon-core-microservice").exists():
        raise SystemExit("competitors not installed: uv sync --frozen --project benchmarks/competitors")

    load_start = os.getloadavg()  # the machine is shared: say how busy it was
    pipeline = load_pipeline()
    rows = request_rows()
    expected = pipeline.predict_proba(rows)
    print("in-process floor ...", file=sys.stderr, flush=True)
    floor = in_process(pipeline, rows, seconds=min(args.duration, 10))
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        (work / "post.lua").write_text(WRK_SCRIPT)
        todo = servers(work, only, args.seldon_class)
        failures: dict[str, str] = {}
        for server in todo:
            print(f"{server.name}: {' '.join(server.cmd)}", file=sys.stderr, flush=True)
            try:
                measure(server, rows, expected, work, args)
            except Exception as exc:  # one broken competitor must not lose the others' numbers
                failures[server.name] = str(exc)[-2000:]
                print(f"  {server.name} FAILED: {exc}", file=sys.stderr, flush=True)
        auth = section(
            "auth",
            "the server with bearer tokens off and on, alternated",
            only,
            failures,
            lambda: measure_auth(rows, expected, work, args),
        )
        protocols = section(
            "protocols",
            "V2 vs v1 on one server, beside the HTTP floor",
            only,
            failures,
            lambda: measure_protocols(rows, expected, work, args),
        )
    results = [r for s in todo for r in s.results]
    notes = {s.name: s.notes for s in todo}
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pinned": "wrk on CPU 0, server on CPU 1" if args.pin else "unpinned",
        },
        "started_unix": round(started),
        "load_average_start": [round(x, 2) for x in load_start],
        "duration_s_per_run": args.duration,
        "model": {"dir": str(MODEL_DIR.relative_to(ROOT)), "content_hash": content_hash()},
        "in_process": floor,
        "results": results,
        "auth": auth,
        "protocols": protocols,
        "ratios": ratios(results, floor, auth),
        "failures": failures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(results, floor, notes, auth))
    print()
    for key, value in report["ratios"].items():
        print(f"- {key}: {value}")
    if protocols is not None:
        print(f"\nV2 vs v1 on one server, beside the HTTP floor:\n{protocols_markdown(protocols)}")
    for name, err in failures.items():
        print(f"- FAILED {name}: {err.splitlines()[0] if err else ''}")
    print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
