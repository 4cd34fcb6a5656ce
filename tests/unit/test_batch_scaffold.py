"""`modelops new batch`: an env opts into a model's batch job; refused input writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelops.changeset import ScaffoldError
from modelops.cli import app
from modelops.delivery import batch_scaffold, batch_template, manifests, scaffold
from tests.unit.test_scaffold import repo, tree, yamllint  # noqa: F401  (the fixture and helpers)

IN = "s3://bucket/in/{date}.parquet"
OUT = "s3://bucket/out/{date}/part-{shard}.parquet"
HASH = "4" * 64


def cronjob(root: Path, env: str, model: str) -> dict:
    (job,) = [
        o
        for o in manifests.render(env, root / "gitops")
        if o["kind"] == "CronJob" and o["metadata"]["name"] == f"{model}-batch"
    ]
    return job


def container_env(job: dict) -> dict:
    (box,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in box["env"]}


def promote_text(path: Path, model: str, version: str = "v5") -> None:
    """The env's Seldon patch as promote leaves it (plain substitutions are enough here)."""
    path.write_text(
        path.read_text()
        .replace(f"unpromoted://{model}/", f"file:///store/{model}/{HASH}/")
        .replace('"' + "0" * 64 + '"', f'"{HASH}"')
        .replace("modelops.dev/version: unpromoted", f"modelops.dev/version: {version}")
        .replace("  value: unpromoted\n", f"  value: {version}\n")
    )


SIGNER_IDENTITY = "https://github.com/your-org/modelops/.github/workflows/promote.yml@refs/heads/main"


def test_new_batch_opts_an_env_in_with_the_release_it_serves(repo: Path) -> None:  # noqa: F811
    promote_text(repo / "gitops/envs/staging/credit-hgb.yaml", "credit-hgb")
    written = batch_scaffold.new_batch(
        "credit-hgb", "staging", input_url=IN, output_url=OUT, shards=3, on_bad="reject", root=repo
    )
    assert {str(p.relative_to(repo)) for p in written} == {
        "gitops/base/batch/credit-hgb/kustomization.yaml",
        "gitops/base/batch/credit-hgb/cronjob.yaml",
        "gitops/envs/staging/batch/credit-hgb.yaml",
        "gitops/envs/staging/kustomization.yaml",
    }
    yamllint(written)
    manifests.check_all(repo / "gitops")
    job = cronjob(repo, "staging", "credit-hgb")
    assert job["spec"]["suspend"] is False  # promoted: the schedule runs
    assert job["spec"]["jobTemplate"]["spec"]["completions"] == 3
    assert container_env(job) == {
        "MODELOPS_MODEL_NAME": "credit-hgb",
        "MODELOPS_MODEL_URI": f"file:///store/credit-hgb/{HASH}/",
        "MODELOPS_MODEL_VERSION": "v5",
        "MODELOPS_EXPECTED_HASH": HASH,
        # the env's signing Component patches the job as it patches the predictor
        "MODELOPS_SIGNER_IDENTITY": SIGNER_IDENTITY,
        "MODELOPS_SIGNER_ISSUER": "https://token.actions.githubusercontent.com",
    }
    (box,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert box["args"] == ["--input", IN, "--output", OUT, "--shards", "3", "--on-bad", "reject"]
    # production did not opt in: no CronJob there
    assert [o for o in manifests.render("production", repo / "gitops") if o["kind"] == "CronJob"] == [
        o for o in manifests.render("production", manifests.GITOPS) if o["kind"] == "CronJob"
    ]


def test_a_second_env_reuses_the_component_and_an_unpromoted_one_is_suspended(repo: Path) -> None:  # noqa: F811
    written = batch_scaffold.new_batch(
        "concrete-hgb", "staging", input_url="in.csv", output_url="out.csv", root=repo
    )
    # the shipped production opt-in already wrote the model's component
    assert {str(p.relative_to(repo)) for p in written} == {
        "gitops/envs/staging/batch/concrete-hgb.yaml",
        "gitops/envs/staging/kustomization.yaml",
    }
    job = cronjob(repo, "staging", "concrete-hgb")
    assert job["spec"]["suspend"] is True
    assert container_env(job)["MODELOPS_MODEL_URI"] == "unpromoted://concrete-hgb/"
    assert job["spec"]["jobTemplate"]["spec"]["completions"] == 1


def test_a_new_model_can_have_its_batch_job(repo: Path) -> None:  # noqa: F811
    scaffold.new_model("credit-rf", "credit", "random_forest", root=repo)
    batch_scaffold.new_batch("credit-rf", "production", input_url=IN, output_url=OUT, shards=2, root=repo)
    manifests.check_all(repo / "gitops")
    assert (repo / "gitops/base/batch/credit-rf/cronjob.yaml").read_text() == batch_template.cronjob(
        "credit-rf"
    )
    owners = (repo / ".github/CODEOWNERS").read_text()
    assert "/gitops/envs/*/batch/credit-rf.yaml @your-org/ml-team\n" in owners


@pytest.mark.parametrize(
    ("model", "env", "options", "message"),
    [
        ("credit-hgb", "qa", {}, r"unknown env 'qa' \(known: production, staging, staging-kserve\)"),
        ("nope", "staging", {}, r"no manifest for model 'nope' in env 'staging'.*modelops new model"),
        (
            "credit-hgb",
            "staging-kserve",
            {},
            r"staging-kserve runs on KServe; batch jobs are written for Seldon",
        ),
        (
            "credit-hgb",
            "staging",
            {"schedule": "every night"},
            r"--schedule 'every night': expected five cron",
        ),
        ("credit-hgb", "staging", {"shards": 0}, r"--shards 0: at least 1"),
        (
            "credit-hgb",
            "staging",
            {"shards": 2, "output_url": "out.csv"},
            r"with 2 shards .* put \{shard\} in it",
        ),
        ("credit-hgb", "staging", {"on_bad": "skip"}, r"--on-bad 'skip': one of fail, reject"),
        ("concrete-hgb", "production", {}, r"production already runs the batch job of concrete-hgb"),
    ],
)
def test_new_batch_refuses_bad_input_and_writes_nothing(
    repo: Path,  # noqa: F811
    model: str,
    env: str,
    options: dict,
    message: str,
) -> None:
    before = tree(repo)
    kwargs = {"input_url": "in.csv", "output_url": "out-{shard}.csv", **options}
    with pytest.raises(ScaffoldError, match=message):
        batch_scaffold.new_batch(model, env, root=repo, **kwargs)
    assert tree(repo) == before


def test_cli_new_batch(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.chdir(repo)
    args = [
        "new",
        "batch",
        "hpc-forest",
        "--env",
        "staging",
        "--input",
        "in.parquet",
        "--output",
        "out.parquet",
    ]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "wrote gitops/envs/staging/batch/hpc-forest.yaml" in done.output
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == ScaffoldError.exit_code
    assert "staging already runs the batch job of hpc-forest" in refused.output
