"""Which models a change moved, read from two versions of dvc.lock.

dvc.lock records the md5 of every stage output, so "did this model change" needs no retraining and
no guess from file paths: a model changed when its packaged model or its metrics differ between the
two locks, or when it is new. The PR report and the promote workflow ask the same question here,
so a model is reported as changed exactly when a merge would promote it (invariant 9).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from modelops.errors import PipelineError


def outputs(lock_text: str | None, model: str, where: str = "dvc.lock") -> dict[str, str | None]:
    """The md5 of the model's packaged model and metrics in one dvc.lock text (None when absent)."""
    stages = _stages(lock_text, where)
    return {
        f"models/{model}/model": _md5(stages, f"package@{model}", f"models/{model}/model", where),
        f"models/{model}/metrics.json": _md5(
            stages, f"evaluate@{model}", f"models/{model}/metrics.json", where
        ),
    }


def changed_models(old_lock_text: str | None, new_lock_text: str | None, models: Iterable[str]) -> list[str]:
    """The models (in the given order) whose packaged model or metrics differ, or that are new."""
    changed = []
    for model in models:
        new = outputs(new_lock_text, model, "dvc.lock (new)")
        if new[f"models/{model}/model"] is None:
            continue  # not built by the new lock: nothing to promote
        if outputs(old_lock_text, model, "dvc.lock (old)") != new:
            changed.append(model)
    return changed


def _stages(lock_text: str | None, where: str) -> dict[str, Any]:
    if not lock_text or not lock_text.strip():
        return {}
    try:
        lock = yaml.safe_load(lock_text)
    except yaml.YAMLError as exc:
        raise PipelineError(f"{where}: not valid YAML: {exc}") from None
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        raise PipelineError(f"{where}: no `stages:` mapping (is it a dvc.lock file?)")
    return stages


def _md5(stages: dict[str, Any], stage: str, path: str, where: str) -> str | None:
    entry = stages.get(stage)
    if entry is None:
        return None
    outs = entry.get("outs") if isinstance(entry, dict) else None
    if not isinstance(outs, list):
        raise PipelineError(f"{where}: stage {stage!r} has no `outs:` list")
    for out in outs:
        if isinstance(out, dict) and out.get("path") == path:
            return str(out.get("md5"))
    return None


def lock_at(rev: str, path: str = "dvc.lock") -> str | None:
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
