"""Promotion on a KServe env (params.yaml `platforms: {staging-kserve: kserve}`): the same verbs and
guarantees as on Seldon (one file per promotion, validation before commit, byte-identical reverts,
a refusal changes nothing), on real git, MLflow and a local store. In process, to stay fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelops.delivery import manifests
from tests.conftest import run
from tests.integration.test_promote import deploy, gitops_bytes, head  # noqa: F401 (fixture)

ENV = "staging-kserve"
PATCH = f"gitops/envs/{ENV}/credit-hgb.yaml"


def isvc(work: Path) -> dict:
    """The rendered credit-hgb InferenceService of the env, after checking every object is valid."""
    objects = manifests.render(ENV, work / "gitops")
    assert manifests.problems(objects, work / "gitops", ENV) == []
    (found,) = [
        o for o in objects if o["kind"] == "InferenceService" and o["metadata"]["name"] == "credit-hgb"
    ]
    return found


def env_of(obj: dict) -> dict[str, str]:
    (box,) = obj["spec"]["predictor"]["containers"]
    return {e["name"]: e.get("value") for e in box["env"]}


@pytest.fixture
def here(deploy: dict, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    monkeypatch.chdir(deploy["work"])
    for key, value in deploy["env"].items():
        monkeypatch.setenv(key, value)
    return deploy["work"]


def test_promote_canary_finish_abort_rollback_on_kserve(here: Path) -> None:
    from modelops.delivery.platforms import PlatformError
    from modelops.delivery.promote import history, promote, rollback, status

    work = here
    # the report's deploy preview is this dry run: the exact diff, nothing written
    files = gitops_bytes(work)
    preview = promote("credit-hgb", ENV, dry_run=True)
    assert "-  value: unpromoted://credit-hgb/" in preview.diff and "+  value: file://" in preview.diff
    assert "+    modelops.dev/storage-uri: file://" in preview.diff and gitops_bytes(work) == files
    first = promote("credit-hgb", ENV, source_pr="7")
    assert first.commit and "promote(staging-kserve): credit-hgb v1" in first.message
    assert run(["git", "show", "--name-only", "--format=", "HEAD"], work).stdout.split() == [PATCH]
    obj = isvc(work)
    v1 = first.release
    assert env_of(obj)["STORAGE_URI"] == v1.uri and env_of(obj)["MODELOPS_EXPECTED_HASH"] == v1.content_hash
    assert obj["metadata"]["annotations"]["modelops.dev/storage-uri"] == v1.uri
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    promoted = gitops_bytes(work)

    # A second model (other bytes: another hash) as a canary through KServe's own field.
    (work / "models/credit-hgb/model/NOTES.txt").write_text("candidate\n")
    canary = promote("credit-hgb", ENV, mode="canary", canary=20)
    v2 = canary.release
    assert v2.content_hash != v1.content_hash and v2.version == "v2"
    obj = isvc(work)
    predictor = obj["spec"]["predictor"]
    # the spec is the candidate at 20%; main (the previous rolled-out revision) is in the annotations
    assert predictor["canaryTrafficPercent"] == 20
    assert env_of(obj)["STORAGE_URI"] == v2.uri and predictor["annotations"]["modelops.dev/version"] == "v2"
    assert obj["metadata"]["annotations"]["modelops.dev/version"] == "v1"
    assert obj["metadata"]["annotations"]["modelops.dev/storage-uri"] == v1.uri
    with_canary = gitops_bytes(work)

    # KServe cannot mirror: a shadow is refused before anything is published or written.
    before = head(work)
    with pytest.raises(PlatformError, match=r"staging-kserve.*kserve.*cannot mirror.*--canary 1"):
        promote("credit-hgb", ENV, mode="shadow")
    assert head(work) == before and gitops_bytes(work) == with_canary

    promote("credit-hgb", ENV, mode="abort")
    assert gitops_bytes(work) == promoted  # byte for byte, as before the canary
    promote("credit-hgb", ENV, mode="canary", canary=20)  # again: the same model (a newer git-commit record)
    again = isvc(work)
    assert env_of(again) == env_of(obj) and again["spec"]["predictor"]["canaryTrafficPercent"] == 20
    with_canary = gitops_bytes(work)
    finished = promote("credit-hgb", ENV, mode="finish")
    assert "canary finished" in finished.message
    obj = isvc(work)
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert (
        obj["metadata"]["annotations"]["modelops.dev/version"] == "v2"
        and env_of(obj)["STORAGE_URI"] == v2.uri
    )

    finished_bytes = gitops_bytes(work)
    rows = {r["env"]: r for r in status(["credit-hgb"])}
    assert rows[ENV]["git"] == "v2" and rows[ENV]["mlflow_alias"] == "none"  # the alias follows git later
    assert [e.version for e in history(ENV)][:2] == ["v2", "v2"]
    rollback(ENV)  # the revert of the finish: the canary is back, byte for byte
    assert gitops_bytes(work) == with_canary
    rollback(ENV)  # ... and of the canary: v1 alone again
    assert gitops_bytes(work) == promoted
    rollback(ENV, to="v2")  # restore the patch that deployed v2 (the finish)
    assert gitops_bytes(work) == finished_bytes
    rollback(ENV, to="v1")
    assert gitops_bytes(work) == promoted
    assert run(["git", "status", "--porcelain", "--untracked-files=no"], work).stdout == ""


def test_unknown_platform_is_a_clear_error_and_writes_nothing(here: Path) -> None:
    from modelops.delivery.promote import promote
    from modelops.errors import ParamsError

    work = here
    params = work / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    raw["platforms"] = {ENV: "kubeflow"}
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    run(["git", "commit", "-qam", "an unknown platform"], work)
    before, files = head(work), gitops_bytes(work)
    with pytest.raises(ParamsError) as refused:
        promote("credit-hgb", ENV)
    assert "params.yaml" in str(
        refused.value
    ) and f"platforms.{ENV}: Input should be 'seldon' or 'kserve'" in str(refused.value)
    assert head(work) == before and gitops_bytes(work) == files
