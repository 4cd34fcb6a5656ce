"""What a pull request changed against its base: models, params, data, code paths.

Read from git and dvc.lock only (a `git show` of the base's files), no `dvc ... diff` calls: each of
those costs about a second, and a repository of many models would pay it per model. The metrics,
params and validation summaries are small files git tracks, so the base's copy is a `git show`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from modelops.config import PARAMS_FILE, Params
from modelops.declarations import Dataset
from modelops.pipeline import lock

CODE_PATHS = ("src/", "serving/src/", "dvc.yaml", "params.yaml", "data/")
# Why a model is in the report (report.json `why`).
MODEL_CHANGED, METRICS_CHANGED, NEW_MODEL, GATE_CHANGED, ASKED = (
    "packaged model changed",
    "metrics changed",
    "new model (the base never built it)",
    "gate policy changed",
    "asked for with --model",
)


def _proc(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True)


def resolve_base(base: str) -> str | None:
    """The base as a commit git knows (in CI often only `origin/<base>` exists), or None."""
    for rev in (base, f"origin/{base}"):
        if _proc(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]).returncode == 0:
            return rev
    return None


def show(rev: str | None, path: str | Path) -> str | None:
    """A file's text at a revision (None without a revision or when the file is not there)."""
    if rev is None:
        return None
    proc = _proc(["git", "show", f"{rev}:{Path(path).as_posix()}"])
    return proc.stdout if proc.returncode == 0 else None


def read_text(path: str | Path) -> str | None:
    """A working-tree file's text, or None when it does not exist."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------- models


def affected(params: Params, old_lock: str | None, new_lock: str | None, diff: dict | None) -> dict:
    """model -> why it is in the report, for the models whose outputs or gate policy changed.

    The outputs rule is `pipeline.lock.changed_models` (promote.yml uses the same); a model whose
    outputs did not move but whose gate policy did is re-gated too, since the verdict can change.
    """
    why: dict[str, list[str]] = {}
    for model in lock.changed_models(old_lock, new_lock, params.models):
        old, new = lock.fingerprint(old_lock, model), lock.fingerprint(new_lock, model)
        if old == (None, None):
            why[model] = [NEW_MODEL]
        else:
            why[model] = [MODEL_CHANGED] * (old[0] != new[0]) + [METRICS_CHANGED] * (old[1] != new[1])
    built = {m for m in params.models if lock.fingerprint(new_lock, m)[0] is not None}
    for model in gate_changed(params, diff or {}):
        if model in built:
            why.setdefault(model, []).append(GATE_CHANGED)
    return {m: why[m] for m in params.models if m in why}


def gate_changed(params: Params, diff: dict[str, Any]) -> list[str]:
    """Models whose effective gate policy a params change touches (a task's default or their own)."""
    touched = []
    for model in params.models:
        task = params.dataset_of(model).task
        prefixes = ("gate.max_latency_ratio", "gate.bootstrap.", f"gate.{task}.", f"models.{model}.gate.")
        if any(key.startswith(prefixes) for key in diff):
            touched.append(model)
    return touched


# --------------------------------------------------------------------------- params


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (`models.m.hyperparams.max_iter`); lists and {} stay values."""
    if not isinstance(value, dict) or (not value and prefix):
        return {prefix: value} if prefix else {}
    out: dict[str, Any] = {}
    for key, sub in value.items():
        out |= flatten(sub, f"{prefix}.{key}" if prefix else str(key))
    return out


def params_diff(rev: str | None, path: str = PARAMS_FILE) -> dict[str, dict[str, Any]] | None:
    """Changed params vs the base, {dotted key: {old, new}}; None when the base is unknown."""
    if rev is None:
        return None
    try:
        old = flatten(yaml.safe_load(show(rev, path) or "") or {})
        new = flatten(yaml.safe_load(read_text(path) or "") or {})
    except yaml.YAMLError:
        return None
    return {
        key: {"old": old.get(key), "new": new.get(key)}
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    }


def params_of(model: str, params: Params, diff: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a params diff that can change this model: its own, its dataset's, evaluation, gate."""
    if diff is None:
        return None
    ds = params.dataset_of(model)
    prefixes = (
        f"models.{model}.",
        f"datasets.{ds.name}.",
        "evaluate.",
        "gate.max_latency_ratio",
        "gate.bootstrap.",
        f"gate.{ds.task}.",
    )
    return {k: v for k, v in diff.items() if k.startswith(prefixes)}


# --------------------------------------------------------------------------- metrics and data


def base_metrics(rev: str | None, model: str) -> dict[str, Any] | None:
    """The model's metrics.json on the base (git tracks it), or None when the base has none."""
    from modelops.pipeline.outputs import metrics_file

    text = show(rev, metrics_file(model))
    if not text:
        return None
    with contextlib.suppress(json.JSONDecodeError):
        found = json.loads(text)
        return found if isinstance(found, dict) and found else None
    return None


def read_validation(path: Path) -> dict[str, Any] | None:
    """The Great Expectations summary a dataset's validate stage wrote."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _cache_file(md5: str) -> Path:
    return Path(".dvc/cache/files/md5") / md5[:2] / md5[2:]


def row_changes(old_csv: Path, new_csv: Path, id_column: str) -> dict[str, int]:
    """Rows added, removed and changed (same id, other values) between two raw files."""
    import pandas as pd

    old, new = (pd.read_csv(p, low_memory=False).set_index(id_column) for p in (old_csv, new_csv))
    common = old.index.intersection(new.index)
    cols = [c for c in new.columns if c in old.columns]
    changed = 0
    if len(common):
        a = pd.util.hash_pandas_object(old.loc[common, cols].astype(str), index=False).to_numpy()
        b = pd.util.hash_pandas_object(new.loc[common, cols].astype(str), index=False).to_numpy()
        changed = int((a != b).sum())
    return {
        "added": len(new.index.difference(old.index)),
        "removed": len(old.index.difference(new.index)),
        "changed": changed,
    }


def data_diff(
    ds: Dataset,
    rev: str | None,
    new_lock: str | None,
    old_lock: str | None,
    validation: dict[str, Any] | None,
) -> dict[str, Any]:
    """A dataset's raw file md5 and rows here and on the base; rows by id when the base file is cached."""
    raw, prepared = ds.raw_file.as_posix(), ds.prepared_dir.as_posix()
    current = {
        "md5": lock.out_md5(new_lock, raw) or (validation or {}).get("md5"),
        "rows": (validation or {}).get("rows"),
        "prepared_md5": lock.out_md5(new_lock, prepared),
    }
    base: dict[str, Any] = {}
    if rev is not None:
        base_validation = show(rev, ds.validation_file)
        rows = None
        with contextlib.suppress(json.JSONDecodeError, AttributeError):
            rows = json.loads(base_validation).get("rows") if base_validation else None
        base = {
            "md5": lock.out_md5(old_lock, raw),
            "rows": rows,
            "prepared_md5": lock.out_md5(old_lock, prepared),
        }
    out: dict[str, Any] = {"dataset": ds.name, "file": raw, "id": ds.id, "current": current, "base": base}
    old_md5 = base.get("md5")
    if old_md5 and old_md5 != current["md5"] and _cache_file(old_md5).is_file() and ds.raw_file.is_file():
        # optional detail: a file without ids (or unreadable) keeps the md5/rows view
        with contextlib.suppress(KeyError, ValueError, OSError):
            out["ids"] = row_changes(_cache_file(old_md5), ds.raw_file, ds.id)
    return out


def code_paths(rev: str | None) -> list[str] | None:
    """Files under the pipeline's paths that this branch changed since it left the base."""
    if rev is None:
        return None
    proc = _proc(["git", "diff", "--name-only", f"{rev}...HEAD"])
    if proc.returncode != 0:
        return None
    return [p for p in proc.stdout.split() if p.startswith(CODE_PATHS)]
