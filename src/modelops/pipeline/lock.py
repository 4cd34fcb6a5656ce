"""Reading dvc.lock: which outputs a commit recorded, and which models changed between two commits.

"Only what changed moves": the PR report and the gate cover, and promote.yml promotes, exactly
the models whose outputs differ from the base. Both ask `changed_models` with the two lock texts,
so the review and the delivery agree on the rule by construction.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import yaml

from modelops.errors import PipelineError

LOCK_FILE = "dvc.lock"


# libyaml when present: a lock grows ~30 lines per stage, and the pure-Python parser takes ~0.2 s
# for ten models' worth.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=8)
def _parse(text: str) -> Any:
    """A lock text parsed once: the report asks the same two texts about every model."""
    return yaml.load(text, Loader=_LOADER)  # a SafeLoader: safe


def stages(text: str | None, source: str = LOCK_FILE) -> dict[str, Any]:
    """The `stages:` mapping of a dvc.lock text ({} for None or an empty file). Read-only: it is
    shared between callers."""
    if not text:
        return {}
    try:
        data = _parse(text)
    except yaml.YAMLError as exc:
        raise PipelineError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
        raise PipelineError(f"{source}: expected a mapping with a 'stages' mapping")
    return data.get("stages") or {}


def out_md5(text: str | None, path: str, stage: str | None = None) -> str | None:
    """The md5 dvc.lock records for an output path (of `stage` only, when given)."""
    for name, body in stages(text).items():
        if stage is not None and name != stage:
            continue
        for out in (body or {}).get("outs") or []:
            if out.get("path") == path:
                return out.get("md5")
    return None


def fingerprint(text: str | None, model: str) -> tuple[str | None, str | None]:
    """What decides whether a model moved: the md5 of its packaged model and of its metrics."""
    return (
        out_md5(text, f"models/{model}/model", f"package@{model}"),
        out_md5(text, f"models/{model}/metrics.json", f"evaluate@{model}"),
    )


def changed_models(old_lock_text: str | None, new_lock_text: str | None, models: Iterable[str]) -> list[str]:
    """The models (in the given order) whose outputs differ from the old lock's, or that are new.

    A model is changed when the new lock records its packaged model (`package@<m>`:
    `models/<m>/model`) and that md5 or its metrics' (`evaluate@<m>`: `models/<m>/metrics.json`)
    differs from the old lock's; a model the old lock does not record is new, hence changed. A model
    the new lock does not record has not been built: there is nothing to report or promote.
    """
    changed = []
    for model in models:
        new = fingerprint(new_lock_text, model)
        if new[0] is None:
            continue
        if new != fingerprint(old_lock_text, model):
            changed.append(model)
    return changed


def lock_at(rev: str, path: str = LOCK_FILE) -> str | None:
    """dvc.lock as committed at `rev` (None when that commit has none, or `rev` is git's all-zero
    "no commit", as a push event's `before` is for a new branch)."""
    import subprocess

    if not rev.strip("0"):
        return None
    known = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True
    )
    if known.returncode != 0:
        raise PipelineError(f"--base {rev}: no such commit in this repository (is the clone shallow?)")
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None
