"""The optional batch CronJobs: they render with kustomize, validate strictly against batch/v1, and
every rule that ties a batch job to its model's main predictor is enforced."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops.delivery import batch_template, manifests
from modelops.delivery.manifests import ManifestError

GITOPS = Path(__file__).resolve().parents[2] / "gitops"
# The shipped example: one model's batch job, in production only.
MODEL, ENV = "concrete-hgb", "production"
JOB = f"{MODEL}-batch"
HASH = "5" * 64
URI = f"s3://store/{MODEL}/{HASH}/"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    return {env: manifests.render(env, GITOPS) for env in manifests.envs(GITOPS)}


@pytest.fixture
def gitops(tmp_path: Path) -> Path:
    return Path(shutil.copytree(GITOPS, tmp_path / "gitops"))


def pick(objects: list[Obj], kind: str, name: str) -> Obj:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return copy.deepcopy(obj)


def pod(cronjob: Obj) -> Obj:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def box(cronjob: Obj) -> Obj:
    (found,) = [c for c in pod(cronjob)["containers"] if c["name"] == "batch"]
    return found


def env_of(container: Obj) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def predictor_box(seldon: Obj) -> Obj:
    return seldon["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]


def promote_files(gitops: Path, uri: str = URI, digest: str = HASH, version: str = "v3") -> None:
    """What promote writes into both files, as text (the delivery tests run promote itself)."""
    for path in (gitops / "envs" / ENV / f"{MODEL}.yaml", gitops / "envs" / ENV / "batch" / f"{MODEL}.yaml"):
        path.write_text(
            path.read_text()
            .replace(f"unpromoted://{MODEL}/", uri)
            .replace('"' + "0" * 64 + '"', f'"{digest}"')
            .replace("modelops.dev/version: unpromoted", f"modelops.dev/version: {version}")
            .replace("value: unpromoted\n", f"value: {version}\n")
            .replace("suspend: true", "suspend: false")
        )


# --- the shipped manifests -------------------------------------------------------------------


def test_the_env_that_opts_in_renders_a_valid_indexed_cronjob(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered[ENV]
    manifests.validate(objects, GITOPS)  # kubernetes-validate strict, batch/v1, plus the batch rules
    job, seldon = pick(objects, "CronJob", JOB), pick(objects, "SeldonDeployment", MODEL)
    assert job["apiVersion"] == "batch/v1"
    assert job["metadata"]["namespace"] == f"modelops-{ENV}"
    assert job["metadata"]["labels"]["modelops.dev/model"] == MODEL
    spec = job["spec"]
    assert (spec["concurrencyPolicy"], spec["timeZone"], spec["suspend"]) == ("Forbid", "Etc/UTC", True)
    assert spec["successfulJobsHistoryLimit"] > 0 and spec["failedJobsHistoryLimit"] > 0
    run = spec["jobTemplate"]["spec"]
    assert (run["completionMode"], run["completions"], run["parallelism"]) == ("Indexed", 4, 4)
    assert run["backoffLimitPerIndex"] >= 1 and run["activeDeadlineSeconds"] > 0
    container = box(job)
    assert container["command"] == ["modelops-batch"]
    args = container["args"]
    assert args[args.index("--shards") + 1] == "4"
    assert "{shard}" in args[args.index("--output") + 1] and "{date}" in args[args.index("--input") + 1]
    # the same image, hardening and store credentials as the predictor, and its release
    main = predictor_box(seldon)
    assert container["image"] == main["image"] == f"ghcr.io/your-org/modelops-serving@sha256:{'0' * 64}"
    assert container["securityContext"] == main["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert (
        pod(job)["securityContext"]
        == seldon["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["securityContext"]
    )
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["envFrom"] == [
        {"secretRef": {"name": seldon["spec"]["predictors"][0]["graph"]["envSecretRefName"]}}
    ]
    assert pod(job)["restartPolicy"] == "Never" and pod(job)["automountServiceAccountToken"] is False
    served = env_of(main)
    assert env_of(container) == {
        "MODELOPS_MODEL_NAME": MODEL,
        "MODELOPS_MODEL_URI": seldon["spec"]["predictors"][0]["graph"]["modelUri"],
        "MODELOPS_MODEL_VERSION": served["MODELOPS_MODEL_VERSION"],
        "MODELOPS_EXPECTED_HASH": served["MODELOPS_EXPECTED_HASH"],
        # the signing policy the predictor verifies with (components/signed-keyless)
        "MODELOPS_SIGNER_IDENTITY": served["MODELOPS_SIGNER_IDENTITY"],
        "MODELOPS_SIGNER_ISSUER": served["MODELOPS_SIGNER_ISSUER"],
    }


def test_an_env_that_does_not_opt_in_has_no_batch_job(rendered: dict[str, list[Obj]]) -> None:
    assert [o for o in rendered["staging"] if o["kind"] == "CronJob"] == []
    assert not (GITOPS / "envs" / "staging" / "batch").exists()


def test_kubectl_kustomize_renders_the_cronjob_as_applied() -> None:
    """The same render Argo CD does, read as plain YAML: the CronJob is there, with its component's image."""
    out = subprocess.run(
        [manifests.kubectl(), "kustomize", str(GITOPS / "envs" / ENV)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "CronJob"]
    assert [j["metadata"]["name"] for j in jobs] == [JOB]
    assert "image: modelops-serving\n" not in out  # every placeholder image was rewritten


def test_shipped_base_is_what_new_batch_writes() -> None:
    base = GITOPS / "base" / "batch" / MODEL
    assert (base / "cronjob.yaml").read_text() == batch_template.cronjob(MODEL)
    assert (base / "kustomization.yaml").read_text() == batch_template.COMPONENT.substitute(model=MODEL)


def test_a_promoted_env_with_a_batch_job_validates(gitops: Path) -> None:
    promote_files(gitops)
    objects = manifests.render(ENV, gitops)
    manifests.validate(objects, gitops)
    container = box(pick(objects, "CronJob", JOB))
    assert env_of(container)["MODELOPS_MODEL_URI"] == URI
    assert env_of(container)["MODELOPS_EXPECTED_HASH"] == HASH


def test_strict_schema_refuses_a_misplaced_field(rendered: dict[str, list[Obj]]) -> None:
    """kubernetes-validate is strict: a Job field written on the CronJob's spec is an error."""
    job = pick(rendered[ENV], "CronJob", JOB)
    job["spec"]["completionMode"] = "Indexed"
    found = manifests.problems([job, pick(rendered[ENV], "SeldonDeployment", MODEL)], GITOPS)
    assert any(p.startswith(f"CronJob/{JOB} ") and "completionMode" in p for p in found), found


def test_a_batch_job_without_its_model_fails_to_render(gitops: Path) -> None:
    """The component copies the predictor's image: opting in without the model fails loudly."""
    from tests.gitops_models import remove_manifests

    remove_manifests(gitops.parent, MODEL, batch=False)
    with pytest.raises(ManifestError, match=r"kustomize failed"):
        manifests.render(ENV, gitops)


# --- one negative test per batch rule --------------------------------------------------------

Mutation = Callable[[Obj], Any]


def _env(name: str, value: str) -> Mutation:
    def change(job: Obj) -> None:
        next(e for e in box(job)["env"] if e["name"] == name)["value"] = value

    return change


def _arg(option: str, value: str | None) -> Mutation:
    def change(job: Obj) -> None:
        args = box(job)["args"]
        i = args.index(option)
        if value is None:
            del args[i : i + 2]
        else:
            args[i + 1] = value

    return change


RULES: list[tuple[Mutation, str]] = [
    (
        _env("MODELOPS_MODEL_URI", f"s3://store/{MODEL}/{'1' * 64}/"),
        "MODELOPS_MODEL_URI: .* differs from the main",
    ),
    (
        _env("MODELOPS_EXPECTED_HASH", "1" * 64),
        "MODELOPS_EXPECTED_HASH: .* differs from the main predictor's",
    ),
    (
        _env("MODELOPS_MODEL_VERSION", "v2"),
        "MODELOPS_MODEL_VERSION: 'v2' differs from the main predictor's 'v3'",
    ),
    (_env("MODELOPS_MODEL_NAME", "other"), "MODELOPS_MODEL_NAME: 'other' differs"),
    (
        lambda j: box(j).update(image="ghcr.io/else/modelops-serving:9"),
        r"image: .* differs from the predictor's",
    ),
    (lambda j: box(j).update(command=["modelops-serve"]), r"command: must be \['modelops-batch'\]"),
    (lambda j: box(j).update(envFrom=[]), "envFrom: no secretRef 'modelops-model-store'"),
    (lambda j: box(j).update(volumeMounts=[]), "nothing is mounted on /tmp"),
    (lambda j: box(j)["securityContext"].update(readOnlyRootFilesystem=False), "securityContext: differs"),
    (
        lambda j: pod(j)["securityContext"].update(runAsUser=0),
        r"spec.securityContext: differs from the predictor's pod",
    ),
    (lambda j: pod(j).update(restartPolicy="OnFailure"), "restartPolicy: must be Never"),
    (lambda j: j["spec"].update(concurrencyPolicy="Allow"), "concurrencyPolicy: must be Forbid"),
    (lambda j: j["spec"]["jobTemplate"]["spec"].pop("completionMode"), "completionMode: must be Indexed"),
    (
        lambda j: j["spec"]["jobTemplate"]["spec"].update(completions=3),
        r"--shards must equal .*completions \(3\), got 4",
    ),
    (
        lambda j: j["spec"]["jobTemplate"]["spec"].update(parallelism=8),
        "parallelism: 8 is more than completions 4",
    ),
    (_arg("--output", "s3://out/{date}.parquet"), r"--output must contain \{shard\} with 4 shards"),
    (_arg("--input", None), "--input URL is required"),
    (lambda j: box(j)["args"].extend(["--shard", "0/4"]), "--shard I/N scores one fixed shard"),
    (lambda j: box(j)["args"].extend(["--input", "x.csv"]), "--input is given more than once"),
    (lambda j: j["metadata"].update(name="nightly"), f"must be named {JOB}"),
    (lambda j: pod(j).update(containers=[{**box(j), "name": "main"}]), "no container named 'batch'"),
]


@pytest.mark.parametrize(("mutate", "message"), RULES, ids=[m for _, m in RULES])
def test_batch_rule(gitops: Path, mutate: Mutation, message: str) -> None:
    promote_files(gitops)
    objects = manifests.render(ENV, gitops)
    assert manifests.problems(objects, gitops) == []
    job = pick(objects, "CronJob", JOB)
    mutate(job)
    others = [o for o in objects if o["kind"] != "CronJob"]
    found = [p for p in manifests.problems([*others, job], gitops) if p.startswith("CronJob/")]
    assert any(re.search(message, p) for p in found), found


def test_an_unpromoted_batch_job_must_be_suspended(rendered: dict[str, list[Obj]]) -> None:
    job = pick(rendered[ENV], "CronJob", JOB)
    job["spec"]["suspend"] = False
    found = manifests.problems([pick(rendered[ENV], "SeldonDeployment", MODEL), job], GITOPS)
    why = "(there is no model to score with)"
    assert found == [f"CronJob/{JOB} spec.suspend: must be true while {MODEL} is unpromoted {why}"]


def test_a_batch_job_whose_model_is_not_in_the_env_is_reported(rendered: dict[str, list[Obj]]) -> None:
    job = pick(rendered[ENV], "CronJob", JOB)
    found = manifests.problems([job], GITOPS)
    why = "a batch job scores with its main predictor"
    assert found == [f"CronJob/{JOB} (root): no SeldonDeployment {MODEL} in this env: {why}"]


def test_canary_and_shadow_do_not_move_the_batch_job(gitops: Path) -> None:
    """Batch follows main: a canary predictor beside main leaves the CronJob's release valid as it is."""
    promote_files(gitops)
    overlay = gitops / "envs" / ENV / f"{MODEL}.yaml"
    other = "7" * 64
    overlay.write_text(
        overlay.read_text().replace(
            "  path: /spec/predictors/0/traffic\n  value: 100",
            "  path: /spec/predictors/0/traffic\n  value: 90",
        )
        + f"""
- op: copy
  from: /spec/predictors/0
  path: /spec/predictors/-
- op: replace
  path: /spec/predictors/1/name
  value: canary
- op: replace
  path: /spec/predictors/1/traffic
  value: 10
- op: replace
  path: /spec/predictors/1/graph/modelUri
  value: s3://store/{MODEL}/{other}/
- op: replace
  path: /spec/predictors/1/componentSpecs/0/spec/containers/0/env/1/value
  value: v4
- op: replace
  path: /spec/predictors/1/componentSpecs/0/spec/containers/0/env/2/value
  value: "{other}"
- op: add
  path: /spec/predictors/1/annotations
  value:
    modelops.dev/version: v4
    modelops.dev/content-hash: "{other}"
"""
    )
    objects = manifests.render(ENV, gitops)
    manifests.validate(objects, gitops)
    assert env_of(box(pick(objects, "CronJob", JOB)))["MODELOPS_EXPECTED_HASH"] == HASH


def test_a_shard_that_would_fail_again_is_not_retried(rendered: dict[str, list[Obj]]) -> None:
    """podFailurePolicy names the engine's own exit codes for answers a retry cannot change."""
    from modelops_serving.batch_io import BadInput, ModelRefused, StorageError, UsageError

    run = pick(rendered[ENV], "CronJob", JOB)["spec"]["jobTemplate"]["spec"]
    (rule,) = [r for r in run["podFailurePolicy"]["rules"] if r["action"] == "FailIndex"]
    assert rule["onExitCodes"] == {
        "containerName": "batch",
        "operator": "In",
        "values": sorted([UsageError.exit_code, BadInput.exit_code, ModelRefused.exit_code]),
    }
    assert StorageError.exit_code not in rule["onExitCodes"]["values"]  # I/O may succeed on a retry
    assert run["backoffLimitPerIndex"] >= 1  # FailIndex needs per-index retries
