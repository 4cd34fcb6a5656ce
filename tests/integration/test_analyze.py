"""`modelops analyze` end to end, against real model servers: counters from a real Prometheus
scraping them, and from the local runtime (`modelops sync`) scraping them itself; outcomes from
feedback logs written to the serving contract.

One model is trained for real and published twice: as main (v1), and as a canary (v2) that is the
same model under another content hash (one more file in its directory), so its latency is main's
and a test can ask for a deterministic answer. Every process a test starts is stopped by PID (the
`processes` fixture).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from modelops.config import load_params
from modelops.delivery import publish
from modelops.delivery.promote import Extra, Release, render_state
from modelops.delivery.signing import Signer
from modelops.runtime.controller import serve_command
from tests import feedback_log, prometheus
from tests.conftest import free_port, project_files, run, train_and_package
from tests.processes import Processes, wait_for

pytestmark = pytest.mark.slow

MODEL = "credit-hgb"
PROJECT = Path(__file__).resolve().parents[2]
MODELOPS = str(Path(sys.executable).with_name("modelops"))
NAMESPACE = "modelops-production"
# A small window decides: tiny margins are not what is tested here, the plumbing is.
DECISIVE = {
    "alpha": 1e-6,
    "min_samples": 10,
    "margins": {"error_rate": 0.5, "slow_rate": 0.5, "online_error": 0.3},
}


@dataclass(frozen=True)
class Site:
    root: Path
    main: Release
    canary: Release
    rows: list[dict]  # held-out rows of the model's dataset, as JSON objects
    classes: list[str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    import pandas as pd

    from modelops.pipeline.prepare import read_split

    root = tmp_path_factory.mktemp("analyze")
    train = root / "train"
    project_files(train)
    params = load_params(train / "params.yaml")
    hyper = params.models[MODEL].hyperparams | {"max_iter": 20}
    params.models[MODEL] = params.models[MODEL].model_copy(update={"hyperparams": hyper})
    train_and_package(train, MODEL, params, rows=1500, metrics={"roc_auc": 0.8, "f1": 0.5, "log_loss": 0.5})
    store = root / "store"
    model_dir = train / "models" / MODEL / "model"
    signer = Signer.from_env()  # the session's key: the shipped envs require signed models
    main = publish.publish(model_dir, MODEL, str(store), signer)
    twin = root / "twin"
    shutil.copytree(model_dir, twin)
    (twin / "CANARY.txt").write_text("the same model under another content hash\n")
    canary = publish.publish(twin, MODEL, str(store), signer)
    assert main.content_hash != canary.content_hash
    ds = params.dataset_of(MODEL)
    test = read_split(train / ds.test_file)[list(ds.features)].astype(object)
    rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in test.to_dict("records")]
    return Site(
        root,
        Release("v1", main.content_hash, main.uri, "abc1234", "run", "1"),
        Release("v2", canary.content_hash, canary.uri, "def5678", "run", "2"),
        rows,
        list(ds.classes or []),
    )


def project(site: Site, dest: Path, params: dict | None = None) -> Path:
    """gitops/ with main v1 and the canary v2 at 25% in production, params.yaml (canary: replaced
    by `params`) and the declarations."""
    project_files(dest)
    shutil.copytree(PROJECT / "gitops", dest / "gitops")
    patch = dest / "gitops" / "envs" / "production" / f"{MODEL}.yaml"
    patch.write_text(render_state(patch, MODEL, site.main, [Extra("canary", site.canary, 25)]))
    if params is not None:
        set_canary(dest, params)
    return dest


def set_canary(dest: Path, canary: dict) -> None:
    raw = yaml.safe_load((dest / "params.yaml").read_text())
    raw["canary"] = {**raw["canary"], **canary}
    (dest / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def analyze(cwd: Path, *args: str) -> tuple[int, dict, str]:
    """Run the real CLI; (exit code, the JSON, the markdown)."""
    proc = run([MODELOPS, "analyze", MODEL, "--env", "production", "--out", "out", *args], cwd, check=False)
    if proc.returncode not in (0, 20, 21):
        raise AssertionError(f"analyze failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return (
        proc.returncode,
        json.loads((cwd / "out" / f"{MODEL}.json").read_text()),
        (cwd / "out" / f"{MODEL}.md").read_text(),
    )


def feedback(site: Site, logs: Path, release: Release, wrong: float, start: datetime, seed: int) -> None:
    """300 fed-back rows of `release`, a share `wrong` of them misclassified, from `start` on."""
    rng = np.random.default_rng(seed)
    truths = rng.choice(site.classes, 300)
    flip = rng.random(300) < wrong
    other = {site.classes[0]: site.classes[1], site.classes[1]: site.classes[0]}
    predicted = [other[t] if f else t for t, f in zip(truths, flip, strict=True)]
    lines = feedback_log.outcomes(
        release.content_hash, release.version, truths.tolist(), predicted, start=start,
        step=timedelta(milliseconds=5), classes=site.classes,
    )  # fmt: skip
    feedback_log.write(logs, lines, name=f"000000-{seed}-0.jsonl")


def check(result: dict, name: str) -> dict:
    return next(c for c in result["checks"] if c["name"] == name)


# --------------------------------------------------------------------------- servers


def serve(processes: Processes, site: Site, release: Release, tmp: Path, logs: Path) -> str:
    """A real model server for `release`; its URL once it is ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")} | {
        "MODELOPS_MODEL_URI": release.uri,
        "MODELOPS_EXPECTED_HASH": release.content_hash,
        "MODELOPS_MODEL_NAME": MODEL,
        "MODELOPS_MODEL_VERSION": release.version,
        "MODELOPS_HOST": "127.0.0.1",
        "MODELOPS_PORT": str(port),
        "MODELOPS_CACHE_DIR": str(tmp / "cache"),
        "MODELOPS_INFERENCE_LOG_DIR": str(logs),
        "MODELOPS_INFERENCE_LOG_SAMPLE_RATE": "1",
        "MODELOPS_SHUTDOWN_DELAY_S": "0",
    }
    log = tmp / f"server-{release.version}.log"
    processes.start(serve_command(), log, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_for(
        f"the {release.version} server",
        lambda: httpx.get(url + "/v2/health/ready").status_code == 200,
        log=log,
    )
    return url


def predict(client: httpx.Client, url: str, row: dict) -> httpx.Response:
    body = {"data": {"names": list(row), "ndarray": [list(row.values())]}}
    return client.post(url, json=body, timeout=10)


# --------------------------------------------------------------------------- Prometheus


def test_analyze_reads_the_counters_from_a_real_prometheus(
    site: Site, processes: Processes, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    main_url = serve(processes, site, site.main, tmp_path, logs)
    canary_url = serve(processes, site, site.canary, tmp_path, logs)
    # Scraped as gitops/monitoring assumes a cluster's pods are: target labels namespace and pod.
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "modelops",
                "static_configs": [
                    {"targets": [url.removeprefix("http://")], "labels": {"namespace": NAMESPACE, "pod": pod}}
                    for url, pod in ((main_url, f"{MODEL}-main-0"), (canary_url, f"{MODEL}-canary-0"))
                ],
            }
        ],
    }
    prom = prometheus.start(processes, tmp_path / "prometheus", config)
    log = tmp_path / "prometheus" / "prometheus.log"

    def query(expr: str) -> list[dict]:
        return prometheus.query(prom, expr)

    hashes = f"{site.main.content_hash}|{site.canary.content_hash}"
    wait_for(
        "both servers scraped", lambda: len(query(f'modelops_model_info{{hash=~"{hashes}"}}')) == 2, log=log
    )
    since = datetime.now(UTC)
    # a scrape after `since` with the counters still at 0, so the window's first sample is the zero
    scraped = lambda: [float(s["value"][1]) for s in query('timestamp(up{job="modelops"})')]  # noqa: E731
    wait_for(
        "a scrape after the window starts", lambda: len(s := scraped()) == 2 and min(s) > since.timestamp()
    )

    with httpx.Client() as client:
        for i in range(150):
            for url in (main_url, canary_url):
                assert (
                    predict(client, url + "/api/v1.0/predictions", site.rows[i % len(site.rows)]).status_code
                    == 200
                )
        for _ in range(5):  # a client's mistake: counted as a request, not as a server error
            assert client.post(main_url + "/api/v1.0/predictions", json={"data": {}}).status_code == 400
    sent = {f"{MODEL}-main-0": 155.0, f"{MODEL}-canary-0": 150.0}
    total = 'sum by (pod) (modelops_requests_total{job="modelops"})'
    wait_for(
        "the last counts scraped",
        lambda: {s["metric"]["pod"]: float(s["value"][1]) for s in query(total)} == sent,
    )
    # the window ends at that scrape: increase() then extrapolates nothing and counts exactly
    until = datetime.fromtimestamp(max(scraped()), UTC)
    window = [
        "--prometheus",
        prom,
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
        "--logs",
        str(logs),
    ]

    here = project(site, tmp_path / "repo")
    code, result, md = analyze(here, *window)
    assert (code, result["decision"]) == (21, "wait")  # default params: 150 requests are too few
    errors, slow = check(result, "errors"), check(result, "slow")
    main, other = errors["main"], errors["canary"]
    assert (main["n"], main["events"], other["n"], other["events"]) == (155, 0, 150, 0)
    assert (slow["main"]["n"], slow["canary"]["n"]) == (155, 150)
    assert "the bucket bound at or above the p95" in slow["note"]
    assert result["canary"] == {
        "kind": "canary", "predictor": "canary", "version": "v2", "hash": site.canary.content_hash,
        "traffic": 25,
    }  # fmt: skip
    assert result["rule"]["k"] == 2 and check(result, "online_error")["status"] == "inactive"
    queries = result["evidence"]["queries"]
    assert len(queries) == 3 and all(
        f'namespace="{NAMESPACE}"' in q and hashes in q and "[R]" in q for q in queries
    )
    # main's rows from the canary's first on: main's first answer came just before it
    assert result["info"]["rows"] == {"main": 149, "canary": 150} and result["info"]["score"]["psi"] < 0.1
    assert (
        "## ⏸️ credit-hgb in production: wait on the canary v2" in md
        and "increase(modelops_requests_total" in md
    )

    # outcomes: the canary misclassifies far more than main -> abort, on the first n_req rows
    set_canary(here, DECISIVE)
    feedback(site, logs, site.main, 0.1, since + timedelta(milliseconds=10), seed=1)
    feedback(site, logs, site.canary, 0.6, since + timedelta(milliseconds=20), seed=2)
    code, result, md = analyze(here, *window)
    online = check(result, "online_error")
    assert (code, result["decision"], online["status"], result["rule"]["k"]) == (20, "abort", "abort", 3)
    assert online["n_req"] < 300 and online["samples"].startswith("first")
    assert (
        check(result, "errors")["status"] == "pass" and "(first n_req)" in check(result, "errors")["samples"]
    )
    assert "online_error: the canary is worse" in md

    # as good as main -> promote
    shutil.rmtree(logs / MODEL / "feedback")
    feedback(site, logs, site.main, 0.1, since + timedelta(milliseconds=10), seed=3)
    feedback(site, logs, site.canary, 0.1, since + timedelta(milliseconds=20), seed=4)
    code, result, md = analyze(here, *window)
    assert (code, result["decision"]) == (0, "promote"), md
    assert all(c["status"] == "pass" for c in result["checks"])


# --------------------------------------------------------------------------- the local runtime


def test_analyze_reads_the_local_runtimes_own_counters(
    site: Site, processes: Processes, tmp_path: Path
) -> None:
    seed = project(site, tmp_path / "seed")
    run(["git", "init", "-q", "-b", "main"], seed)
    run(["git", "add", "-A"], seed)
    run(["git", "commit", "-q", "-m", "main v1, canary v2 at 25%"], seed)
    run(["git", "clone", "-q", "--bare", str(seed), str(tmp_path / "origin.git")], tmp_path)
    cluster = tmp_path / "cluster"
    run(["git", "clone", "-q", str(tmp_path / "origin.git"), str(cluster)], tmp_path)
    port = free_port()
    log = tmp_path / "sync.log"
    # bearer tokens on, from the environment (`analyze` then sends the token of the runtime's file)
    tokens = tmp_path / "tokens"
    tokens.write_text("analyze-test-token-0123456789abcdef\n")
    bearer = {"authorization": "Bearer analyze-test-token-0123456789abcdef"}
    # the default state dir (.modelops/runtime): `analyze` finds the runtime as `status` does
    processes.start(
        [MODELOPS, "sync", "--env", "production", "--watch", "--port", str(port)],
        log,
        cwd=cluster,
        env=os.environ | {"MODELOPS_AUTH_TOKENS_FILE": str(tokens)},
    )
    router = f"http://127.0.0.1:{port}"
    status = wait_for(
        "the first sync",
        lambda: (s := httpx.get(router + "/_modelops/status", headers=bearer).json())["applied_rev"] and s,
        log=log,
    )
    (deployment,) = [d for d in status["deployments"] if d["name"] == MODEL]
    assert all(len(p["backends"]) == 1 for p in deployment["predictors"])
    assert httpx.get(router + "/_modelops/counters?since=0").status_code == 401
    with httpx.Client(headers=bearer) as client:
        for i in range(40):
            url = f"{router}/seldon/{NAMESPACE}/{MODEL}/api/v1.0/predictions"
            assert predict(client, url, site.rows[i]).status_code == 200

    time.sleep(2.5)  # the router samples each second: a sample after the last request, before `first`
    first = datetime.now(UTC)
    with httpx.Client(headers=bearer) as client:
        for i in range(40, 80):
            url = f"{router}/seldon/{NAMESPACE}/{MODEL}/api/v1.0/predictions"
            assert predict(client, url, site.rows[i]).status_code == 200

    code, result, _ = analyze(cluster)  # no --runtime, no --prometheus: the env's local runtime
    assert (code, result["decision"]) == (21, "wait")
    errors = check(result, "errors")
    assert (errors["main"]["n"], errors["canary"]["n"]) == (60, 20)  # the router's exact 75/25 split
    assert errors["samples"].startswith("counters from ")
    assert result["evidence"]["counters"].startswith(f"the local runtime at {router}")
    (query,) = result["evidence"]["queries"]
    assert query.startswith(f"GET {router}/_modelops/counters?since=")
    # the runtime keeps a history: the counters as they were before the second 40 requests
    code, result, _ = analyze(cluster, "--until", first.isoformat())
    errors = check(result, "errors")
    assert (code, errors["main"]["n"], errors["canary"]["n"]) == (21, 30, 10)

    # git now says another canary than the runtime serves: refused, naming both
    patch = cluster / "gitops" / "envs" / "production" / f"{MODEL}.yaml"
    other = Release("v3", "c" * 64, site.canary.uri.replace(site.canary.content_hash, "c" * 64))
    patch.write_text(render_state(patch, MODEL, site.main, [Extra("canary", other, 25)]))
    proc = run([MODELOPS, "analyze", MODEL, "--env", "production"], cluster, check=False)
    assert proc.returncode == 14 and "behind gitops/" in proc.stderr and "cccccccccccc" in proc.stderr
