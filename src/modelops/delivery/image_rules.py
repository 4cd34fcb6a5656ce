"""The rules a rendered env's images must keep: the serving image by digest where it matters.

The manifests name the server image by a logical name (`modelops-serving`); each env's
kustomization maps it to a registry repository and a digest with kustomize `images:` (written by
`modelops image pin`). A tag can be moved to other bytes at any time; a digest cannot, so in the
envs of `DIGEST_ENVS` every container must run `<repository>@sha256:<64 hex>`, and in every env the
logical name must have been mapped (an unmapped `modelops-serving` names no registry and cannot be
pulled). Pure functions on rendered objects; `manifests.problems` calls them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

LOGICAL_NAME = "modelops-serving"
# Envs whose containers must name their image by digest. A fork that adds an env that must be
# as strict (a second production region, say) lists it here.
DIGEST_ENVS = frozenset({"production"})
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# `repository[:tag]@sha256:<hex>`: kustomize writes `repository@digest` (it drops a tag).
BY_DIGEST = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
# The digest the shipped envs hold before the image workflow's first pin PR (no image has it).
UNBUILT = "sha256:" + "0" * 64
POD_SPECS = {
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "InferenceService": ("spec", "predictor"),  # KServe inlines the pod in the predictor
}


def _pod_containers(spec: Any, where: str) -> Iterator[tuple[str, Any]]:
    if not isinstance(spec, dict):
        return
    for key in ("initContainers", "containers"):
        for i, box in enumerate(spec.get(key) or []):
            if isinstance(box, dict):
                yield f"{where}.{key}[{box.get('name', i)}].image", box.get("image")


def images(obj: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(path, image) of every container of a SeldonDeployment or a workload object."""
    kind = obj.get("kind")
    if kind == "SeldonDeployment":
        for i, predictor in enumerate(obj.get("spec", {}).get("predictors") or []):
            for j, component in enumerate((predictor or {}).get("componentSpecs") or []):
                where = f"spec.predictors[{i}].componentSpecs[{j}].spec"
                yield from _pod_containers((component or {}).get("spec"), where)
    elif kind in POD_SPECS:
        spec: Any = obj
        for key in POD_SPECS[kind]:
            spec = spec.get(key) if isinstance(spec, dict) else None
        yield from _pod_containers(spec, ".".join(POD_SPECS[kind]))


def findings(obj: dict[str, Any], env: str | None) -> list[tuple[str, str, str]]:
    """(path, problem, what to do) for every image rule one rendered object breaks in `env`."""
    found = []
    for where, image in images(obj):
        if not isinstance(image, str) or not image:
            continue  # a missing image is the schema's to report
        if image == LOGICAL_NAME or image.startswith(f"{LOGICAL_NAME}:"):
            found.append(
                (
                    where,
                    f"{image!r} is the manifests' logical name, mapped to no registry",
                    f"add an `images:` entry for {LOGICAL_NAME} (newName, digest) to the env's "
                    "kustomization.yaml (`modelops image pin --image REPOSITORY --digest sha256:...`)",
                )
            )
        elif env in DIGEST_ENVS and not BY_DIGEST.match(image):
            found.append(
                (
                    where,
                    f"{image!r} is a tag without a digest, and {env} runs images by digest only "
                    "(a tag can be moved to other bytes)",
                    f"pin it in gitops/envs/{env}/kustomization.yaml: `modelops image pin --digest "
                    "sha256:...`, or merge the image workflow's pull request (branch image/serving)",
                )
            )
    return found


def problems(obj: dict[str, Any], env: str | None) -> list[str]:
    """Every image rule one rendered object breaks in `env`, each as `path: problem: what to do`."""
    return [f"{where}: {problem}: {fix}" for where, problem, fix in findings(obj, env)]


def digests(objects: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Each image of the objects with how many containers run it (what a policy check reports)."""
    counts: dict[str, int] = {}
    for obj in objects:
        for _, image in images(obj):
            if isinstance(image, str):
                counts[image] = counts.get(image, 0) + 1
    return counts
