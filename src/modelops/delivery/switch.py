"""`modelops platform set ENV PLATFORM`: switch an env's serving platform in one commit.

The setting is `platforms.<env>` in params.yaml; this writes it together with what it implies, so
the switch stays one reviewable, revertable commit: the env's kustomization renders the other
platform's base and targets that kind, and each model's patch is rewritten from the platform's
template with the release it serves now (main's version, hash, URI and record; the env's replicas
and resources). Everything is rendered and validated on a scratch copy first; a refusal writes
nothing. An env with a canary or shadow, or with batch jobs on KServe, is refused: finish or abort
first.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from modelops.app import errors_to_exit
from modelops.changeset import Content, dump, round_trip, write_all
from modelops.config import PARAMS_FILE, PLATFORMS, load_params, parse_params
from modelops.delivery import manifests, patches, platforms
from modelops.delivery.patches import PromoteError
from modelops.errors import ModelopsError

app = typer.Typer(help="The serving platform an env runs on (params.yaml platforms:).", no_args_is_help=True)


def _bases(layout: platforms.Layout) -> str:
    return "../../" + layout.base


def _kustomization(text: str, old: platforms.Layout, new: platforms.Layout, source: Path) -> str:
    """The env's kustomization rendering `new`'s base and patching `new`'s kind."""
    rt = round_trip()
    data = rt.load(text)
    resources = data.get("resources") or []
    if _bases(old) not in resources:
        raise PromoteError(f"{source}: resources does not list {_bases(old)}, the {old.name} base")
    resources[resources.index(_bases(old))] = _bases(new)
    for patch in data.get("patches") or []:
        target = patch.get("target") if isinstance(patch, Mapping) else None
        if isinstance(target, Mapping) and target.get("kind") == old.kind:
            target.update(new.target)
    return dump(rt, data)


def _params(text: str, env: str, platform: str) -> str:
    """params.yaml with `platforms.<env>: <platform>`, every other line as it was."""
    lines = text.splitlines(keepends=True)
    entry = f"  {env}: {platform}\n"
    head = next(
        (i for i, line in enumerate(lines) if line.split("#")[0].rstrip() in ("platforms:", "platforms: {}")),
        None,
    )
    if head is None:
        at = next((i for i, line in enumerate(lines) if line.startswith("models:")), len(lines))
        return "".join([*lines[:at], "platforms:\n", entry, "\n", *lines[at:]])
    lines[head] = "platforms:\n" if "{}" in lines[head] else lines[head]
    end = head + 1
    while end < len(lines) and lines[end].startswith("  "):
        if lines[end].strip().split(":")[0] == env:
            lines[end] = entry
            return "".join(lines)
        end += 1
    return "".join([*lines[:end], entry, *lines[end:]])


def _patch(path: Path, model: str, env: str, old: platforms.Layout, new: platforms.Layout) -> str:
    """The model's patch for `new`, serving what the current one serves."""
    from modelops.delivery import scaffold

    main, extras = patches.read_state(path)
    if extras:
        raise PromoteError(
            f"{path}: {model} has a {extras[0].name} in {env}; finish or abort it before switching "
            "the platform (`modelops promote --finish` / `--abort`)"
        )
    ops = yaml.safe_load(path.read_text()) or []
    found = {op.get("path"): op.get("value") for op in ops if isinstance(op, Mapping)}
    sizing = (found.get(old.replicas[0], 1), found.get(old.resources))
    if sizing[1] is None:
        raise PromoteError(f"{path}: no operation for {old.resources} to carry the env's resources over")
    return patches.render_text(scaffold.env_patch(model, env, *sizing, new), model, main, [])


def plan(env: str, platform: str, root: Path = Path()) -> dict[Path, Content]:
    """Every file the switch writes (empty: the env already runs on `platform`); checked."""
    if platform not in PLATFORMS:
        raise PromoteError(f"unknown platform {platform!r} (known: {', '.join(PLATFORMS)})")
    gitops = root / manifests.GITOPS
    if env not in manifests.envs(gitops):
        raise PromoteError(f"unknown env {env!r} (known: {', '.join(manifests.envs(gitops))})")
    old, new = platforms.of_env(env, root), platforms.LAYOUTS[platform]
    if old is new:
        return {}
    env_dir = gitops / "envs" / env
    if new is platforms.KSERVE and any((env_dir / "batch").glob("*.yaml")):
        raise PromoteError(f"{env_dir / 'batch'}: batch jobs are written for Seldon envs only so far")
    kustomization = env_dir / "kustomization.yaml"
    changes: dict[Path, Content] = {
        kustomization: _kustomization(kustomization.read_text(), old, new, kustomization)
    }
    for entry in yaml.safe_load(kustomization.read_text()).get("patches") or []:
        if (entry.get("target") or {}).get("kind") == old.kind:
            path = env_dir / entry["path"]
            changes[path] = _patch(path, entry["target"]["name"], env, old, new)
    params_path = root / PARAMS_FILE
    text = _params(params_path.read_text(), env, platform)
    parse_params(yaml.safe_load(text), str(params_path), root)
    changes[params_path] = text
    _check(changes, env, new, gitops)
    return changes


def _check(changes: Mapping[Path, Content], env: str, new: platforms.Layout, gitops: Path) -> None:
    edits = {p: str(t) for p, t in changes.items() if gitops in p.parents}
    with manifests.edited_copy(edits, gitops, prefix="modelops-platform-") as scratch:
        try:
            objects = manifests.render(env, scratch)
            manifests.validate(objects, scratch, where=f"envs/{env}", env=env)
        except ModelopsError as exc:
            raise PromoteError(
                f"switching {env} to {new.name} would break it; nothing written:\n{exc}"
            ) from None
    kinds = {o.get("kind") for o in objects if o.get("kind") in manifests.MODEL_KINDS}
    if kinds - {new.kind}:
        raise PromoteError(f"envs/{env} would still render {', '.join(sorted(kinds - {new.kind}))}")


@app.command("set")
@errors_to_exit
def set_platform(
    env: Annotated[str, typer.Argument(help="the env under gitops/envs/")],
    platform: Annotated[str, typer.Argument(help=f"one of {', '.join(PLATFORMS)}")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the files; write nothing")] = False,
) -> None:
    """Switch ENV to PLATFORM: params.yaml, the env's kustomization and patches, in one commit."""
    from modelops.delivery.gitflow import git, preflight

    load_params()  # a malformed params.yaml fails here, before anything
    if not dry_run:
        preflight()
    changes: Mapping[Path, Any] = plan(env, platform)
    if not changes:
        print(f"{env} already runs on {platform}: no commit")
        return
    print("\n".join(f"  {p}" for p in changes))
    if dry_run:
        print(f"dry run: switching {env} to {platform} would commit the files above")
        return
    write_all(changes)
    git("add", *map(str, changes))
    git("commit", "--quiet", "-m", f"platform({env}): {platform}", "-m", f"Env: {env}\nPlatform: {platform}")
    print(f"platform({env}): {platform}")
