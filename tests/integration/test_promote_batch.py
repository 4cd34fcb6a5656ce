"""A promotion moves online and batch together: `modelops promote` writes main's release into the
env's batch job in the same commit, `git revert` restores both files byte for byte, a canary or a
shadow leaves the batch job alone, and an env without a batch job is untouched (real git, DVC
outputs, MLflow on SQLite, a local artifact store)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelops.delivery import manifests
from modelops.delivery.promote import Extra, Release, promote, read_state, render_state
from tests.conftest import run
from tests.integration.test_promote import deploy, gitops_bytes, head, modelops  # noqa: F401

MODEL = "credit-hgb"
STAGING = f"gitops/envs/staging/{MODEL}.yaml"
BATCH = f"gitops/envs/staging/batch/{MODEL}.yaml"
PRODUCTION = f"gitops/envs/production/{MODEL}.yaml"


@pytest.fixture
def batch(deploy: dict) -> dict:  # noqa: F811
    """The deploy clone with staging opted into credit-hgb's batch job (committed, unpromoted)."""
    work = deploy["work"]
    modelops(
        deploy,
        "new",
        "batch",
        MODEL,
        "--env",
        "staging",
        "--input",
        "s3://in/{date}.parquet",
        "--output",
        "s3://out/{date}/part-{shard}.parquet",
        "--shards",
        "2",
    )
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "staging runs credit-hgb's batch job"], work)
    return deploy


def changed(work: Path, since: str) -> list[str]:
    return sorted(run(["git", "diff", "--name-only", since, "HEAD"], work).stdout.split())


def rendered_release(work: Path, env: str = "staging") -> tuple[dict, dict]:
    """(the CronJob's container env, the main predictor's release) as rendered."""
    objects = manifests.render(env, work / "gitops")
    (job,) = [o for o in objects if o["kind"] == "CronJob"]
    (sdep,) = [o for o in objects if o["kind"] == "SeldonDeployment" and o["metadata"]["name"] == MODEL]
    (box,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    main = sdep["spec"]["predictors"][0]
    served = manifests.container_env(main)
    return {e["name"]: e["value"] for e in box["env"]}, {
        "MODELOPS_MODEL_NAME": MODEL,
        "MODELOPS_MODEL_URI": main["graph"]["modelUri"],
        "MODELOPS_MODEL_VERSION": served["MODELOPS_MODEL_VERSION"],
        "MODELOPS_EXPECTED_HASH": served["MODELOPS_EXPECTED_HASH"],
        # batch verifies the signatures serving verifies
        **{k: v for k, v in served.items() if k.startswith("MODELOPS_SIGNER_")},
    }


def test_promote_edits_both_in_one_commit_and_revert_restores_both(batch: dict) -> None:
    work = batch["work"]
    before, start = gitops_bytes(work), head(work)
    dry = modelops(batch, "promote", MODEL, "--env", "staging", "--dry-run").stdout
    assert f"+++ b/{STAGING}" in dry and f"+++ b/{BATCH}" in dry and "+  suspend: false" in dry
    assert head(work) == start and gitops_bytes(work) == before

    out = modelops(batch, "promote", MODEL, "--env", "staging").stdout
    assert "promote(staging): credit-hgb v1" in out
    assert run(["git", "rev-list", "--count", f"{start}..HEAD"], work).stdout.strip() == "1"
    assert changed(work, start) == [BATCH, STAGING]
    job_env, main = rendered_release(work)
    assert job_env == main and main["MODELOPS_MODEL_VERSION"] == "v1"
    doc = yaml.safe_load((work / BATCH).read_text())
    assert doc["spec"]["suspend"] is False  # the first promotion starts the schedule

    run(["git", "revert", "--no-edit", "HEAD"], work)
    assert gitops_bytes(work) == before  # both files, byte for byte

    # an env without a batch job for the model: the promotion touches its patch file only
    start = head(work)
    modelops(batch, "promote", MODEL, "--env", "production")
    assert changed(work, start) == [PRODUCTION]


def test_canary_and_shadow_leave_the_batch_job_and_finish_moves_it(
    batch: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = batch["work"]
    modelops(batch, "promote", MODEL, "--env", "staging")
    promoted = gitops_bytes(work)
    for args in (["--canary", "25"], ["--shadow"], ["--abort"]):
        start = head(work)
        modelops(batch, "promote", MODEL, "--env", "staging", *args)
        assert changed(work, start) == [STAGING], args
        assert gitops_bytes(work)[BATCH] == promoted[BATCH]
    assert gitops_bytes(work) == promoted

    # A canary of other content (written as promote --canary would), then finished: batch follows.
    monkeypatch.chdir(work)
    for key, value in batch["env"].items():
        monkeypatch.setenv(key, value)
    main, _ = read_state(Path(STAGING))
    other = Release("v7", "7" * 64, f"file:///elsewhere/{MODEL}/{'7' * 64}/", "c7", "r7", "70")
    Path(STAGING).write_text(render_state(Path(STAGING), MODEL, main, [Extra("canary", other, 10)]))
    run(["git", "commit", "-qam", "canary(staging): credit-hgb v7 takes 10%"], work)
    canaried, start = gitops_bytes(work), head(work)
    assert canaried[BATCH] == promoted[BATCH]

    result = promote(MODEL, "staging", mode="finish")
    assert result.commit is not None and changed(work, start) == [BATCH, STAGING]
    job_env, served = rendered_release(work)
    assert job_env == served and served["MODELOPS_EXPECTED_HASH"] == "7" * 64
    run(["git", "revert", "--no-edit", "HEAD"], work)
    assert gitops_bytes(work) == canaried

    # `rollback --to` restores the model's patch of that version, and the batch job follows it
    promote(MODEL, "staging", mode="finish")
    modelops(batch, "rollback", "--env", "staging", "--model", MODEL, "--to", "v1")
    assert gitops_bytes(work)[BATCH] == promoted[BATCH]
    job_env, served = rendered_release(work)
    assert job_env == served and served["MODELOPS_MODEL_VERSION"] == "v1"
