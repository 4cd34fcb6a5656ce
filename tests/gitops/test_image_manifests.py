"""The serving image in gitops/: each env maps it by digest with kustomize `images:`, a pin reaches
every predictor and the batch CronJobs, and production refuses a tag without a digest."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops.delivery import image, image_rules, manifests
from modelops.delivery.manifests import ManifestError
from tests.gitops_models import write_release

GITOPS = Path(__file__).resolve().parents[2] / "gitops"
DIGEST = "sha256:" + "d" * 64
REPOSITORY = "ghcr.io/acme/modelops-serving"


@pytest.fixture
def gitops(tmp_path: Path) -> Path:
    return Path(shutil.copytree(GITOPS, tmp_path / "gitops"))


def images_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    """`Kind/name path` -> image, for every container the env renders."""
    return {
        f"{o['kind']}/{o['metadata']['name']} {where}": img
        for o in objects
        for where, img in image_rules.images(o)
    }


def kustomization_images(gitops: Path, env: str) -> list[dict[str, Any]]:
    return yaml.safe_load((gitops / "envs" / env / "kustomization.yaml").read_text())["images"]


def test_every_env_maps_the_image_to_a_well_formed_digest() -> None:
    for env in manifests.envs(GITOPS):
        [entry] = kustomization_images(GITOPS, env)
        assert entry["name"] == image_rules.LOGICAL_NAME and "newTag" not in entry
        assert image_rules.DIGEST.match(entry["digest"]), entry
        # Shipped before any build: the all-zero placeholder, replaced by the first pin PR.
        assert entry["digest"] == image_rules.UNBUILT
    assert "images" not in yaml.safe_load((GITOPS / "base" / "kustomization.yaml").read_text())


def test_a_pin_reaches_every_predictor_and_the_batch_cronjobs(gitops: Path) -> None:
    # A canary in production: its predictor is copied from main, so it must run the pin too.
    write_release(gitops.parent, "production", "credit-hgb", "a" * 64, "v2")
    write_release(gitops.parent, "production", "credit-hgb", "b" * 64, "v3", canary=10)
    changes = image.plan(DIGEST, REPOSITORY, root=gitops)
    assert sorted(p.relative_to(gitops).as_posix() for p in changes) == [
        "envs/production/kustomization.yaml",
        "envs/staging-kserve/kustomization.yaml",
        "envs/staging/kustomization.yaml",
    ]
    for path, text in changes.items():
        path.write_text(text)
    manifests.check_all(gitops)
    for env in manifests.envs(gitops):
        found = images_of(manifests.render(env, gitops))
        assert set(found.values()) == {f"{REPOSITORY}@{DIGEST}"}, found
        kinds = {where.split("/")[0] for where in found}
        served = "InferenceService" if env == "staging-kserve" else "SeldonDeployment"
        assert kinds == ({served, "CronJob"} if env == "production" else {served})
    production = images_of(manifests.render("production", gitops))
    assert any("predictors[1]" in where for where in production)  # the canary's container
    assert any(where.startswith("CronJob/concrete-hgb-batch ") for where in production)


@pytest.mark.parametrize(("env", "refused"), [("production", True), ("staging", False)])
def test_a_tag_without_a_digest_is_refused_in_production_only(gitops: Path, env: str, refused: bool) -> None:
    path = gitops / "envs" / env / "kustomization.yaml"
    path.write_text(path.read_text().replace(f"digest: {image_rules.UNBUILT}", 'newTag: "0.2.0"'))
    if not refused:
        manifests.check_all(gitops)
        return
    with pytest.raises(ManifestError) as info:
        manifests.check_all(gitops)
    message = str(info.value)
    # every container: three predictors and the batch job, each naming where and what to do
    assert message.count("'ghcr.io/your-org/modelops-serving:0.2.0' is a tag without a digest") == 4
    assert (
        f"{gitops}/envs/production: SeldonDeployment/credit-hgb spec.predictors[0].componentSpecs[0].spec"
        ".containers[credit-hgb].image: 'ghcr.io/your-org/modelops-serving:0.2.0' is a tag without a digest, "
        "and production runs images by digest only" in message
    )
    assert "pin it in gitops/envs/production/kustomization.yaml: `modelops image pin --digest" in message


def test_an_env_that_does_not_map_the_image_is_refused(gitops: Path) -> None:
    path = gitops / "envs" / "staging" / "kustomization.yaml"
    data = yaml.safe_load(path.read_text())
    del data["images"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(
        ManifestError, match="'modelops-serving' is the manifests' logical name, mapped to no"
    ):
        manifests.check_all(gitops)
