"""The env patch files under gitops/envs/: what a promotion reads and writes.

A patch file is a list of JSON6902 operations; the main predictor's release lives in the `value:`
of a few fixed operations, and a canary or shadow is a block appended at the end. Reading and
rendering here are pure (no git, no registry), so every edit a promotion makes can be planned,
diffed and validated before anything is written.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, PlainScalarString

from modelops.changeset import round_trip
from modelops.delivery import manifests, platforms
from modelops.errors import ModelopsError

Mode = Literal["full", "canary", "shadow", "finish", "abort"]
GITOPS = Path("gitops")
ANN = "modelops.dev/"
CONTAINER = "/componentSpecs/0/spec/containers/0"
BLOCK_HEADER = re.compile(r"^# --- (canary|shadow):", re.MULTILINE)


class PromoteError(ModelopsError):
    """A promotion or rollback cannot be done; nothing was written. The message says why."""

    exit_code = 9


@dataclass(frozen=True)
class Release:
    """What one predictor serves: the fields a promotion writes."""

    version: str
    content_hash: str
    uri: str
    git_commit: str = "unknown"
    mlflow_run: str = "unknown"
    source_pr: str = "none"


@dataclass(frozen=True)
class Extra:
    """A canary or shadow predictor beside main."""

    name: Literal["canary", "shadow"]
    release: Release
    traffic: int


def patch_file(env: str, model: str, root: Path = GITOPS) -> Path:
    """The env's JSON6902 patch for one model, after checking both exist."""
    known = manifests.envs(root)
    if env not in known:
        raise PromoteError(f"unknown env {env!r} (known: {', '.join(known)})")
    path = root / "envs" / env / f"{model}.yaml"
    if not path.exists():
        raise PromoteError(f"{path}: no manifest for model {model!r} in env {env!r}")
    return path


def _yaml() -> YAML:
    return round_trip(sequence=2, offset=0)


def _ops(text: str, path: Path | str) -> list[dict[str, Any]]:
    try:
        ops = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromoteError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(ops, list) or not all(isinstance(o, dict) and "op" in o for o in ops):
        raise PromoteError(f"{path}: expected a list of JSON-patch operations")
    return ops


def _value(ops: list[dict[str, Any]], path: str, where: Path | str) -> Any:
    for op in ops:
        if op.get("path") == path and op.get("op") in ("replace", "add"):
            return op.get("value")
    raise PromoteError(f"{where}: no operation for {path} (see gitops/README.md)")


def read_state(path: Path) -> tuple[Release, list[Extra]]:
    """The main release and any canary/shadow, as the patch file states them."""
    return parse_state(path.read_text(), path)


def parse_state(text: str, path: Path | str) -> tuple[Release, list[Extra]]:
    """`read_state` of a patch file's text (e.g. as an older commit had it); `path` names it in errors."""
    head, _, blocks = _split(text)
    ops = _ops(head, path)
    layout = platforms.of_ops(ops)
    main = _release(ops, layout, _value(ops, "/metadata/annotations", path) or {}, path)
    block_ops = _ops(blocks, path) if blocks.strip() else []
    if layout is platforms.KSERVE:
        if not block_ops:
            return main, []
        ann = _value(block_ops, "/spec/predictor/annotations", path) or {}
        traffic = int(_value(block_ops, platforms.CANARY_PERCENT, path))
        return main, [Extra("canary", _release(block_ops, layout, ann, path), traffic)]
    extras = []
    for i in range(1, 1 + sum(1 for o in block_ops if o.get("op") == "copy")):
        p = f"/spec/predictors/{i}"
        name = _value(block_ops, f"{p}/name", path)
        ann = _value(block_ops, f"{p}/annotations", path) or {}
        release = Release(
            version=str(_value(block_ops, f"{p}{CONTAINER}/env/1/value", path)),
            content_hash=str(_value(block_ops, f"{p}{CONTAINER}/env/2/value", path)),
            uri=str(_value(block_ops, f"{p}/graph/modelUri", path)),
            git_commit=str(ann.get(ANN + "git-commit", "unknown")),
            mlflow_run=str(ann.get(ANN + "mlflow-run", "unknown")),
            source_pr=str(ann.get(ANN + "source-pr", "none")),
        )
        extras.append(Extra(name, release, int(_value(block_ops, f"{p}/traffic", path))))
    return main, extras


def _release(ops: list[dict[str, Any]], layout: platforms.Layout, ann: dict, path: Path | str) -> Release:
    """The release the operations write at the layout's main paths; its record from `ann`."""
    return Release(
        version=str(_value(ops, layout.version, path)),
        content_hash=str(_value(ops, layout.content_hash, path)),
        uri=str(_value(ops, layout.uri, path)),
        git_commit=str(ann.get(ANN + "git-commit", "unknown")),
        mlflow_run=str(ann.get(ANN + "mlflow-run", "unknown")),
        source_pr=str(ann.get(ANN + "source-pr", "none")),
    )


def _split(text: str) -> tuple[str, str, str]:
    """(main operations, separator, canary/shadow blocks): blocks always sit at the end of the file."""
    found = BLOCK_HEADER.search(text)
    if not found:
        return text, "", ""
    return text[: found.start()], "", text[found.start() :]


def _block(index: int, extra: Extra, model: str) -> str:
    r = extra.release
    p = f"/spec/predictors/{index}"
    shadow = f"- op: add\n  path: {p}/shadow\n  value: true\n" if extra.name == "shadow" else ""
    title = f"# --- {extra.name}: {model} {r.version} takes {extra.traffic}% "
    return (
        f"{title}{'-' * max(3, 99 - len(title))}\n"
        f"- op: copy\n  from: /spec/predictors/0\n  path: /spec/predictors/-\n"
        f"- op: replace\n  path: {p}/name\n  value: {extra.name}\n"
        f"- op: replace\n  path: {p}/traffic\n  value: {extra.traffic}\n"
        f"- op: replace\n  path: {p}/graph/modelUri\n  value: {r.uri}\n"
        f"- op: replace\n  path: {p}{CONTAINER}/env/1/value\n  value: {_plain(r.version)}\n"
        f'- op: replace\n  path: {p}{CONTAINER}/env/2/value\n  value: "{r.content_hash}"\n'
        f"- op: add\n  path: {p}/annotations\n  value:\n" + _record(r) + shadow
    )


def _kserve_block(extra: Extra, model: str) -> str:
    """KServe's canary: the predictor runs the new model and takes `canaryTrafficPercent`; the
    previous rolled-out revision (main, whose release the object's annotations keep) the rest."""
    if extra.name != "canary":
        raise PromoteError(f"{model}: KServe has no {extra.name} (it cannot mirror traffic); nothing written")
    r, k = extra.release, platforms.KSERVE
    title = f"# --- canary: {model} {r.version} takes {extra.traffic}% "
    return (
        f"{title}{'-' * max(3, 99 - len(title))}\n"
        f"- op: add\n  path: {platforms.CANARY_PERCENT}\n  value: {extra.traffic}\n"
        f"- op: replace\n  path: {k.version}\n  value: {_plain(r.version)}\n"
        f'- op: replace\n  path: {k.content_hash}\n  value: "{r.content_hash}"\n'
        f"- op: replace\n  path: {k.uri}\n  value: {r.uri}\n"
        f"- op: add\n  path: /spec/predictor/annotations\n  value:\n" + _record(r)
    )


def _record(r: Release) -> str:
    """A canary's or shadow's release annotations, as the value of an `add`."""
    return (
        f"    {ANN}version: {_plain(r.version)}\n"
        f'    {ANN}content-hash: "{r.content_hash}"\n'
        f"    {ANN}git-commit: {_plain(r.git_commit)}\n"
        f"    {ANN}mlflow-run: {_plain(r.mlflow_run)}\n"
        f"    {ANN}source-pr: {_plain(r.source_pr)}\n"
    )


def _plain(value: str) -> str:
    """A scalar that YAML reads back as this string (quoted only when it would read otherwise)."""
    return value if isinstance(yaml.safe_load(value), str) and value.strip() == value else f'"{value}"'


def scalar(value: str) -> PlainScalarString | DoubleQuotedScalarString:
    """An explicit style: ruamel otherwise keeps the old value's quotes for the new one."""
    plain = isinstance(yaml.safe_load(value), str) and value.strip() == value
    return PlainScalarString(value) if plain else DoubleQuotedScalarString(value)


def render_state(path: Path, model: str, main: Release, extras: list[Extra]) -> str:
    """The patch file with main's values and the extra blocks replaced; all else byte for byte."""
    return render_text(path.read_text(), model, main, extras)


def render_text(text: str, model: str, main: Release, extras: list[Extra]) -> str:
    """`render_state` of a patch file's text (e.g. a new platform's template)."""
    head, _, _ = _split(text)
    rt = _yaml()
    ops = rt.load(head)
    layout = platforms.of_ops(ops)
    main_traffic = 100 - sum(e.traffic for e in extras if e.name == "canary")
    updates = {
        layout.uri: scalar(main.uri),
        layout.version: scalar(main.version),
        layout.content_hash: DoubleQuotedScalarString(main.content_hash),
    }
    if layout.traffic is not None:
        updates[layout.traffic] = main_traffic
    values = {
        "model": scalar(model),
        "version": scalar(main.version),
        "content-hash": DoubleQuotedScalarString(main.content_hash),
        # KServe's spec holds the canary while there is one: main's URI is kept beside its release.
        **({"storage-uri": scalar(main.uri)} if layout is platforms.KSERVE else {}),
        "git-commit": scalar(main.git_commit),
        "mlflow-run": scalar(main.mlflow_run),
        "source-pr": scalar(main.source_pr),
    }
    for op in ops:
        target = op.get("path")
        if target in updates and op.get("op") in ("replace", "add"):
            op["value"] = updates[target]
        elif target == "/metadata/annotations" and op.get("op") in ("replace", "add"):
            for key, value in values.items():
                op["value"][ANN + key] = value
    out = io.StringIO()
    rt.dump(ops, out)
    text = out.getvalue()
    # ruamel keeps a trailing comment block; blocks follow after one blank line, like the sections above
    if layout is platforms.KSERVE:
        blocks = "".join(_kserve_block(e, model) for e in extras)
    else:
        blocks = "".join(_block(i, e, model) for i, e in enumerate(extras, start=1))
    # without blocks the file ends as it did before any canary: one newline, byte for byte
    return text.rstrip("\n") + "\n" + (f"\n{blocks}" if blocks else "")


def plan(main: Release, extras: list[Extra], mode: Mode, new: Release | None, canary: int | None) -> tuple:
    """The state after a promotion of `mode` (pure: no files, no git)."""
    others = [e for e in extras if e.name == "shadow"]
    canaries = [e for e in extras if e.name == "canary"]
    # Same content as what runs: keep its record (commit, run, PR), so promoting it again is a no-op.
    for running in [main, *(e.release for e in extras)]:
        if new is not None and new.content_hash == running.content_hash:
            new = running
    if mode == "full":
        return new, []
    if mode == "canary":
        if canary is None or not 0 < canary < 100:
            raise PromoteError(f"--canary takes a percentage between 1 and 99, got {canary}")
        return main, [Extra("canary", new, canary), *others]
    if mode == "shadow":
        return main, [*canaries, Extra("shadow", new, 0)]
    if mode == "finish":
        # The canary if there is one (a shadow beside it stays); else the shadow, whose analysis
        # can promote it too: either way the predictor that was judged becomes main.
        if canaries:
            return canaries[0].release, others
        if not others:
            raise PromoteError("--finish: there is no canary or shadow to make the whole deployment")
        return others[0].release, []
    if not extras:  # abort
        raise PromoteError("--abort: there is no canary or shadow to remove")
    return main, []
