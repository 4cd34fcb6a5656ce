"""rollback.yml under act: a dispatch opens one revert pull request (DESIGN invariant 4).

No training here: a packaged model is only a directory with an MLmodel file to `modelops promote`
(it hashes and publishes it), so two tiny stand-in packages make two real promotion commits.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modelops.runtime.forge import Forge, tool_env
from tests.gitops_models import add_manifests

pytestmark = pytest.mark.slow

MODEL = "credit-hgb"
OTHER = "hpc-forest"  # credit-hgb's manifests renamed, unless it ships its own
WORKFLOW = ".github/workflows/rollback.yml"
STAGING = f"gitops/envs/staging/{MODEL}.yaml"


def promote(forge: Forge, env: dict[str, str], marker: str, name: str = MODEL) -> str:
    """Package a tiny stand-in model (its content differs by `marker`), promote it, push main."""
    model = forge.work / f"models/{name}/model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "MLmodel").write_text(f"flavors: {{}}\nmarker: {marker}\n")
    proc = subprocess.run(
        ["modelops", "promote", name, "--env", "staging", "--push"],
        cwd=forge.work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return forge.head()


def test_dispatch_opens_a_revert_pr_that_restores_the_previous_manifest(tmp_path: Path) -> None:
    forge = Forge.from_project(tmp_path / "forge")
    store, tracking = tmp_path / "artifacts", f"sqlite:///{tmp_path}/mlflow.db"
    env = tool_env(tracking, store)
    first = promote(forge, env, "one")
    previous = forge.git("show", f"{first}:{STAGING}")
    second = promote(forge, env, "two")
    assert forge.git("show", f"{second}:{STAGING}") != previous

    event = {"inputs": {"env": "staging", "version": ""}, "ref": "refs/heads/main"}
    result = forge.run_workflow(
        WORKFLOW,
        "workflow_dispatch",
        event,
        variables={"MODELOPS_ARTIFACT_STORE": str(store), "MLFLOW_TRACKING_URI": tracking},
        timeout=240,
    ).check()

    # One PR from rollback/staging into main, opened with a token from env:.
    [pr] = forge.gh_state["prs"]
    assert (pr["headRefName"], pr["baseRefName"], pr["state"]) == ("rollback/staging", "main", "OPEN")
    [create] = [c for c in result.gh_calls if c["argv"][:2] == ["pr", "create"]]
    assert create["tokens"]["GH_TOKEN"]
    # main is untouched; the branch is main plus one revert commit of the latest promotion.
    assert forge.origin_sha() == second
    assert forge.git("rev-parse", "rollback/staging~1", cwd=forge.origin) == second
    assert forge.git("show", "--format=", "--name-only", "rollback/staging", cwd=forge.origin) == STAGING
    # Applying the branch brings the previous manifest back byte for byte, and all of gitops/.
    assert forge.git("show", f"rollback/staging:{STAGING}", cwd=forge.origin) == previous
    assert forge.git("diff", first, "rollback/staging", "--", "gitops/", cwd=forge.origin) == ""


def test_a_model_input_reverts_that_models_promotion_and_leaves_the_other(tmp_path: Path) -> None:
    """Two models in staging: rolling back one restores its patch file; the other's stays as is."""
    forge = Forge.from_project(tmp_path / "forge")
    if add_manifests(forge.work, OTHER):
        forge.commit(f"gitops: manifests for {OTHER}")
        forge.push("main")
    store, tracking = tmp_path / "artifacts", f"sqlite:///{tmp_path}/mlflow.db"
    env = tool_env(tracking, store)
    first = promote(forge, env, "one")
    promote(forge, env, "two")
    latest = promote(forge, env, "other", name=OTHER)  # the newest promotion is the other model's
    other_patch = forge.git("show", f"{latest}:gitops/envs/staging/{OTHER}.yaml")

    event = {"inputs": {"env": "staging", "model": MODEL, "version": "1"}, "ref": "refs/heads/main"}
    variables = {"MODELOPS_ARTIFACT_STORE": str(store), "MLFLOW_TRACKING_URI": tracking}
    forge.run_workflow(WORKFLOW, "workflow_dispatch", event, variables=variables, timeout=240).check()

    branch = f"rollback/staging/{MODEL}"
    [pr] = forge.gh_state["prs"]
    assert pr["headRefName"] == branch and f"restore {MODEL} v1" in pr["title"]
    assert forge.git("show", "--format=", "--name-only", branch, cwd=forge.origin) == STAGING
    assert forge.git("show", f"{branch}:{STAGING}", cwd=forge.origin) == forge.git(
        "show", f"{first}:{STAGING}"
    )
    assert forge.git("show", f"{branch}:gitops/envs/staging/{OTHER}.yaml", cwd=forge.origin) == other_patch


@pytest.mark.parametrize("model", ["Bad Name", "x; rm -rf /"])
def test_bad_model_input_is_refused_before_anything_runs(forge: Forge, model: str) -> None:
    event = {"inputs": {"env": "staging", "model": model, "version": ""}, "ref": "refs/heads/main"}
    result = forge.run_workflow(WORKFLOW, "workflow_dispatch", event, timeout=120)
    assert result.returncode != 0
    assert f"model must be a model name of params.yaml (e.g. my-model), not '{model}'" in result.log
    assert not result.calls and forge.gh_state["prs"] == []


@pytest.mark.parametrize("version", ["latest", "1; rm -rf /", "-1"])
def test_bad_version_input_is_refused_before_anything_runs(forge: Forge, version: str) -> None:
    event = {"inputs": {"env": "staging", "version": version}, "ref": "refs/heads/main"}
    result = forge.run_workflow(WORKFLOW, "workflow_dispatch", event, timeout=120)
    assert result.returncode != 0
    assert f"version must be a registered version number (e.g. 3), not '{version}'" in result.log
    assert not result.calls and forge.gh_state["prs"] == []
