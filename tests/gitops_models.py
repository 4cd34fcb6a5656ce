"""Manifests for another model in a scratch repo, copied from credit-hgb's (tests only).

Tests that need two served models use a shipped model's name with credit-hgb's manifests renamed,
unless the repo already ships manifests for it (then nothing is written).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from modelops.delivery.patches import Extra, Release, read_state, render_state

TEMPLATE = "credit-hgb"


def has_manifests(root: Path, model: str) -> bool:
    """Whether `root/gitops` has a base manifest and a patch in every env for `model`."""
    gitops = root / "gitops"
    envs = [p.parent for p in (gitops / "envs").glob("*/kustomization.yaml")]
    return (gitops / "base" / f"{model}.yaml").exists() and all((e / f"{model}.yaml").exists() for e in envs)


def add_manifests(root: Path, model: str, like: str = TEMPLATE) -> bool:
    """Give `model` the base manifest and env patches of `like`, renamed; False if it had its own."""
    if has_manifests(root, model):
        return False
    gitops = root / "gitops"
    rename = lambda text: text.replace(like, model)  # noqa: E731
    (gitops / "base" / f"{model}.yaml").write_text(rename((gitops / "base" / f"{like}.yaml").read_text()))
    _edit(gitops / "base" / "kustomization.yaml", lambda k: k["resources"].append(f"{model}.yaml"))
    for env in sorted(p.parent for p in (gitops / "envs").glob("*/kustomization.yaml")):
        (env / f"{model}.yaml").write_text(rename((env / f"{like}.yaml").read_text()))

        def patch(k: dict) -> None:
            entry = next(p for p in k["patches"] if p["path"] == f"{like}.yaml")
            k["patches"].append({"path": f"{model}.yaml", "target": entry["target"] | {"name": model}})

        _edit(env / "kustomization.yaml", patch)
    return True


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def remove_manifests(root: Path, model: str, batch: bool = True) -> None:
    """Take `model` out of gitops/ (a model whose manifests are still under review), with its batch
    jobs unless `batch` is False (then an env that runs one no longer renders)."""
    gitops = root / "gitops"
    (gitops / "base" / f"{model}.yaml").unlink()
    _edit(gitops / "base" / "kustomization.yaml", lambda k: k["resources"].remove(f"{model}.yaml"))
    if batch and (gitops / "base" / "batch" / model).is_dir():
        shutil.rmtree(gitops / "base" / "batch" / model)
    for env in sorted(p.parent for p in (gitops / "envs").glob("*/kustomization.yaml")):
        (env / f"{model}.yaml").unlink()
        gone = {f"{model}.yaml"}
        if batch and (env / "batch" / f"{model}.yaml").exists():
            (env / "batch" / f"{model}.yaml").unlink()
            gone.add(f"batch/{model}.yaml")

        def drop(k: dict, gone: set[str] = gone) -> None:
            k["patches"] = [p for p in k["patches"] if p["path"] not in gone]
            if f"../../base/batch/{model}" in k.get("components", []) and batch:
                k["components"].remove(f"../../base/batch/{model}")
                if not k["components"]:
                    del k["components"]

        _edit(env / "kustomization.yaml", drop)


def write_release(
    root: Path,
    env: str,
    model: str,
    digest: str,
    version: str,
    canary: int | None = None,
    store: str = "file:///srv/store",
) -> None:
    """Write what `modelops promote` would into the env's patch file (with `canary`: a canary taking
    that share), through the same pure function, without publishing or registering anything."""
    path = root / "gitops" / "envs" / env / f"{model}.yaml"
    release = Release(version, digest, f"{store}/{model}/{digest}/", "0" * 40, "run", "7")
    main, _ = read_state(path)
    extras = [] if canary is None else [Extra("canary", release, canary)]
    path.write_text(render_state(path, model, release if canary is None else main, extras))
