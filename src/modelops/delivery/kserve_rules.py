"""A KServe InferenceService seen as what it serves, and the rules its schema cannot state.

KServe keeps one predictor spec. Without `canaryTrafficPercent` it is the whole deployment; with it,
the spec is the canary (the latest revision takes that share) and the previous rolled-out revision,
main, keeps the rest. Main is no longer in the spec then: its release (version, hash, storage URI)
is in the object's `modelops.dev/*` annotations, which every promotion writes.

`predictors(obj)` gives both kinds the same view, a list of Seldon-shaped predictors (name, traffic,
graph.modelUri, componentSpecs[0].spec with the model container, annotations), so the release,
signing, batch and runtime code reads one shape. Pure functions on rendered objects.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

CONTAINER = "kserve-container"
ANN = "modelops.dev/"
STORAGE_URI, PROTOCOL = "STORAGE_URI", "PROTOCOL"
# The predictor's fields that are KServe's own (ComponentExtensionSpec); every other is a PodSpec field.
EXTENSION = frozenset(
    {
        "minReplicas",
        "maxReplicas",
        "scaleTarget",
        "scaleMetric",
        "scaleMetricType",
        "containerConcurrency",
        "timeout",
        "canaryTrafficPercent",
        "labels",
        "annotations",
        "logger",
        "batcher",
        "deploymentStrategy",
        "autoScaling",
        "storageUris",
        "storageContainerName",
    }
)


def pod(predictor: dict[str, Any]) -> dict[str, Any]:
    """The PodSpec KServe builds from an inline predictor: every field that is not its own."""
    return {k: v for k, v in predictor.items() if k not in EXTENSION}


def _container(predictor: dict[str, Any]) -> dict[str, Any]:
    boxes = predictor.get("containers") or []
    return next((b for b in boxes if isinstance(b, dict) and b.get("name") == CONTAINER), {})


def _env(box: dict[str, Any]) -> dict[str, Any]:
    return {e.get("name"): e.get("value") for e in box.get("env") or [] if isinstance(e, dict)}


def _view(predictor: dict[str, Any], box: dict[str, Any], name: str, traffic: int, values: dict) -> dict:
    """A Seldon-shaped predictor running `box` with the release `values` (uri, version, hash)."""
    box = copy.deepcopy(box)
    replace = {
        "MODELOPS_MODEL_VERSION": values["version"],
        "MODELOPS_EXPECTED_HASH": values["hash"],
        STORAGE_URI: values["uri"],
    }
    for entry in box.get("env") or []:
        if isinstance(entry, dict) and entry.get("name") in replace:
            entry["value"] = replace[entry["name"]]
    spec = pod(predictor) | {"containers": [box]}
    return {
        "name": name,
        "traffic": traffic,
        "replicas": predictor.get("minReplicas", 1),
        "graph": {"name": CONTAINER, "modelUri": values["uri"]},
        "componentSpecs": [{"spec": spec}],
        "annotations": values["annotations"],
    }


def predictors(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """A SeldonDeployment's predictors, or an InferenceService's revisions as such (main, canary)."""
    if obj.get("kind") != "InferenceService":
        return [p for p in obj.get("spec", {}).get("predictors") or [] if isinstance(p, dict)]
    predictor = obj.get("spec", {}).get("predictor")
    box = _container(predictor) if isinstance(predictor, dict) else {}
    if not box:
        return []
    env = _env(box)
    spec = {
        "uri": env.get(STORAGE_URI),
        "version": env.get("MODELOPS_MODEL_VERSION"),
        "hash": env.get("MODELOPS_EXPECTED_HASH"),
        "annotations": predictor.get("annotations") or {},
    }
    share = predictor.get("canaryTrafficPercent")
    if not isinstance(share, int):
        return [_view(predictor, box, "main", 100, spec)]
    ann = obj.get("metadata", {}).get("annotations") or {}
    main = {
        "uri": ann.get(ANN + "storage-uri"),
        "version": ann.get(ANN + "version"),
        "hash": ann.get(ANN + "content-hash"),
        "annotations": {},
    }
    return [_view(predictor, box, "main", 100 - share, main), _view(predictor, box, "canary", share, spec)]


def _where(text: str, canary: bool) -> str:
    """A message about the view, with the view's paths as the InferenceService's."""
    if canary:
        text = text.replace(
            "spec.predictors[0]", "main (the previous rolled-out revision, metadata.annotations)"
        )
        text = text.replace("spec.predictors[1]", "spec.predictor")
    text = text.replace("spec.predictors[0]", "spec.predictor").replace(".graph.modelUri", ".env.STORAGE_URI")
    return text.replace(".componentSpecs", ".containers")


def problems(
    obj: dict[str, Any],
    release_problems: Callable[[dict[str, Any]], list[str]],
    pod_problems: Callable[[dict[str, Any]], list[str]],
) -> list[str]:
    """What the InferenceService schema cannot say: the pod as a core PodSpec (`pod_problems`), the
    container's storage and protocol, and the release rules (`release_problems`, on the view)."""
    predictor = obj.get("spec", {}).get("predictor")
    if not isinstance(predictor, dict):
        return []  # the schema names it
    found = [f"spec.predictor.{p.removeprefix('spec.')}" for p in pod_problems(pod(predictor))]
    box = _container(predictor)
    if not box:
        return [
            *found,
            f"spec.predictor.containers: no container is named {CONTAINER!r} (KServe's model container)",
        ]
    env = _env(box)
    if not env.get(STORAGE_URI):
        found.append(
            f"spec.predictor.containers[{CONTAINER}].env: no {STORAGE_URI}: KServe's storage initializer "
            "downloads the model from it"
        )
    if env.get(PROTOCOL) != "v2":
        found.append(
            f"spec.predictor.containers[{CONTAINER}].env.{PROTOCOL}: {env.get(PROTOCOL)!r}, not 'v2': the "
            "server speaks the Open Inference Protocol, and KServe assumes v1 without it"
        )
    canary = isinstance(predictor.get("canaryTrafficPercent"), int)
    stated = (obj.get("metadata", {}).get("annotations") or {}).get(ANN + "storage-uri")
    if not canary and stated != env.get(STORAGE_URI):
        found.append(
            f"metadata.annotations.{ANN}storage-uri: {stated!r} differs from the container's {STORAGE_URI} "
            f"{env.get(STORAGE_URI)!r} (without a canary the spec runs main)"
        )
    view = {"metadata": obj.get("metadata", {}), "spec": {"predictors": predictors(obj)}}
    return found + [_where(p, canary) for p in release_problems(view)]
