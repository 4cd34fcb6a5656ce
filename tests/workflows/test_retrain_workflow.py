"""monitor.yml and retrain.yml under act: drift, or the calendar, opens one retraining pull request
per dataset.

One forge per module: main trains its models once for real (few boosting rounds), pushes its DVC
outputs to a tmp remote its committed `.dvc/config` names, and promotes credit-hgb to production,
so the monitor job finds the deployed model's reference in the tmp artifact store. Inference logs
are written as the server writes them (tests/inference_log.py) from held-out rows scored by that
real model: as they are (clean), and with income x 1.5 (drifted). The team's new export of the
credit dataset, its snapshot of record, is main's data plus 300 applications with that higher
income; `MODELOPS_DATA_SNAPSHOT` names the exports folder with `{dataset}` in it.

Each test starts with no open pull request. The first also starts with no retraining branch; the
second keeps the branch the first left, which saves it a second full training of the same data
(the branch already proposes it on this main, so it is reused; the first test asserts the full
reproduction). Drift without new data is checked statically here and by exit code in
tests/integration/test_retrain.py: one more act run was not worth its 30 seconds.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelops.config import load_params
from modelops.pipeline import dataset
from modelops.runtime.forge import DVC_CONFIG, PROJECT_ROOT, ActResult, Forge, tool_env
from tests import inference_log

pytestmark = pytest.mark.slow

MODEL, DATASET = "credit-hgb", "credit"
OTHERS = ("hpc-forest", "concrete-hgb")  # other datasets' models: a credit proposal leaves them be
MONITOR = ".github/workflows/monitor.yml"
RETRAIN = ".github/workflows/retrain.yml"
BRANCH = f"retrain/{DATASET}"
RAW = f"data/{DATASET}/raw.csv"
ROWS = 300  # logged rows per window: 3x monitor.min_rows
NEW_ROWS = 300
# Small enough to train in seconds; the retraining runs reproduce with the same params.
QUICK = {"max_iter": "30", "n_estimators": "10", "importance_repeats": "1", "latency_repeats": "2"}


@dataclass(frozen=True)
class Site:
    """A forge whose main is trained and deployed to production, and the files its runs read."""

    forge: Forge
    store: Path
    tracking_uri: str
    clean_logs: Path
    drifted_logs: Path
    exports: Path
    main_md5: str
    dvc_remote: Path

    def variables(self, logs: Path | None = None, snapshot: bool = True) -> dict[str, str]:
        found = {"MODELOPS_ARTIFACT_STORE": str(self.store), "MLFLOW_TRACKING_URI": self.tracking_uri}
        found |= {"MODELOPS_INFERENCE_LOGS": str(logs)} if logs else {}
        return found | ({"MODELOPS_DATA_SNAPSHOT": str(self.exports / "{dataset}.csv")} if snapshot else {})

    @property
    def snapshot(self) -> Path:
        """The credit dataset's new export."""
        return self.exports / f"{DATASET}.csv"


def _run(*args: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip()


def lock_md5(text: str) -> str:
    """The credit raw data's md5 in a dvc.lock."""
    [out] = [o for o in yaml.safe_load(text)["stages"][f"ingest@{DATASET}"]["outs"] if o["path"] == RAW]
    return out["md5"]


def write_logs(work: Path, directory: Path, shift: float) -> None:
    """ROWS held-out rows scored by main's real model, logged over the last few hours."""
    from modelops_serving.integrity import tree_hash

    ds = load_params(work / "params.yaml").dataset_of(MODEL)
    pipeline = pickle.loads((work / f"models/{MODEL}/pipeline.pkl").read_bytes())
    x = dataset.to_features(ds, pd.read_parquet(work / ds.test_file)).iloc[:ROWS]
    x = x.assign(income=x.income * shift).reset_index(drop=True)
    proba = pipeline.predict_proba(x)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    content_hash = tree_hash(work / f"models/{MODEL}/model")
    inference_log.write(directory, inference_log.for_model(ds, x, proba, content_hash, MODEL, start=start))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """Train main once, push its outputs, promote it to production; write logs and the new export."""
    root = tmp_path_factory.mktemp("retrain")
    forge = Forge.from_project(root / "forge")
    store, tracking_uri = root / "artifacts", f"sqlite:///{root}/mlflow.db"
    env = tool_env(tracking_uri, store)
    forge.write(".dvc/config", DVC_CONFIG.format(remote=root / "dvc-remote"))
    params = (forge.work / "params.yaml").read_text()
    for key, value in QUICK.items():
        params, n = re.subn(rf"^(\s+{key}: )\S+", rf"\g<1>{value}", params, flags=re.MULTILINE)
        assert n >= 1, f"params.yaml: expected a `{key}:` line"
    forge.write("params.yaml", params)
    # Every stage in one process, then DVC records the outputs: the same dvc.lock as `dvc repro`
    # (the pipeline is reproducible), without six process start-ups; the jobs use `dvc repro`.
    _run("modelops", "run", cwd=forge.work, env=env)
    _run("dvc", "commit", "--force", "--quiet", cwd=forge.work, env=env)
    assert "up to date" in _run("dvc", "status", cwd=forge.work, env=env)
    _run("dvc", "push", cwd=forge.work, env=env)
    forge.commit("Train the models quickly")
    _run("modelops", "promote", MODEL, "--env", "production", cwd=forge.work, env=env)
    assert forge.git("status", "--porcelain") == ""
    forge.push("main")

    write_logs(forge.work, root / "logs-clean", shift=1.0)
    write_logs(forge.work, root / "logs-drifted", shift=1.5)
    raw = pd.read_csv(forge.work / RAW)
    new = raw.sample(NEW_ROWS, random_state=7).assign(income=lambda f: (f.income * 1.5).round())
    new["id"] = raw["id"].max() + 1 + pd.RangeIndex(NEW_ROWS)
    exports = root / "exports"
    exports.mkdir()
    pd.concat([raw, new]).to_csv(exports / f"{DATASET}.csv", index=False, lineterminator="\n")
    main_md5 = lock_md5((forge.work / "dvc.lock").read_text())
    return Site(
        forge,
        store,
        tracking_uri,
        root / "logs-clean",
        root / "logs-drifted",
        exports,
        main_md5,
        root / "dvc-remote",
    )


def delete_branch(forge: Forge) -> None:
    if on_origin(forge):
        forge.git("push", "-q", "origin", "--delete", BRANCH)


@pytest.fixture
def fresh(site: Site) -> Site:
    """The site with no pull request."""
    forge = site.forge
    state = forge.gh_state
    state["prs"], state["next_number"] = [], 1
    (forge.state / "gh.json").write_text(json.dumps(state, indent=2))
    forge.checkout("main")
    return site


def dispatch(forge: Forge, inputs: dict[str, str] | None = None) -> dict:
    return {"ref": "refs/heads/main", "inputs": inputs or {}, "repository": forge.push_event()["repository"]}


def pr_commands(result: ActResult) -> list[list[str]]:
    return [c["argv"][:2] for c in result.gh_calls if c["argv"][0] == "pr"]


def on_origin(forge: Forge, branch: str = BRANCH) -> str:
    """origin's commit for `branch`, "" when there is none."""
    return forge.git("ls-remote", "--heads", str(forge.origin), branch).split("\t")[0]


def step_outcomes(result: ActResult) -> dict[str, str]:
    """act's `✅ Success - Main <step>` / `❌ Failure - Main <step>` lines, step name -> outcome."""
    found = re.findall(r"(Success|Failure) - Main (.+?)(?: \[[\d.]+m?s\])?$", result.log, re.MULTILINE)
    return {name.strip(): outcome for outcome, name in found}


def file_md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- static: what act cannot show ------------------------------------------------------


def test_the_workflows_are_scheduled_least_privilege_and_share_one_queue() -> None:
    for name in (MONITOR, RETRAIN):
        workflow = yaml.safe_load((PROJECT_ROOT / name).read_text())
        on = workflow.get("on", workflow.get(True))
        assert set(on) == {"schedule", "workflow_dispatch"}, name
        assert workflow["permissions"] == {}
        propose = workflow["jobs"]["propose"]
        assert propose["permissions"] == {"contents": "write", "pull-requests": "write"}
        assert propose["concurrency"] == {"group": "retrain-data", "cancel-in-progress": False}
        # The token reaches the one step that pushes and opens the PR, through env: only.
        secret_steps = [s["name"] for s in propose["steps"] if "secrets." in json.dumps(s)]
        assert secret_steps == [propose["steps"][-1]["name"]]
        assert "secrets." not in propose["steps"][-1]["run"]
    jobs = yaml.safe_load((PROJECT_ROOT / MONITOR).read_text())["jobs"]
    assert jobs["monitor"]["permissions"] == {"contents": "read"}
    assert "secrets." not in json.dumps(jobs["monitor"])
    # Drift with no newer data than main fails the run (exit 18, tested in tests/integration/test_retrain.py):
    # retraining on the same data cannot cure drift, so a person must act.
    propose = jobs["propose"]["steps"][-1]["run"]
    assert "--require-new-data" in propose
    # The datasets to retrain are those of the models the report found drifting.
    assert "--drifted monitor/monitor.json" in propose and "--branch" not in propose
    assert jobs["propose"]["if"] == "needs.monitor.outputs.status == 'drift'"
    # No hard-coded data path in either workflow: the dataset's declaration says where its data is.
    for name in (MONITOR, RETRAIN):
        text = (PROJECT_ROOT / name).read_text()
        assert "data/raw" not in text and "snapshot.csv" not in text and "retrain/data" not in text


# --- under act -------------------------------------------------------------------------


def test_drift_opens_one_retraining_pr_and_a_second_run_updates_it(fresh: Site) -> None:
    site, forge = fresh, fresh.forge
    delete_branch(forge)
    main = forge.origin_sha()

    # Clean traffic: the monitor passes, nothing is proposed.
    clean = forge.run_workflow(
        MONITOR, "schedule", {}, variables=site.variables(site.clean_logs), timeout=300
    ).check()
    assert f"{MODEL} in production: no drift in {ROWS} rows" in clean.log
    assert clean.gh_calls == [] and not on_origin(forge)
    assert "Open or update the retraining PR" not in step_outcomes(clean)

    # Drifted traffic: one PR from retrain/credit, with the new snapshot and the monitor report.
    first = forge.run_workflow(
        MONITOR, "schedule", {}, variables=site.variables(site.drifted_logs), timeout=420
    ).check()
    assert f"{MODEL} in production: drift detected (v1: " in first.log
    assert pr_commands(first) == [["pr", "list"], ["pr", "create"]]
    [pr] = forge.gh_state["prs"]
    new_md5 = file_md5(site.snapshot)  # ingest copies the export byte for byte
    assert (pr["headRefName"], pr["baseRefName"], pr["state"]) == (BRANCH, "main", "OPEN")
    assert pr["title"] == f"retrain({MODEL}): new {DATASET} snapshot {new_md5[:8]}"
    body = pr["body"]
    assert f"## ⚠️ {MODEL} in production: drift detected" in body
    assert re.search(r"\| income \| .* \| \*\*yes\*\* \|", body), body
    assert f"| rows added (new ids) |  | {NEW_ROWS:,} |" in body
    assert "| rows removed |  | 0 |" in body and "![" not in body  # plots stay in the artifact
    [create] = [c for c in first.gh_calls if c["argv"][:2] == ["pr", "create"]]
    assert create["tokens"]["GH_TOKEN"]

    # The branch is one commit on main: the snapshot (DVC-tracked), the dataset's declaration naming
    # it as its source, and a dvc.lock reproduced on it; the outputs it names are in the DVC remote
    # for model-pr.yml. The other datasets' models are untouched.
    head = forge.origin_sha(BRANCH)
    assert forge.git("rev-parse", f"{head}^", cwd=forge.origin) == main
    lock = forge.git("show", f"{head}:dvc.lock", cwd=forge.origin)
    assert lock_md5(lock) == new_md5 != site.main_md5
    declared = yaml.safe_load(forge.git("show", f"{head}:data/{DATASET}/dataset.yaml", cwd=forge.origin))
    assert declared["source"] == {"kind": "file", "path": f"data/sources/{DATASET}.csv"}
    tracked = yaml.safe_load(forge.git("show", f"{head}:data/sources/{DATASET}.csv.dvc", cwd=forge.origin))
    assert tracked["outs"][0]["md5"] == new_md5
    changed = forge.git("diff", "--name-only", main, head, cwd=forge.origin).splitlines()
    assert {
        "dvc.lock",
        f"data/{DATASET}/dataset.yaml",
        f"data/sources/{DATASET}.csv.dvc",
        f"models/{MODEL}/metrics.json",
    } <= set(changed)
    assert "params.yaml" not in changed
    assert not [p for p in changed if p.startswith(tuple(f"models/{m}/" for m in OTHERS))]
    old_lock = yaml.safe_load(forge.git("show", f"{main}:dvc.lock", cwd=forge.origin))["stages"]
    for other in OTHERS:
        assert yaml.safe_load(lock)["stages"][f"package@{other}"] == old_lock[f"package@{other}"]
    message = forge.git("log", "-1", "--format=%B", head, cwd=forge.origin)
    assert f"Dataset: {DATASET}\nData-Md5: {new_md5}" in message
    assert "\nModel: " not in message  # promote.yml must run on merge
    [model_dir] = [
        o for o in yaml.safe_load(lock)["stages"][f"package@{MODEL}"]["outs"] if o["path"].endswith("/model")
    ]
    digest = model_dir["md5"]
    assert (site.dvc_remote / "files/md5" / digest[:2] / digest[2:]).exists(), "the new model was not pushed"

    # Drift again (on demand): the same PR is updated, not duplicated; the branch already proposes
    # this data on this main, so it is not pushed again (no needless Model PR re-run).
    second = forge.run_workflow(
        MONITOR,
        "workflow_dispatch",
        dispatch(forge, {"env": "production", "window": "24h"}),
        variables=site.variables(site.drifted_logs),
        timeout=420,
    ).check()
    assert pr_commands(second) == [["pr", "list"], ["pr", "edit"]]
    assert len(forge.gh_state["prs"]) == 1 and forge.gh_state["prs"][0]["state"] == "OPEN"
    assert forge.origin_sha(BRANCH) == head and forge.origin_sha() == main
    print(f"timings: clean {clean.duration:.1f}s, drift {first.duration:.1f}s, again {second.duration:.1f}s")


def test_retrain_proposes_a_new_snapshot_and_nothing_when_the_data_is_unchanged(fresh: Site) -> None:
    site, forge = fresh, fresh.forge
    branch = on_origin(forge)

    # No snapshot configured: every dataset's declared source is re-ingested, it is what main has:
    # no PR, green.
    same = forge.run_workflow(RETRAIN, "schedule", {}, variables=site.variables(snapshot=False)).check()
    for name in ("credit", "hpc", "concrete"):
        assert f"{name}: no new data: data/{name}/raw.csv" in same.log
    assert same.gh_calls == [] and on_origin(forge) == branch

    # The credit export changed: one PR for that dataset, whose reason is the schedule.
    new = forge.run_workflow(
        RETRAIN,
        "workflow_dispatch",
        dispatch(forge, {"dataset": DATASET}),
        variables=site.variables(),
        timeout=420,
    ).check()
    assert pr_commands(new) == [["pr", "list"], ["pr", "create"]]
    [pr] = forge.gh_state["prs"]
    assert pr["headRefName"] == BRANCH and pr["title"].endswith(file_md5(site.snapshot)[:8])
    assert "Scheduled data refresh" in pr["body"]
    assert lock_md5(forge.git("show", f"{BRANCH}:dvc.lock", cwd=forge.origin)) == file_md5(site.snapshot)
    print(f"timings: unchanged {same.duration:.1f}s, new snapshot {new.duration:.1f}s")
