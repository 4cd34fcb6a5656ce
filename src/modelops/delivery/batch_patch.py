"""An env's batch patch (gitops/envs/<env>/batch/<model>.yaml): the release a promotion writes into it.

The batch job scores with what the model's main predictor serves, so a promotion that changes main
(full, `--finish`, a rollback to a version) writes the same modelUri, version and content hash here,
in the same commit; a canary or a shadow leaves main, and so this file, as it is. Only the three
`value:` lines change, and `suspend` when the env leaves or returns to the unpromoted state; every
other byte stays (round-trip YAML), so `git revert` restores both files exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from modelops.changeset import dump, round_trip
from modelops.delivery import batch_rules, manifests
from modelops.delivery.patches import GITOPS, PromoteError, Release, scalar


def batch_file(env: str, model: str, root: Path = GITOPS) -> Path | None:
    """The env's batch patch of `model`, or None when the env does not run its batch job."""
    path = root / "envs" / env / "batch" / f"{model}.yaml"
    return path if path.exists() else None


def _container(doc: Any, path: Path) -> Any:
    """The `batch` container of the patch, or a PromoteError naming the file and the key."""
    try:
        containers = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        return next(c for c in containers if c.get("name") == batch_rules.CONTAINER)
    except (KeyError, TypeError, StopIteration, AttributeError):
        raise PromoteError(
            f"{path}: no spec.jobTemplate.spec.template.spec.containers[name={batch_rules.CONTAINER}] "
            "(see gitops/README.md, Batch jobs)"
        ) from None


def _entries(box: Any, path: Path) -> dict[str, Any]:
    """The release env entries of the container, by name; each must be there with a `value`."""
    found = {e.get("name"): e for e in box.get("env") or [] if hasattr(e, "get")}
    for name in batch_rules.RELEASE_ENV:
        if name not in found or "value" not in found[name]:
            raise PromoteError(f"{path}: env {name} with a `value:` is missing from the batch container")
    return found


def read_release(path: Path) -> tuple[str, str, str]:
    """(modelUri, version, content hash) the batch patch names."""
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PromoteError(f"{path}: not valid YAML: {exc}") from None
    entries = _entries(_container(doc, path), path)
    uri, version, digest = (str(entries[n]["value"]) for n in batch_rules.RELEASE_ENV)
    return uri, version, digest


def render_release(path: Path, main: Release) -> str:
    """The patch with `main`'s release written in; all else byte for byte."""
    rt = round_trip()
    text = path.read_text()
    doc = rt.load(text)
    entries = _entries(_container(doc, path), path)
    uri, version, digest = batch_rules.RELEASE_ENV
    was = bool(manifests.PLACEHOLDER_URI.match(str(entries[uri]["value"])))
    now = bool(manifests.PLACEHOLDER_URI.match(main.uri))
    if (str(entries[uri]["value"]), str(entries[version]["value"]), str(entries[digest]["value"])) == (
        main.uri,
        main.version,
        main.content_hash,
    ):
        return text  # nothing to write: not even a re-dump, whose layout might differ
    entries[uri]["value"] = scalar(main.uri)
    entries[version]["value"] = scalar(main.version)
    entries[digest]["value"] = DoubleQuotedScalarString(main.content_hash)
    if was != now:
        # The first promotion starts the schedule, a return to unpromoted stops it; any other
        # promotion leaves `suspend` to the env (a paused job stays paused).
        spec = doc.get("spec")
        if not hasattr(spec, "get") or "suspend" not in spec:
            raise PromoteError(f"{path}: no spec.suspend to set to {str(now).lower()} (see gitops/README.md)")
        spec["suspend"] = now
    return dump(rt, doc)
