"""Promote: merge to deploy, revert to roll back.

`promote` publishes the packaged model (content-addressed, immutable), registers it in MLflow, edits
the env's patch file under gitops/ (round-trip YAML: only `value:` lines change), re-renders and
validates the env, commits with trailers, and only then moves the MLflow alias: git leads, the
registry mirrors it. A promotion commit touches exactly one file, so `git revert` of it restores
that file byte for byte, which is all a rollback is.
"""

from __future__ import annotations

import difflib
import io
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, PlainScalarString

from modelops.delivery import manifests
from modelops.errors import ModelopsError

Mode = Literal["full", "canary", "shadow", "finish", "abort"]
GITOPS = Path("gitops")
ANN = "modelops.dev/"
CONTAINER = "/componentSpecs/0/spec/containers/0"
BLOCK_HEADER = re.compile(r"^# --- (canary|shadow):", re.MULTILINE)
TRAILERS = ("Model", "Version", "Env", "Hash", "Source-PR")
PUSH_ATTEMPTS = 5


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


@dataclass(frozen=True)
class Result:
    """What a promotion did: the commit (None when nothing changed), and the diff it made."""

    commit: str | None
    diff: str
    release: Release
    message: str


# --------------------------------------------------------------------------- git


def git(*args: str, check: bool = True) -> str:
    """Run git in the current repository; a failure is a PromoteError with git's own words."""
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise PromoteError(f"git {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def preflight() -> str:
    """The current branch; refuses a detached HEAD or a dirty tree, outside a repository root."""
    if not GITOPS.is_dir():
        raise PromoteError(f"{GITOPS}/ not found: run from the repository root")
    branch = git("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if not branch:
        raise PromoteError("HEAD is detached: check out the branch to promote on (e.g. main)")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    if dirty:
        raise PromoteError(f"the work tree has uncommitted changes; commit or stash them first:\n{dirty}")
    return branch


# --------------------------------------------------------------------------- the patch file


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
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=2, offset=0)
    return rt


def _ops(text: str, path: Path) -> list[dict[str, Any]]:
    try:
        ops = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromoteError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(ops, list) or not all(isinstance(o, dict) and "op" in o for o in ops):
        raise PromoteError(f"{path}: expected a list of JSON-patch operations")
    return ops


def _value(ops: list[dict[str, Any]], path: str, where: Path) -> Any:
    for op in ops:
        if op.get("path") == path and op.get("op") in ("replace", "add"):
            return op.get("value")
    raise PromoteError(f"{where}: no operation for {path} (see gitops/README.md)")


def read_state(path: Path) -> tuple[Release, list[Extra]]:
    """The main release and any canary/shadow, as the patch file states them."""
    text = path.read_text()
    head, _, blocks = _split(text)
    ops = _ops(head, path)
    ann = _value(ops, "/metadata/annotations", path) or {}
    main = Release(
        version=str(_value(ops, f"/spec/predictors/0{CONTAINER}/env/1/value", path)),
        content_hash=str(_value(ops, f"/spec/predictors/0{CONTAINER}/env/2/value", path)),
        uri=str(_value(ops, "/spec/predictors/0/graph/modelUri", path)),
        git_commit=str(ann.get(ANN + "git-commit", "unknown")),
        mlflow_run=str(ann.get(ANN + "mlflow-run", "unknown")),
        source_pr=str(ann.get(ANN + "source-pr", "none")),
    )
    extras = []
    block_ops = _ops(blocks, path) if blocks.strip() else []
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
        f"- op: add\n  path: {p}/annotations\n  value:\n"
        f"    {ANN}version: {_plain(r.version)}\n"
        f'    {ANN}content-hash: "{r.content_hash}"\n'
        f"    {ANN}git-commit: {_plain(r.git_commit)}\n"
        f"    {ANN}mlflow-run: {_plain(r.mlflow_run)}\n"
        f"    {ANN}source-pr: {_plain(r.source_pr)}\n"
        f"{shadow}"
    )


def _plain(value: str) -> str:
    """A scalar that YAML reads back as this string (quoted only when it would read otherwise)."""
    return value if isinstance(yaml.safe_load(value), str) and value.strip() == value else f'"{value}"'


def _scalar(value: str) -> PlainScalarString | DoubleQuotedScalarString:
    """An explicit style: ruamel otherwise keeps the old value's quotes for the new one."""
    plain = isinstance(yaml.safe_load(value), str) and value.strip() == value
    return PlainScalarString(value) if plain else DoubleQuotedScalarString(value)


def render_state(path: Path, model: str, main: Release, extras: list[Extra]) -> str:
    """The patch file with main's values and the extra blocks replaced; all else byte for byte."""
    head, _, _ = _split(path.read_text())
    rt = _yaml()
    ops = rt.load(head)
    main_traffic = 100 - sum(e.traffic for e in extras if e.name == "canary")
    updates = {
        "/spec/predictors/0/graph/modelUri": _scalar(main.uri),
        f"/spec/predictors/0{CONTAINER}/env/1/value": _scalar(main.version),
        f"/spec/predictors/0{CONTAINER}/env/2/value": DoubleQuotedScalarString(main.content_hash),
        "/spec/predictors/0/traffic": main_traffic,
    }
    for op in ops:
        target = op.get("path")
        if target in updates and op.get("op") in ("replace", "add"):
            op["value"] = updates[target]
        elif target == "/metadata/annotations" and op.get("op") in ("replace", "add"):
            values = {
                "model": _scalar(model),
                "version": _scalar(main.version),
                "content-hash": DoubleQuotedScalarString(main.content_hash),
                "git-commit": _scalar(main.git_commit),
                "mlflow-run": _scalar(main.mlflow_run),
                "source-pr": _scalar(main.source_pr),
            }
            for key, value in values.items():
                op["value"][ANN + key] = value
    out = io.StringIO()
    rt.dump(ops, out)
    text = out.getvalue()
    # ruamel keeps a trailing comment block; blocks follow after one blank line, like the sections above
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
        if not canaries:
            raise PromoteError("--finish: there is no canary to make the whole deployment")
        return canaries[0].release, others
    if not extras:  # abort
        raise PromoteError("--abort: there is no canary or shadow to remove")
    return main, []


# --------------------------------------------------------------------------- promote


def promote(
    model: str,
    env: str,
    *,
    mode: Mode = "full",
    canary: int | None = None,
    source_pr: str | None = None,
    store: str | None = None,
    dry_run: bool = False,
) -> Result:
    """Publish, register, edit, validate and commit one promotion; move the alias after the commit."""
    from modelops.config import load_params
    from modelops.delivery import publish, registry
    from modelops.pipeline.package import package_dir

    load_params().model(model)  # an unknown model fails here, naming the known ones
    if not dry_run:
        preflight()
    path = patch_file(env, model)
    main, extras = read_state(path)
    new = None
    if mode in ("full", "canary", "shadow"):
        directory = package_dir(model)
        if not (directory / "MLmodel").exists():
            raise PromoteError(f"{directory}: no packaged model (run `dvc repro` or `dvc pull` first)")
        from modelops_serving.integrity import tree_hash

        digest = tree_hash(directory)
        if dry_run:
            known = [v for v in registry.versions(model) if v.content_hash == digest]
            version = f"v{known[0].version}" if known else f"v{len(registry.versions(model)) + 1}"
            uri = publish.artifact_uri(model, digest, store)
        else:
            uri = publish.publish(directory, model, store).uri
            head = git("rev-parse", "HEAD")
            number = registry.register(model, uri, digest, head, source_pr, None)
            version = f"v{number}"
        run = registry.find_run(model, digest) or "unknown"
        new = Release(version, digest, uri, git("rev-parse", "HEAD"), run, source_pr or "none")
    after_main, after_extras = plan(main, extras, mode, new, canary)
    before = path.read_text()
    after = render_state(path, model, after_main, after_extras)
    diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}"
        )
    )
    released = new or after_main
    if after == before:
        return Result(
            None, "", released, f"{model} is already deployed to {env} as {released.version}: no commit"
        )
    _check_rendered(env, path, after)
    if dry_run:
        return Result(None, diff, released, f"dry run: merging would commit this change to {path}")
    path.write_text(after)
    git("add", str(path))
    subject = {
        "full": f"promote({env}): {model} {released.version}",
        "canary": f"canary({env}): {model} {released.version} takes {canary}%",
        "shadow": f"shadow({env}): {model} {released.version} mirrors traffic",
        "finish": f"promote({env}): {model} {released.version} (canary finished)",
        "abort": f"abort({env}): {model} back to {after_main.version} only",
    }[mode]
    trailers = {
        "Model": model,
        "Version": released.version,
        "Env": env,
        "Hash": released.content_hash,
        "Source-PR": source_pr or released.source_pr,
    }
    body = "\n".join(f"{k}: {v}" for k, v in trailers.items())
    git("commit", "--quiet", "-m", subject, "-m", f"Mode: {mode}\n{body}")
    return Result(git("rev-parse", "HEAD"), diff, released, subject)


def _check_rendered(env: str, path: Path, text: str) -> None:
    """Render and validate the env with the edited file in a scratch copy: nothing is written on failure."""
    with tempfile.TemporaryDirectory(prefix="modelops-promote-") as tmp:
        scratch = Path(tmp) / "gitops"
        shutil.copytree(GITOPS, scratch)
        (scratch / path.relative_to(GITOPS)).write_text(text)
        try:
            manifests.validate(manifests.render(env, scratch), scratch, where=f"envs/{env}")
        except ModelopsError as exc:
            raise PromoteError(
                f"the promotion would break gitops/envs/{env}; nothing written:\n{exc}"
            ) from None


def sync_alias(model: str, env: str) -> str | None:
    """Point the MLflow alias `env` at what git serves there (git leads; this only follows)."""
    from modelops.delivery import registry

    main, _ = read_state(patch_file(env, model))
    if not main.version.startswith("v"):
        return None
    registry.set_alias(model, env, main.version.removeprefix("v"))
    return main.version


# --------------------------------------------------------------------------- push and PRs


def push(branch: str, redo: Any = None) -> None:
    """Push HEAD to origin/branch; on a race rebase onto the winner and retry (redo on conflicts)."""
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        proc = subprocess.run(
            ["git", "push", "--quiet", "origin", f"HEAD:{branch}"], capture_output=True, text=True
        )
        if proc.returncode == 0:
            return
        if attempt == PUSH_ATTEMPTS:
            raise PromoteError(f"push to origin/{branch} failed {attempt} times: {proc.stderr.strip()}")
        print(f"push to origin/{branch} was rejected (attempt {attempt}): rebasing onto it", file=sys.stderr)
        git("fetch", "--quiet", "origin", branch)
        rebased = subprocess.run(
            ["git", "rebase", "--quiet", f"origin/{branch}"], capture_output=True, text=True
        )
        if rebased.returncode != 0:
            git("rebase", "--abort", check=False)
            if redo is None:
                raise PromoteError(f"rebase onto origin/{branch} conflicts: {rebased.stderr.strip()}")
            print(f"the rebase conflicts: redoing the edit on top of origin/{branch}", file=sys.stderr)
            git("reset", "--quiet", "--hard", f"origin/{branch}")
            redo()


def open_pr(branch: str, title: str, body: str) -> str:
    """Force-push HEAD to `branch` and open, or update, the one pull request from it."""
    git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}")
    found = subprocess.run(
        [
            "gh",
            "pr",
            "list",
            "--head",
            branch,
            "--state",
            "open",
            "--json",
            "number",
            "--jq",
            ".[0].number // empty",
        ],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise PromoteError(f"gh pr list failed: {found.stderr.strip()}")
    number = found.stdout.strip()
    if number and number != "null":
        cmd = ["gh", "pr", "edit", number, "--title", title, "--body", body]
    else:
        cmd = ["gh", "pr", "create", "--head", branch, "--title", title, "--body", body]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PromoteError(f"{' '.join(cmd[:3])} failed: {done.stderr.strip()}")
    return number or done.stdout.strip()


# --------------------------------------------------------------------------- history and rollback


@dataclass(frozen=True)
class Entry:
    """One promotion commit of an env, from its trailers."""

    commit: str
    subject: str
    model: str
    version: str
    content_hash: str
    source_pr: str
    author: str
    date: str
    rollback_of: str = ""


def history(env: str) -> list[Entry]:
    """Promotions of `env`, newest first, read from git (the only record that matters)."""
    patch_file_dir = GITOPS / "envs" / env
    if not patch_file_dir.is_dir():
        raise PromoteError(f"unknown env {env!r} (known: {', '.join(manifests.envs())})")
    log = git(
        "log", "--format=%H%x02%an%x02%aI%x02%s%x02%(trailers:only,unfold)%x03", "--", str(patch_file_dir)
    )
    entries = []
    # \x02/\x03, not \x1c-\x1f: str.strip() counts those as whitespace
    for record in filter(None, (r.strip() for r in log.split("\x03"))):
        sha, author, date, subject, trailer_text = record.split("\x02")
        trailers = dict(line.split(": ", 1) for line in trailer_text.splitlines() if ": " in line)
        if trailers.get("Env") != env:
            continue
        entries.append(
            Entry(
                sha,
                subject,
                trailers.get("Model", "?"),
                trailers.get("Version", "?"),
                trailers.get("Hash", "?"),
                trailers.get("Source-PR", "none"),
                author,
                date,
                trailers.get("Rollback-Of", ""),
            )
        )
    return entries


def rollback(env: str, to: str | None = None) -> str:
    """Revert the latest promotion of `env` (or restore the manifests that deployed version `to`)."""
    preflight()
    entries = history(env)
    reverted = {e.rollback_of for e in entries if e.rollback_of}
    promotions = [e for e in entries if not e.rollback_of and not e.subject.startswith("rollback(")]
    if to is None:
        live = [e for e in promotions if e.commit not in reverted]
        if not live:
            raise PromoteError(f"no promotion of {env} left to roll back in git history")
        target = live[0]
        git("revert", "--no-edit", target.commit)
        subject = git("log", "-1", "--format=%s")
        trailers = f"Env: {env}\nModel: {target.model}\nRollback-Of: {target.commit}"
        git(
            "commit",
            "--quiet",
            "--amend",
            "-m",
            subject,
            "-m",
            f"This reverts commit {target.commit}.",
            "-m",
            trailers,
        )
        return git("rev-parse", "HEAD")
    if not promotions:
        raise PromoteError(f"no promotion of {env} found in git history: nothing to roll back")
    chosen = next((e for e in promotions if e.version == to), None)
    if chosen is None:
        known = ", ".join(dict.fromkeys(e.version for e in promotions))
        raise PromoteError(f"no promotion of version {to!r} in {env} (promoted: {known})")
    git("checkout", chosen.commit, "--", str(GITOPS / "envs" / env))
    if not git("status", "--porcelain", "--untracked-files=no"):
        raise PromoteError(f"{env} already serves what {to} deployed: no commit")
    body = f"Env: {env}\nModel: {chosen.model}\nVersion: {to}\nRollback-To: {chosen.commit}"
    git("commit", "--quiet", "-m", f"rollback({env}): restore {chosen.model} {to}", "-m", body)
    return git("rev-parse", "HEAD")


def status(models: list[str]) -> list[dict[str, str]]:
    """Per env and model: the version git serves, where the MLflow alias points, and whether they agree."""
    from modelops.delivery import registry

    rows = []
    for env in manifests.envs():
        for model in models:
            path = GITOPS / "envs" / env / f"{model}.yaml"
            if not path.exists():
                continue
            main, extras = read_state(path)
            alias = registry.alias_version(model, env)
            alias_v = f"v{alias}" if alias else "none"
            agree = alias_v == main.version or (main.version == "unpromoted" and alias is None)
            rows.append(
                {
                    "env": env,
                    "model": _scalar(model),
                    "git": main.version + "".join(f" +{e.name} {e.release.version}" for e in extras),
                    "mlflow_alias": alias_v,
                    "agree": "yes" if agree else "NO",
                }
            )
    return rows
