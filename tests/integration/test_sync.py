"""`modelops sync`: the local runtime serves what the manifests at origin/main say (DESIGN: cluster).

One module-wide site: two small versions of credit-hgb and one of a second model (another dataset
and task, with credit-hgb's manifests renamed for it unless it ships its own) trained for real
and published to a tmp artifact store,
a bare `origin` holding the project's `gitops/`, a `dev` clone where "merges" are committed and
pushed, and a `cluster` clone where the runtime runs and fetches, as Argo CD would. Each test
starts its own `modelops sync --watch` process and stops it (and so its servers) by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from modelops_serving.integrity import tree_hash

from modelops.config import load_params
from modelops.delivery import publish
from modelops.delivery.promote import Extra, Release, render_state
from modelops.delivery.signing import Signer, generate_key
from tests.conftest import free_port, project_files, run, train_and_package
from tests.gitops_models import add_manifests

pytestmark = pytest.mark.slow

MODEL = "credit-hgb"
# A second served model of another dataset and task (multiclass: the server needs predict_proba).
OTHER = "hpc-forest"
PATCH = f"gitops/envs/production/{MODEL}.yaml"
PROJECT = Path(__file__).resolve().parents[2]
MODELOPS = str(Path(sys.executable).with_name("modelops"))
TOKEN = "sync-test-token-0123456789abcdef"
BEARER = {"authorization": f"Bearer {TOKEN}"}
ROW = {
    "seniority": 9,
    "home": "rent",
    "time": 60,
    "age": 30,
    "marital": "married",
    "records": "no",
    "job": "fixed",
    "expenses": 73,
    "income": 129,
    "assets": 0,
    "debt": 0,
    "amount": 800,
    "price": 846,
}


@dataclass(frozen=True)
class Site:
    dev: Path
    cluster: Path
    a: Release
    b: Release
    store: Path
    other: Release
    other_row: dict


def _release(root: Path, version: str, hyper: dict, store: Path, model: str = MODEL) -> Release:
    """Train and package a small model for real, publish it, and describe it as a promotion would."""
    project_files(root)
    params = load_params(root / "params.yaml")
    hyper = params.models[model].hyperparams | hyper
    params.models[model] = params.models[model].model_copy(update={"hyperparams": hyper})
    metrics = {"roc_auc": 0.8, "f1": 0.5, "log_loss": 0.5, "accuracy": 0.5, "macro_f1": 0.5}
    train_and_package(root, model, params, rows=1500, metrics=metrics)
    # Signed with the session's key, which stands in for the shipped envs' keyless policy here.
    published = publish.publish(root / "models" / model / "model", model, str(store), Signer.from_env())
    return Release(version, published.content_hash, published.uri, "abc1234", "run", "1")


def _row(root: Path, model: str) -> dict:
    """One held-out row of the model's dataset, as JSON (a missing value is null)."""
    import pandas as pd

    from modelops.pipeline.prepare import read_split

    ds = load_params(root / "params.yaml").dataset_of(model)
    row = read_split(root / ds.test_file)[list(ds.features)].head(1).astype(object)
    return {k: (None if pd.isna(v) else v) for k, v in row.iloc[0].items()}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    root = tmp_path_factory.mktemp("sync")
    store = root / "store"
    a = _release(root / "train-a", "v1", {"max_iter": 20}, store)
    b = _release(root / "train-b", "v2", {"max_iter": 40}, store)
    assert a.content_hash != b.content_hash
    other = _release(root / "train-other", "v1", {"n_estimators": 10}, store, OTHER)
    seed = root / "seed"
    shutil.copytree(PROJECT / "gitops", seed / "gitops")
    project_files(seed)
    add_manifests(seed, OTHER)
    run(["git", "init", "-q", "-b", "main"], seed)
    run(["git", "add", "-A"], seed)
    run(["git", "commit", "-q", "-m", "gitops, unpromoted"], seed)
    run(["git", "clone", "-q", "--bare", str(seed), str(root / "origin.git")], root)
    run(["git", "clone", "-q", str(root / "origin.git"), str(root / "dev")], root)
    run(["git", "clone", "-q", str(root / "origin.git"), str(root / "cluster")], root)
    return Site(root / "dev", root / "cluster", a, b, store, other, _row(root / "train-other", OTHER))


def deploy(
    site: Site,
    main: Release | None,
    extras: list[Extra] = (),
    text: str | None = None,
    model: str = MODEL,
    push: bool = True,
    env: str = "production",
) -> str:
    """Commit the env's patch of `model` (a release, or raw text) in `dev` and push it, as a merge
    would (`push=False`: commit only, to land two models' changes in one push)."""
    patch = f"gitops/envs/{env}/{model}.yaml"
    path = site.dev / patch
    if text is None:
        run(["git", "checkout", "-q", "origin/main", "--", patch], site.dev)
        text = render_state(path, model, main, list(extras)) if main else path.read_text()
    path.write_text(text)
    run(["git", "commit", "-q", "--allow-empty", "-am", f"deploy {model}"], site.dev)
    if push:
        run(["git", "push", "-q", "origin", "HEAD:main"], site.dev)
    return run(["git", "rev-parse", "HEAD"], site.dev).stdout.strip()


class Runtime:
    """A `modelops sync --watch` process of the test, stopped by PID (its servers with it)."""

    def __init__(self, site: Site, tmp_path: Path, max_replicas: int = 1, env: str = "production") -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = tmp_path / "state"
        self.log = tmp_path / "sync.log"
        args = [MODELOPS, "sync", "--env", env, "--watch", "--port", str(self.port)]
        args += ["--interval", "0.3", "--state-dir", str(self.state), "--max-replicas", str(max_replicas)]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(args, cwd=site.cluster, stdout=out, stderr=subprocess.STDOUT)
        self.pids: set[int] = set()
        self.wait_for(lambda s: s["applied_rev"] or s["last_error"], "the first sync")

    def status(self) -> dict:
        state = httpx.get(f"{self.url}/_modelops/status", timeout=5).json()
        for d in state["deployments"]:
            for p in d["predictors"]:
                self.pids.update(p["pids"])
        return state

    def wait_for(self, done, what: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"sync exited: {self.log.read_text()}"
            try:
                state = self.status()
                if done(state):
                    return state
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: {self.log.read_text()[-3000:]}")

    def wait_rev(self, rev: str) -> dict:
        return self.wait_for(lambda s: rev in (s["applied_rev"], s["failed_rev"]), rev)

    def predict(
        self, client: httpx.Client | None = None, model: str = MODEL, row: dict = ROW
    ) -> httpx.Response:
        body = {"data": {"names": list(row), "ndarray": [list(row.values())]}}
        post = (client or httpx).post
        return post(
            f"{self.url}/seldon/modelops-{self.env}/{model}/api/v1.0/predictions", json=body, timeout=10
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(40)
        except subprocess.TimeoutExpired:
            self.process.kill()
        for pid in self.pids:  # a server the runtime failed to stop must not outlive the test
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            raise AssertionError(f"server pid {pid} outlived its runtime")


@pytest.fixture
def runtime_for(site: Site, tmp_path: Path):
    started: list[Runtime] = []

    def start(**options) -> Runtime:
        started.append(Runtime(site, tmp_path, **options))
        return started[-1]

    yield start
    for rt in started:
        rt.stop()


def predictor_of(state: dict, model: str = MODEL) -> dict[str, dict]:
    (deployment,) = [d for d in state["deployments"] if d["name"] == model]
    return {p["name"]: p for p in deployment["predictors"]}


def test_unpromoted_env_answers_503_then_a_merge_deploys(site: Site, runtime_for) -> None:
    deploy(site, None, text=(PROJECT / PATCH).read_text())
    rt = runtime_for()
    answer = rt.predict()
    assert answer.status_code == 503
    assert "no model promoted yet" in answer.json()["error"]
    rev = deploy(site, site.a)
    state = rt.wait_rev(rev)
    assert state["last_error"] is None
    answer = rt.predict()
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-model-version"] == "v1"
    assert answer.headers["x-model-hash"] == site.a.content_hash
    assert answer.headers["x-modelops-predictor"] == "main"


def test_swap_under_load_fails_no_request_and_stops_the_old_server(site: Site, runtime_for) -> None:
    deploy(site, site.a)
    rt = runtime_for()
    old_pids = predictor_of(rt.status())["main"]["pids"]
    seen: list[list[str]] = [[] for _ in range(3)]
    failures: list[str] = []
    stop = threading.Event()

    def load(i: int) -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                try:
                    answer = rt.predict(client)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text}")
                else:
                    seen[i].append(answer.headers["x-model-version"])

    threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        rev = deploy(site, site.b)
        rt.wait_rev(rev)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(s.count("v2") >= 50 for s in seen):
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    for versions in seen:
        assert versions[0] == "v1" and versions.count("v2") >= 50
        first_new = versions.index("v2")
        assert set(versions[first_new:]) == {"v2"}, "a client saw the old model after the new one"
    state = rt.status()
    assert [p["version"] for p in predictor_of(state).values()] == ["v2"]
    for pid in old_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_canary_splits_traffic_exactly_and_a_shadow_sees_every_request(site: Site, runtime_for) -> None:
    deploy(site, site.a, [Extra("canary", site.b, 25)])
    rt = runtime_for(max_replicas=2)
    # Production asks for 3 replicas per predictor; two run here, each taking its turn.
    for p in predictor_of(rt.status()).values():
        assert p["replicas"] == {"manifest": 3, "local": 2} and len(set(p["pids"])) == 2
    with httpx.Client() as client:
        answers = [rt.predict(client) for _ in range(100)]
    assert Counter((r.headers["x-modelops-predictor"], r.headers["x-model-version"]) for r in answers) == {
        ("main", "v1"): 75,
        ("canary", "v2"): 25,
    }
    split = predictor_of(rt.status())
    assert sorted(split["main"]["requests_per_replica"]) == [37, 38]
    assert sorted(split["canary"]["requests_per_replica"]) == [12, 13]
    rev = deploy(site, site.a, [Extra("shadow", site.b, 0)])
    state = rt.wait_rev(rev)
    assert {n: (p["version"], p["shadow"]) for n, p in predictor_of(state).items()} == {
        "main": ("v1", False),
        "shadow": ("v2", True),
    }
    before = predictor_of(state)["shadow"]["requests"]
    with httpx.Client() as client:
        answers = [rt.predict(client) for _ in range(40)]
    assert {r.headers["x-model-version"] for r in answers} == {"v1"}
    state = rt.wait_for(lambda s: predictor_of(s)["shadow"]["requests"] - before == 40, "40 mirrored")
    assert predictor_of(state)["shadow"]["errors"] == 0


def test_feedback_finds_the_replica_that_answered_and_a_shadow_shares_the_request_id(
    site: Site, runtime_for
) -> None:
    """Feedback goes to every replica of every predictor and the one that remembers the request id
    answers; a mirrored request carries one x-request-id, so outcomes join to main and shadow alike."""
    deploy(site, site.a, [Extra("canary", site.b, 50)])
    rt = runtime_for(max_replicas=2)
    base = f"{rt.url}/seldon/modelops-production/{MODEL}"

    def feedback(client: httpx.Client, answer: dict, truth: list) -> httpx.Response:
        body = {"response": answer, "truth": {"data": {"ndarray": truth}}, "reward": 1}
        return client.post(f"{base}/api/v1.0/feedback", json=body, timeout=10)

    with httpx.Client() as client:
        answers = [rt.predict(client) for _ in range(4)]  # main and canary, each on both replicas
        assert {a.headers["x-modelops-predictor"] for a in answers} == {"main", "canary"}
        traffic = {n: p["requests"] for n, p in predictor_of(rt.status()).items()}
        for answer in answers:
            sent = feedback(client, answer.json(), ["good"])
            assert sent.status_code == 200, sent.text
            assert sent.headers["x-modelops-predictor"] == answer.headers["x-modelops-predictor"]
            assert sent.json()["meta"]["puid"] == answer.headers["x-request-id"]
        # the most specific refusal wins over the other replicas' 404s
        assert feedback(client, answers[0].json(), ["good"]).status_code == 409
        # feedback is not traffic: the counters a canary analysis reads did not move
        assert {n: p["requests"] for n, p in predictor_of(rt.status()).items()} == traffic
        fresh = rt.predict(client).json()
        wrong = feedback(client, fresh, ["good", "bad"])
        assert wrong.status_code == 400 and "has 1 row(s)" in wrong.json()["status"]["info"]
        unknown = feedback(client, {"meta": {"puid": "f" * 32}}, ["good"])
        assert unknown.status_code == 404 and "no prediction with request id" in unknown.text
        inputs = [
            {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64", "data": [v]}
            for k, v in ROW.items()
        ]
        v2 = client.post(f"{base}/v2/models/{MODEL}/infer", json={"inputs": inputs, "id": "v2-order-1"})
        assert v2.status_code == 200 and v2.headers["x-request-id"] == "v2-order-1", v2.text
        sent = client.post(f"{base}/v2/models/{MODEL}/feedback", json={"id": "v2-order-1", "truth": ["bad"]})
        assert sent.status_code == 200 and sent.json()["rows"] == 1, sent.text
        assert sent.headers["x-modelops-predictor"] == v2.headers["x-modelops-predictor"]

    rev = deploy(site, site.a, [Extra("shadow", site.b, 0)])
    state = rt.wait_rev(rev)
    before = predictor_of(state)["shadow"]["requests"]
    with httpx.Client() as client:
        answer = rt.predict(client)
        rt.wait_for(lambda s: predictor_of(s)["shadow"]["requests"] == before + 1, "the mirrored copy")
        sent = feedback(client, answer.json(), ["bad"])
    assert sent.status_code == 200 and sent.headers["x-modelops-predictor"] == "main", sent.text
    request_id = answer.headers["x-request-id"]
    outcomes = rt.state / "production" / "inference-log" / MODEL / "feedback"

    def logged() -> dict[str, str]:
        lines = [json.loads(x) for f in outcomes.glob("*/*.jsonl") for x in f.read_text().splitlines()]
        return {r["hash"]: r["truth"] for r in lines if r["request_id"] == request_id}

    deadline = time.monotonic() + 30
    while len(logged()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logged() == {site.a.content_hash: "bad", site.b.content_hash: "bad"}


def test_a_bad_manifest_hash_or_signature_is_not_applied(site: Site, runtime_for, tmp_path: Path) -> None:
    deploy(site, site.a)
    rt = runtime_for()
    good = rt.status()["applied_rev"]
    text = render_state(site.dev / PATCH, MODEL, site.a, [])
    broken = text.replace(
        "  path: /spec/predictors/0/traffic\n  value: 100", "  path: /spec/predictors/0/traffic\n  value: 90"
    )
    assert broken != text
    rev = deploy(site, None, text=broken)
    state = rt.wait_rev(rev)
    assert "traffic of non-shadow predictors sums to 90" in state["last_error"]
    assert state["applied_rev"] == good and not state["in_sync"]
    assert rt.predict().headers["x-model-version"] == "v1"

    # The one-shot command against the running runtime reports the same and fails.
    proc = run(
        [MODELOPS, "sync", "--env", "production", "--state-dir", str(rt.state)], site.cluster, check=False
    )
    assert proc.returncode == 13, proc.stdout + proc.stderr
    assert "sums to 90" in proc.stderr and "still serving" in proc.stderr

    # A store entry whose bytes are not what its path and the manifest promise.
    fake = "f" * 64
    tampered = site.store / MODEL / fake
    shutil.copytree(publish.storage.local_path(site.b.uri), tampered)
    bad = Release("v3", fake, tampered.as_uri() + "/")
    rev = deploy(site, bad)
    state = rt.wait_rev(rev)
    assert f"hashes to {site.b.content_hash}, but the manifest expects {fake}" in state["last_error"]
    assert [p["version"] for p in predictor_of(state).values()] == ["v1"]
    assert rt.predict().headers["x-model-hash"] == site.a.content_hash

    # Bytes that hash as the manifest says (its hash edited to match) but that nobody signed; then
    # signed, by a key the env's policy does not name. Refused before any server starts.
    scratch = Path(shutil.copytree(publish.storage.local_path(site.b.uri), tmp_path / "unsigned"))
    (scratch / "conda.yaml").chmod(0o644)
    (scratch / "conda.yaml").write_text((scratch / "conda.yaml").read_text() + "# edited\n")
    stored = site.store / MODEL / tree_hash(scratch)
    scratch.rename(stored)
    unsigned = Release("v4", stored.name, stored.as_uri() + "/")
    rev = deploy(site, unsigned)
    state = rt.wait_rev(rev)
    assert f"{unsigned.uri} REFUSED: unsigned" in state["last_error"], state["last_error"]
    assert "MODELOPS_LOCAL_SIGNER_KEY, standing in for keyless signatures of" in state["last_error"]
    stranger, _ = generate_key(tmp_path / "stranger")
    Signer(stranger).sign(stored, stored.with_name(stored.name + ".sig"))
    rev = deploy(site, Release("v5", unsigned.content_hash, unsigned.uri))
    state = rt.wait_rev(rev)
    assert "REFUSED" in state["last_error"] and "signed with another key" in state["last_error"]
    assert [p["version"] for p in predictor_of(state).values()] == ["v1"]
    assert rt.predict().headers["x-model-hash"] == site.a.content_hash

    # Fixing it in git (a revert) is picked up by the next poll.
    rev = deploy(site, site.b)
    state = rt.wait_rev(rev)
    assert state["last_error"] is None and state["in_sync"]
    assert rt.predict().headers["x-model-version"] == "v2"


def test_background_sync_status_and_stop(site: Site, tmp_path: Path) -> None:
    """With bearer tokens: the router and the servers it starts require one; `sync`, `status` and
    `--stop` send it (the runtime's record names its tokens file)."""
    deploy(site, site.a)
    seen_by_user = run(["git", "rev-parse", "origin/main"], site.cluster).stdout
    state_dir = tmp_path / "state"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# modelops-serving-tokens\n{TOKEN}\n")
    args = ["--env", "production", "--state-dir", str(state_dir), "--interval", "0.3"]
    proc = run([MODELOPS, "sync", *args, "--tokens-file", str(tokens)], site.cluster, check=False)
    record = json.loads((state_dir / "production.json").read_text())
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "started" in proc.stdout and "main v1 100%" in proc.stdout
        assert record["tokens_file"] == str(tokens)
        url = f"{record['endpoint']}/seldon/modelops-production/{MODEL}/api/v1.0/predictions"
        body = {"data": {"names": list(ROW), "ndarray": [list(ROW.values())]}}
        assert httpx.post(url, json=body).status_code == 401
        assert httpx.post(url, json=body, headers={"authorization": "Bearer " + "x" * 20}).status_code == 403
        answer = httpx.post(url, json=body, headers=BEARER)
        assert answer.headers["x-model-version"] == "v1"
        # the server behind the router requires it too (the router passed the header on)
        status = httpx.get(f"{record['endpoint']}/_modelops/status", headers=BEARER).json()
        assert status["auth"] == {"tokens_required": True, "refused": {"missing": 1, "unknown": 1}}
        (backend,) = predictor_of(status)["main"]["backends"]
        assert httpx.post(f"{backend}/api/v1.0/predictions", json=body).status_code == 401
        assert httpx.post(f"{backend}/api/v1.0/predictions", json=body, headers=BEARER).status_code == 200
        assert httpx.get(f"{backend}/metrics").status_code == 200
        # the running runtime keeps its tokens file: another one is refused, nothing changes
        other = tmp_path / "other-tokens"
        other.write_text("another-token-0123456789abcdef\n")
        refused = run([MODELOPS, "sync", *args, "--tokens-file", str(other)], site.cluster, check=False)
        assert refused.returncode == 13 and f"runs with the tokens of {tokens}" in refused.stderr
        assert "stop it first" in refused.stderr
        # A second one-shot sync talks to the same runtime instead of starting another.
        again = run([MODELOPS, "sync", *args], site.cluster)
        assert json.loads((state_dir / "production.json").read_text())["pid"] == record["pid"]
        assert "unchanged" in again.stdout or "applied" in again.stdout
        # The runtime polls a mirror of its own: the user's clone is never fetched into.
        assert run(["git", "rev-parse", "origin/main"], site.cluster).stdout == seen_by_user
        # Status: git (the checkout's gitops), the MLflow alias (none here), and what runs locally.
        run(["git", "pull", "-q"], site.cluster)
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
        shown = run(
            [MODELOPS, "status", "--env", "production", "--state-dir", str(state_dir)], site.cluster, env=env
        )
        (row,) = [line for line in shown.stdout.splitlines() if line.startswith(f"| production | {MODEL} ")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:3] == ["production", MODEL, "v1"]
        assert cells[5] == f"v1 (in sync, {record['endpoint']})"
    finally:
        stopped = run(
            [MODELOPS, "sync", "--env", "production", "--stop", "--state-dir", str(state_dir)], site.cluster
        )
    assert "stopped" in stopped.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(record["pid"], 0)


def test_two_models_answer_on_their_own_paths_and_promoting_one_leaves_the_other(
    site: Site, runtime_for
) -> None:
    """Every SeldonDeployment of the env is served; a promotion restarts only its own model's servers."""
    deploy(site, site.other, model=OTHER, push=False)
    deploy(site, site.a)
    rt = runtime_for()
    state = rt.status()
    assert {MODEL, OTHER} <= {d["name"] for d in state["deployments"]}
    urls = {d["name"]: d["url"] for d in state["deployments"]}
    assert urls[OTHER] == f"{rt.url}/seldon/modelops-production/{OTHER}"
    mine, other = rt.predict(), rt.predict(model=OTHER, row=site.other_row)
    assert mine.status_code == 200 and other.status_code == 200, (mine.text, other.text)
    assert (mine.headers["x-model-version"], mine.headers["x-model-hash"]) == ("v1", site.a.content_hash)
    assert other.headers["x-model-hash"] == site.other.content_hash
    classes = load_params(site.cluster / "params.yaml").dataset_of(OTHER).classes
    assert other.json()["data"]["names"] == [str(c) for c in classes]  # its own classes, not credit's
    # A path naming no deployment of the env is a 404 listing the served ones.
    missing = httpx.post(
        f"{rt.url}/seldon/modelops-production/no-such-model/api/v1.0/predictions", json={}, timeout=10
    )
    assert missing.status_code == 404 and OTHER in missing.text and MODEL in missing.text
    other_pids = predictor_of(state, OTHER)["main"]["pids"]

    rev = deploy(site, site.b)
    state = rt.wait_rev(rev)
    assert state["last_error"] is None
    assert rt.predict().headers["x-model-version"] == "v2"
    assert predictor_of(state, OTHER)["main"]["pids"] == other_pids  # not restarted
    for pid in other_pids:
        os.kill(pid, 0)  # still alive
    again = rt.predict(model=OTHER, row=site.other_row)
    assert again.status_code == 200 and again.headers["x-model-hash"] == site.other.content_hash


def test_an_unknown_env_is_refused_naming_the_known_ones(site: Site, tmp_path: Path) -> None:
    proc = run([MODELOPS, "sync", "--env", "qa", "--state-dir", str(tmp_path)], site.cluster, check=False)
    assert proc.returncode == 6
    assert "unknown env 'qa'" in proc.stderr and "production, staging" in proc.stderr
    assert not (tmp_path / "qa.json").exists()


def test_a_kserve_env_serves_what_its_inference_service_says(site: Site, runtime_for) -> None:
    """The demo's loop on KServe (params.yaml platforms: staging-kserve): a merge deploys, a revert
    serves the previous model again, and a canary is split as KServe splits it: the spec's model
    takes canaryTrafficPercent, the previous rolled-out revision (main, from the annotations) the rest.
    Clients speak the Open Inference Protocol, as to KServe."""
    env = "staging-kserve"
    inputs = [
        {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64", "data": [v]}
        for k, v in ROW.items()
    ]

    def served(rt: Runtime, n: int) -> Counter:
        url = f"{rt.url}/seldon/modelops-{env}/{MODEL}/v2/models/{MODEL}/infer"
        with httpx.Client() as client:
            answers = [client.post(url, json={"inputs": inputs}, timeout=10) for _ in range(n)]
        assert all(a.status_code == 200 for a in answers), answers[0].text
        return Counter((a.headers["x-modelops-predictor"], a.headers["x-model-version"]) for a in answers)

    deploy(site, site.a, env=env)
    rt = runtime_for(env=env)
    assert served(rt, 2) == {("main", "v1"): 2}
    promoted = deploy(site, site.b, env=env)  # merge to deploy v2
    rt.wait_rev(promoted)
    assert served(rt, 2) == {("main", "v2"): 2}
    run(["git", "revert", "--no-edit", "HEAD"], site.dev)  # revert to roll back
    run(["git", "push", "-q", "origin", "HEAD:main"], site.dev)
    state = rt.wait_rev(run(["git", "rev-parse", "HEAD"], site.dev).stdout.strip())
    assert state["last_error"] is None
    assert served(rt, 2) == {("main", "v1"): 2}
    rev = deploy(site, site.a, [Extra("canary", site.b, 25)], env=env)
    state = rt.wait_rev(rev)
    assert {n: (p["version"], p["traffic"]) for n, p in predictor_of(state).items()} == {
        "main": ("v1", 75),
        "canary": ("v2", 25),
    }
    assert served(rt, 20) == {("main", "v1"): 15, ("canary", "v2"): 5}
