"""canary.yml under act: the analysis of each canary concludes itself (DESIGN invariants 8, 11).

No training (as in the rollback.yml tests): a packaged model is a directory with an MLmodel file to
`modelops promote`, so tiny stand-in packages make real promotion commits, real published artifacts
and real registry versions. No model server runs either: the evidence is what the servers would
have left behind, in the real stores analyze reads.

- Inference and feedback logs (the contract in `modelops.monitoring.logs` and docs/serving.md),
  under a root handed to the job as the MODELOPS_INFERENCE_LOGS repository variable, `{env}` in it.
- Request counters in a real Prometheus, handed to the job as MODELOPS_PROMETHEUS_URL: its TSDB
  is backfilled (`tests.prometheus.backfill`) with what scraping each predictor's pod every 30 s
  would have stored, the same requests replayed through the server's own metrics.

`test_a_bad_canary_is_aborted_and_a_good_one_proposed_for_finishing` runs `modelops canaries` and
`modelops analyze` for real, over both envs (a schedule's default), each with a canary: staging's is
bad, production's is good. The evidence is made to leave no doubt: the bad canary is 4 times slower
than main and answers "bad" to every request where main is right on each; the good canary answers
exactly as main does, as fast; on many more requests than params' min_samples. The bad canary's
latency is what aborts it: its check needs a few hundred requests per predictor, where the
outcomes' needs more than ROWS at that error share (the rule sizes n_req for the margin, whatever
the gap), so that check still waits.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelops.runtime.forge import PROJECT_ROOT, ActResult, Forge, tool_env
from tests import inference_log, prometheus
from tests.processes import Processes

pytestmark = pytest.mark.slow

MODEL = "credit-hgb"
WORKFLOW = ".github/workflows/canary.yml"
ROWS = 1500  # requests per predictor, well above params' canary.min_samples
REPOSITORY = {"full_name": "acme/modelops", "name": "modelops", "owner": {"login": "acme"}}


def promote(forge: Forge, env: dict[str, str], marker: str, *args: str) -> dict[str, str]:
    """Package a tiny stand-in model (content differs by `marker`), `promote` it, push; its release."""
    model = forge.work / f"models/{MODEL}/model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "MLmodel").write_text(f"flavors: {{}}\nmarker: {marker}\n")
    proc = subprocess.run(
        ["modelops", "promote", MODEL, *args, "--push"],
        cwd=forge.work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    body = forge.git("log", "-1", "--format=%(trailers:only,unfold)")
    trailers = dict(line.split(": ", 1) for line in body.splitlines())
    return {"version": trailers["Version"], "hash": trailers["Hash"]}


def write_evidence(root: Path, release: dict[str, str], right: bool, start: datetime) -> None:
    """ROWS requests served by one predictor, and their outcomes: 70% of the truths are the first
    class; a `right` predictor predicts each truth, a wrong one says the second class every time."""
    from modelops.config import load_params
    from modelops.pipeline import dataset, ingest

    ds = load_params(PROJECT_ROOT / "params.yaml").dataset_of(MODEL)
    first, second = ds.classes or ()
    truth = [first if i % 10 < 7 else second for i in range(ROWS)]
    predicted = [t if right else second for t in truth]
    confidence = [0.95 if p == second else 0.05 for p in predicted]  # P(second class)
    features = dataset.to_features(ds, ingest.synthesize(ds, ROWS, seed=int(release["hash"][:6], 16)))
    step = timedelta(seconds=1)
    rows = inference_log.records(
        features, confidence, release["hash"], release["version"], MODEL, start, step, (first, second)
    )
    for row in rows:  # distinct requests per predictor, as a split of real traffic gives
        row["request_id"] = uuid.uuid4().hex
    # <HHMMSS>-<pid>-<seq>.jsonl, the servers' file names; one "process" per predictor
    name = f"000000-{int(release['hash'][:4], 16)}-0.jsonl"
    inference_log.write(root, rows, name=name)
    for row, actual in zip(rows, truth, strict=True):
        feedback = root / MODEL / "feedback" / row["ts"][:10] / name
        feedback.parent.mkdir(parents=True, exist_ok=True)
        with feedback.open("a") as out:
            outcome = {
                "ts": row["ts"],
                "predicted_at": row["ts"],
                "model": MODEL,
                "version": row["version"],
                "hash": row["hash"],
                "request_id": row["request_id"],
                "row": 0,
                "truth": actual,
                "prediction": row["prediction"],
                "probabilities": row["probabilities"],
                "reward": None,
            }
            out.write(json.dumps(outcome) + "\n")


def traffic(start: datetime, slower: float) -> list[prometheus.Request]:
    """The ROWS requests of `write_evidence`, one a second from `start`, all answered 200: 80% take
    4 ms inside the handler, 15% 8 ms, 5% 20 ms; each `slower` times that."""
    profile = (0.004,) * 16 + (0.008,) * 3 + (0.02,)
    return [prometheus.Request(start + timedelta(seconds=i), profile[i % 20] * slower) for i in range(ROWS)]


def pod(env: str, predictor: str, release: dict[str, str], requests: list) -> prometheus.Pod:
    """The pod of `predictor` in `env`'s namespace, serving `release`."""
    return prometheus.Pod(
        f"modelops-{env}", f"{MODEL}-{predictor}-0", MODEL, release["version"], release["hash"], requests
    )


def checks(analysis: dict) -> dict[str, str]:
    """Each check's status in an analysis JSON."""
    return {c["name"]: c["status"] for c in analysis["checks"]}


def dispatch(env: str = "production", model: str = "", ref: str = "refs/heads/main") -> dict:
    return {
        "ref": ref,
        "inputs": {"env": env, "model": model},
        "repository": REPOSITORY | {"default_branch": "main"},
    }


def patch(forge: Forge, env: str, rev: str = "main") -> str:
    return forge.git("show", f"{rev}:gitops/envs/{env}/{MODEL}.yaml", cwd=forge.origin)


def trailers(forge: Forge, rev: str) -> dict[str, str]:
    text = forge.git("log", "-1", "--format=%(trailers:only,unfold)", rev, cwd=forge.origin)
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def test_a_bad_canary_is_aborted_and_a_good_one_proposed_for_finishing(
    tmp_path: Path, processes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    forge = Forge.from_project(tmp_path / "forge")
    store, tracking = tmp_path / "artifacts", f"sqlite:///{tmp_path}/mlflow.db"
    # The deployments are two hours old (analyze's window starts at the canary's commit), the
    # traffic of the last half hour comes after them.
    now = datetime.now(UTC).replace(microsecond=0)
    deployed = now - timedelta(hours=2)
    env = tool_env(tracking, store) | {
        "GIT_AUTHOR_DATE": deployed.isoformat(),
        "GIT_COMMITTER_DATE": deployed.isoformat(),
    }
    main = promote(forge, env, "one", "--env", "staging")
    assert promote(forge, env, "one", "--env", "production") == main
    before_canary = {e: patch(forge, e) for e in ("staging", "production")}
    bad = promote(forge, env, "bad", "--env", "staging", "--canary", "50")
    good = promote(forge, env, "good", "--env", "production", "--canary", "50")
    top = forge.origin_sha()
    t0 = time.monotonic()

    logs = tmp_path / "logs"
    start = now - timedelta(seconds=ROWS + 60)
    pods = []
    for env_name, canary, right in (("staging", bad, False), ("production", good, True)):
        write_evidence(logs / env_name, main, True, start)
        write_evidence(logs / env_name, canary, right, start)
        pods += [
            pod(env_name, "main", main, traffic(start, 1)),
            pod(env_name, "canary", canary, traffic(start, 1 if right else 4)),
        ]
    server = tmp_path / "prometheus"
    prometheus.backfill(server / "tsdb", pods, deployed, now)
    url = prometheus.start(processes, server)
    evidence = time.monotonic() - t0
    variables = {
        "MODELOPS_ARTIFACT_STORE": str(store),
        "MLFLOW_TRACKING_URI": tracking,
        "MODELOPS_INFERENCE_LOGS": f"{logs}/{{env}}",
        "MODELOPS_PROMETHEUS_URL": url,
    }

    # The job commits as the identity it configures, as on a runner: not the tests' (act passes
    # its own environment to host-mode steps).
    for who in ("AUTHOR", "COMMITTER"):
        for what in ("NAME", "EMAIL", "DATE"):
            monkeypatch.delenv(f"GIT_{who}_{what}", raising=False)
    first = forge.run_workflow(WORKFLOW, "schedule", {}, variables=variables, timeout=600).check()

    # Both envs analysed, on the counters of that Prometheus; the analyses are the job's artifact
    # and summary.
    analyses = {
        e: json.loads((first.artifacts / "canary-analysis" / e / f"{MODEL}.json").read_text())
        for e in ("staging", "production")
    }
    assert {e: a["decision"] for e, a in analyses.items()} == {"staging": "abort", "production": "promote"}
    assert checks(analyses["staging"]) == {"errors": "pass", "slow": "abort", "online_error": "wait"}
    assert checks(analyses["production"]) == {"errors": "pass", "slow": "pass", "online_error": "pass"}
    assert all(a["evidence"]["counters"] == f"Prometheus at {url}" for a in analyses.values())
    report = (first.artifacts / "canary-analysis" / "staging" / f"{MODEL}.md").read_text()
    assert report.strip().splitlines()[0] in first.log  # the job summary

    # staging: aborted by one bot commit on main that puts the file back as it was before the canary.
    assert forge.origin_log()[0] == f"abort(staging): {MODEL} back to {main['version']} only"
    assert forge.git("rev-parse", "main~1", cwd=forge.origin) == top
    assert forge.git("log", "-1", "--format=%an", "main", cwd=forge.origin) == "github-actions[bot]"
    assert (
        forge.git("diff", "--name-only", top, "main", cwd=forge.origin) == f"gitops/envs/staging/{MODEL}.yaml"
    )
    assert patch(forge, "staging") == before_canary["staging"]
    abort = trailers(forge, "main")
    assert (abort["Decision"], abort["Analysed-Hash"], abort["Env"]) == ("abort", bad["hash"], "staging")
    assert report.strip() in forge.git("log", "-1", "--format=%B", "main", cwd=forge.origin)

    # production: one PR whose one commit is `promote --finish`, the analysis as its body; main
    # untouched.
    branch = f"canary/production/{MODEL}"
    [pr] = forge.gh_state["prs"]
    assert (pr["headRefName"], pr["baseRefName"], pr["state"]) == (branch, "main", "OPEN")
    production_report = (first.artifacts / "canary-analysis" / "production" / f"{MODEL}.md").read_text()
    assert pr["body"] == production_report.strip()
    assert patch(forge, "production") == patch(forge, "production", top)  # still main + canary
    assert forge.git("rev-parse", f"{branch}~1", cwd=forge.origin) == forge.origin_sha()  # on the abort
    assert trailers(forge, branch)["Decision"] == "promote"
    [create] = [c for c in first.gh_calls if c["argv"][:2] == ["pr", "create"]]
    assert create["tokens"]["GH_TOKEN"]
    # The PR's commit is `promote --finish` made where it starts: the same command here, same tree.
    forge.git("pull", "-q", "--ff-only", "origin", "main")
    finish = subprocess.run(
        ["modelops", "promote", MODEL, "--env", "production", "--finish"],
        cwd=forge.work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert finish.returncode == 0, finish.stdout + finish.stderr
    assert forge.git("rev-parse", "HEAD^{tree}") == forge.git(
        "rev-parse", f"{branch}^{{tree}}", cwd=forge.origin
    )
    subject = forge.git("log", "-1", "--format=%s")
    assert forge.git("log", "-1", "--format=%s", branch, cwd=forge.origin) == subject
    finished = patch(forge, "production", branch)
    assert good["hash"] in finished and main["hash"] not in finished and "# --- canary" not in finished

    # (Running conclude again on the same analyses commits and opens nothing more: see
    # tests/integration/test_conclude.py, on real git without act's minute per run.)
    print(f"timings: logs, backfill and Prometheus {evidence:.1f}s, canary.yml {first.duration:.1f}s")


def assert_refused_before_anything(result: ActResult, forge: Forge, message: str) -> None:
    assert result.returncode != 0
    assert message in result.log, result
    assert "modelops canaries" not in result.log and "Conclude each analysis" not in result.log
    assert not result.calls and forge.gh_state["prs"] == []
    assert forge.origin_log() == ["initial import"]


@pytest.mark.parametrize("model", ["Bad Name", "x; rm -rf /"])
def test_bad_model_input_is_refused_before_anything_runs(forge: Forge, model: str) -> None:
    result = forge.run_workflow(WORKFLOW, "workflow_dispatch", dispatch(model=model), timeout=120)
    assert_refused_before_anything(
        result, forge, f"model must be a model name of params.yaml (e.g. my-model), not '{model}'"
    )


def test_a_manual_run_off_the_default_branch_is_refused(forge: Forge) -> None:
    """Concluding commits to the checked-out branch: only the one Argo CD syncs will do."""
    result = forge.run_workflow(
        WORKFLOW, "workflow_dispatch", dispatch(ref="refs/heads/feature"), timeout=120
    )
    assert_refused_before_anything(
        result, forge, "canary.yml concludes into what main deploys: run it on main, not refs/heads/feature"
    )
