"""`modelops sync --env ENV --batch [MODEL]`: an env's batch jobs, rendered at the tracked branch, run
here; what it refuses before any shard starts (real git, a real published model, the real CLI)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from modelops.delivery import manifests, publish
from modelops.delivery.signing import Signer
from modelops.runtime import jobs
from modelops.runtime.desired import SyncError
from modelops.workspace import PROJECT_ROOT
from tests.conftest import run

MODEL, ENV = "concrete-hgb", "production"  # the shipped example of a batch job
JOB = f"{MODEL}-batch"


@pytest.fixture
def site(tmp_path: Path, trained_repo: Path) -> dict:
    """A scratch repository holding the project's gitops/ on main, and an empty artifact store;
    models and raw data from the shared reproduced pipeline (a clean clone has no DVC outputs)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(PROJECT_ROOT / "gitops", repo / "gitops")
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "gitops"], repo)
    return {"repo": repo, "store": tmp_path / "store", "state": tmp_path / "state", "trained": trained_repo}


def promote(site: dict, model: str = MODEL, signed: bool = True) -> publish.Published:
    """Publish the work tree's packaged model (signed by the session's key unless `signed` is False)
    and write its release into both files, as promote does."""
    signer = Signer.from_env() if signed else None
    done = publish.publish(site["trained"] / "models" / model / "model", model, str(site["store"]), signer)
    for path in (
        site["repo"] / f"gitops/envs/{ENV}/{model}.yaml",
        site["repo"] / f"gitops/envs/{ENV}/batch/{model}.yaml",
    ):
        path.write_text(
            path.read_text()
            .replace(f"unpromoted://{model}/", done.uri)
            .replace('"' + "0" * 64 + '"', f'"{done.content_hash}"')
            .replace("modelops.dev/version: unpromoted", "modelops.dev/version: v1")
            .replace("value: unpromoted\n", "value: v1\n")
            .replace("suspend: true", "suspend: false")
        )
    run(["git", "commit", "-qam", f"promote({ENV}): {model} v1"], site["repo"])
    return done


def sync_batch(site: dict, *args: str) -> tuple[int, str]:
    proc = run(
        ["modelops", "sync", "--env", ENV, "--batch", *args, "--state-dir", str(site["state"])],
        site["repo"],
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout + proc.stderr


def test_jobs_are_read_from_the_rendered_cronjob() -> None:
    (job,) = jobs.select(manifests.render(ENV), ENV)
    assert (job.name, job.model, job.command, job.completions, job.parallelism) == (
        JOB,
        MODEL,
        ("modelops-batch",),
        4,
        4,
    )
    assert job.placeholder and job.suspended and job.deadline_s == 21600
    assert dict(job.env)["MODELOPS_MODEL_NAME"] == MODEL
    args = jobs.local_args(job, "in.csv", "out/part-{shard}.csv")
    assert (
        args[args.index("--input") + 1] == "in.csv"
        and args[args.index("--output") + 1] == "out/part-{shard}.csv"
    )
    assert args[args.index("--shards") + 1] == "4" and list(job.args) != args
    with pytest.raises(
        SyncError, match=r"--output 'out.csv': concrete-hgb-batch runs 4 shards: put \{shard\} in it"
    ):
        jobs.local_args(job, None, "out.csv")
    with pytest.raises(
        SyncError, match=r"gitops/envs/staging runs no batch job of concrete-hgb \(batch jobs: none\)"
    ):
        jobs.select(manifests.render("staging"), "staging", MODEL)


def test_an_env_without_batch_jobs_or_with_an_unpromoted_one_says_so(site: dict) -> None:
    code, out = sync_batch(site)
    assert code == SyncError.exit_code and f"{ENV}: no batch job to run: {JOB} not promoted yet" in out
    proc = run(
        ["modelops", "sync", "--env", "staging", "--batch", "--state-dir", str(site["state"])],
        site["repo"],
        check=False,
    )
    assert proc.returncode == SyncError.exit_code
    assert (
        "gitops/envs/staging runs no batch job; opt one in with `modelops new batch MODEL --env staging"
        in proc.stderr
    )
    code, out = sync_batch(site, "hpc-forest")
    assert code == SyncError.exit_code and f"runs no batch job of hpc-forest (batch jobs: {MODEL})" in out


def test_a_tampered_artifact_is_refused_before_any_shard_starts(site: dict) -> None:
    done = promote(site)
    stored = publish.storage.local_path(done.uri)
    victim = next(p for p in sorted(stored.rglob("*")) if p.is_file())
    os.chmod(victim, 0o644)
    victim.write_bytes(victim.read_bytes() + b"\0")
    code, out = sync_batch(site, MODEL, "--input", "in.csv", "--output", "out-{shard}.csv")
    assert code == SyncError.exit_code
    assert (
        f"{JOB}: {done.uri} hashes to " in out
        and f"but the manifest expects {done.content_hash}; not run" in out
    )
    assert not list(site["state"].glob(f"{ENV}/batch/*.log"))  # no shard started


def test_an_unsigned_model_is_refused_before_any_shard_starts(site: dict) -> None:
    done = promote(site, signed=False)
    code, out = sync_batch(site, MODEL, "--input", "in.csv", "--output", "out-{shard}.csv")
    assert code == SyncError.exit_code
    assert f"{JOB}: {done.uri} REFUSED: unsigned" in out and "; not run" in out
    assert not list(site["state"].glob(f"{ENV}/batch/*.log"))  # no shard started


def test_only_what_the_tracked_branch_says_runs(site: dict) -> None:
    """Like `sync`, the committed manifests count: an uncommitted promotion is not what runs."""
    promote(site)
    run(["git", "reset", "-q", "--soft", "HEAD~1"], site["repo"])  # the promotion, uncommitted
    code, out = sync_batch(site)
    assert code == SyncError.exit_code and "not promoted yet" in out


def test_overrides_name_one_job_and_go_with_batch(site: dict) -> None:
    code, out = sync_batch(site, MODEL, "--output", "out.csv")
    assert code == SyncError.exit_code  # unpromoted first, whatever the output
    promote(site)
    code, out = sync_batch(site, MODEL, "--output", "out.csv")
    assert code == SyncError.exit_code and r"put {shard} in it" in out
    proc = run(
        ["modelops", "sync", "--env", ENV, MODEL, "--state-dir", str(site["state"])],
        site["repo"],
        check=False,
    )
    assert (
        proc.returncode == SyncError.exit_code
        and "MODEL, --input and --output go with --batch" in proc.stderr
    )


RAW = Path("data") / "concrete" / "raw.csv"  # in the reproduced pipeline: site["trained"] / RAW


def test_every_shard_runs_the_engine_and_the_shards_cover_every_id_once(site: dict, tmp_path: Path) -> None:
    done = promote(site)
    out = tmp_path / "scores"
    source = str(site["trained"] / RAW)
    code, report = sync_batch(site, MODEL, "--input", source, "--output", f"{out}/part-{{shard}}.csv")
    assert code == 0, report
    for i in range(4):
        assert f"{JOB} shard {i}/4: exit 0 in " in report
    assert "suspended" not in report  # the promotion started the schedule
    ids: list[str] = []
    for i in range(4):
        manifest = json.loads((out / f"part-{i}.csv.success.json").read_text())
        assert manifest["shard"] == {"index": i, "count": 4}
        assert (manifest["model"]["content_hash"], manifest["model"]["version"]) == (done.content_hash, "v1")
        ids += pd.read_csv(out / f"part-{i}.csv", dtype=str)["id"].tolist()
    expected = pd.read_csv(site["trained"] / RAW, dtype=str)["id"].tolist()
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))  # each id exactly once


def test_bad_rows_follow_the_manifests_policy_and_a_failing_shard_fails_the_run(
    site: dict, tmp_path: Path
) -> None:
    promote(site)
    frame = pd.read_csv(site["trained"] / RAW)
    frame.loc[5, "cement"] = 1e6  # far above the declared maximum: bad input in one shard only
    bad_id = str(frame.loc[5, "id"])
    source = tmp_path / "bad.csv"
    frame.to_csv(source, index=False)
    # The shipped job says --on-bad reject: the row goes to its shard's rejects file, all exit 0.
    out = tmp_path / "rejected"
    code, report = sync_batch(site, MODEL, "--input", str(source), "--output", f"{out}/part-{{shard}}.csv")
    assert code == 0, report
    rejects = {p.name: pd.read_csv(p, dtype=str) for p in out.glob("*.rejects.csv")}
    assert [r["id"].tolist() for r in rejects.values() if len(r)] == [[bad_id]]
    # An env whose job fails on a bad row: that shard exits 3, the others finish, the run fails.
    patch = site["repo"] / f"gitops/envs/{ENV}/batch/{MODEL}.yaml"
    patch.write_text(patch.read_text().replace("                - --on-bad\n                - reject\n", ""))
    run(["git", "commit", "-qam", "fail on a bad row"], site["repo"])
    out = tmp_path / "failed"
    code, report = sync_batch(site, MODEL, "--input", str(source), "--output", f"{out}/part-{{shard}}.csv")
    assert code == jobs.BatchFailed.exit_code, report
    assert "1 shard(s) failed:" in report
    (failed,) = [i for i in range(4) if f"{JOB} shard {i}/4: exit 3 in " in report]
    assert f"id '{bad_id}'" in report and "cement" in report  # the engine's own words, from the log
    for i in set(range(4)) - {failed}:
        assert f"{JOB} shard {i}/4: exit 0 in " in report
        assert (out / f"part-{i}.csv.success.json").exists()
    assert not (out / f"part-{failed}.csv").exists()  # nothing half-written where the consumer reads
