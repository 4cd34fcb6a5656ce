"""image.yml under act: a build pins its digest in gitops/ through one PR; the next build updates it.

The Docker engine, the registry and the attestation service are stand-ins (src/modelops/runtime/
standins/: setup-buildx, login, build-push, attest) that record what they were asked and answer a
deterministic fake digest; `modelops image pin`, git and the PR logic are real.
"""

from __future__ import annotations

import json

import pytest
import yaml

from modelops.delivery import manifests
from modelops.runtime.forge import ActResult, Forge

pytestmark = pytest.mark.slow

WORKFLOW = ".github/workflows/image.yml"
BRANCH = "image/serving"
# A fork's registry, set as the repository variable the workflow reads.
IMAGE = "ghcr.io/acme/modelops-serving"
KUSTOMIZATIONS = [
    "gitops/envs/production/kustomization.yaml",
    "gitops/envs/staging-kserve/kustomization.yaml",
    "gitops/envs/staging/kustomization.yaml",
]


def build(forge: Forge, change: str) -> tuple[ActResult, str]:
    """Push a change of the server to main and run image.yml for that push; (result, digest)."""
    before = forge.origin_sha()
    dockerfile = forge.work / "serving/Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"# {change}\n")
    forge.commit(f"serving: {change}")
    forge.push("main")
    result = forge.run_workflow(
        WORKFLOW,
        "push",
        forge.push_event("main", before),
        variables={"MODELOPS_IMAGE": IMAGE},
        timeout=240,
    ).check()
    digest = _pinned(forge)
    # The digest pinned is the one the build pushed (the registry stand-in's record).
    registry = json.loads((forge.state / "registry.json").read_text())
    assert f"{IMAGE}@{digest}" in registry["images"]
    return result, digest


def _pinned(forge: Forge) -> str:
    """The digest the image/serving branch on origin pins, the same in every env."""
    digests = set()
    for path in KUSTOMIZATIONS:
        text = forge.git("show", f"refs/heads/{BRANCH}:{path}", cwd=forge.origin)
        [entry] = [e for e in yaml.safe_load(text)["images"] if e["name"] == "modelops-serving"]
        assert entry["newName"] == IMAGE and "newTag" not in entry
        digests.add(entry["digest"])
    [digest] = digests
    return digest


def test_a_build_opens_the_pin_pr_and_the_next_build_updates_it(forge: Forge) -> None:
    first, digest = build(forge, "first build")

    # What the stand-ins were asked: a login to the image's registry, a build of the server's
    # Dockerfile pushed with SBOM and provenance, an attestation of exactly the pushed digest.
    [login] = first.inputs_to("docker/login-action")
    assert login["registry"] == "ghcr.io" and login["password"] is True
    [pushed] = first.inputs_to("docker/build-push-action")
    head = forge.origin_sha()
    assert (pushed["context"], pushed["file"], pushed["push"]) == (".", "serving/Dockerfile", "true")
    assert (pushed["sbom"], pushed["provenance"]) == ("true", "mode=max")
    assert pushed["tags"] == f"{IMAGE}:sha-{head}"
    [attested] = first.inputs_to("actions/attest")
    assert (attested["subject-name"], attested["subject-digest"]) == (IMAGE, digest)
    assert attested["push-to-registry"] == "true"

    # One PR from image/serving: main plus one commit that changes the kustomizations only.
    [pr] = forge.gh_state["prs"]
    assert (pr["headRefName"], pr["baseRefName"], pr["state"]) == (BRANCH, "main", "OPEN")
    assert f"{IMAGE}@{digest}" in pr["body"] and head in pr["body"]
    assert forge.origin_sha() == head  # main is untouched until the PR merges
    assert forge.git("rev-parse", f"{BRANCH}~1", cwd=forge.origin) == head
    changed = forge.git("show", "--format=", "--name-only", BRANCH, cwd=forge.origin).splitlines()
    assert sorted(changed) == KUSTOMIZATIONS
    # What merging deploys: every predictor and the batch CronJob of production run that digest.
    forge.git("fetch", "-q", "origin", BRANCH)
    forge.git("checkout", "-q", "FETCH_HEAD")
    objects = manifests.render("production", forge.work / "gitops")
    manifests.validate(objects, forge.work / "gitops", env="production")
    images = {c["image"] for o in objects for _, c in _containers(o)}
    assert images == {f"{IMAGE}@{digest}"} and {o["kind"] for o in objects} == {"SeldonDeployment", "CronJob"}
    forge.git("checkout", "-q", "main")

    second, again = build(forge, "second build")
    assert again != digest
    # The same PR, edited; the branch is the new main plus one pin commit.
    [pr] = forge.gh_state["prs"]
    assert pr["state"] == "OPEN" and f"{IMAGE}@{again}" in pr["body"]
    assert [c["argv"][:2] for c in second.gh_calls if c["argv"][:2] != ["pr", "list"]] == [["pr", "edit"]]
    assert forge.git("rev-parse", f"{BRANCH}~1", cwd=forge.origin) == forge.origin_sha()


def _containers(obj: dict) -> list[tuple[str, dict]]:
    if obj["kind"] == "CronJob":
        return [("batch", c) for c in obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]]
    return [
        (p["name"], c)
        for p in obj["spec"]["predictors"]
        for s in p["componentSpecs"]
        for c in s["spec"]["containers"]
    ]
