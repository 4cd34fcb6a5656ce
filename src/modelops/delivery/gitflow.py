"""Git for promotions: preflight, push with rebase-and-retry, one PR per branch, history, rollback.

Git is the record of what runs (invariant 3): the history of an env is read from the trailers of
its promotion commits, and a rollback is a `git revert` of one of them (invariant 4). Concurrent
promotions serialize by rebasing onto whoever pushed first (invariant 5).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from modelops.delivery import manifests
from modelops.delivery.batch_patch import batch_file, render_release
from modelops.delivery.patches import GITOPS, PromoteError, read_state

PUSH_ATTEMPTS = 5


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


def rollback(env: str, to: str | None = None, model: str | None = None) -> str:
    """Revert the latest promotion of `env` (of `model` when given), or restore the patch file of
    the one model whose promotion deployed version `to` (and write its main release into the model's
    batch patch, if the env runs one): other models of the env are not touched."""
    preflight()
    entries = history(env)
    reverted = {e.rollback_of for e in entries if e.rollback_of}
    promotions = [e for e in entries if not e.rollback_of and not e.subject.startswith("rollback(")]
    if model is not None:
        promotions = [e for e in promotions if e.model == model]
    scope = f"{model} in {env}" if model else env
    if to is None:
        live = [e for e in promotions if e.commit not in reverted]
        if not live:
            raise PromoteError(f"no promotion of {scope} left to roll back in git history")
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
        raise PromoteError(f"no promotion of {scope} found in git history: nothing to roll back")
    to = to if to.startswith("v") else f"v{to}"  # the workflow passes the registry's number
    chosen = [e for e in promotions if e.version == to]
    if not chosen:
        known = ", ".join(dict.fromkeys(f"{e.model} {e.version}" for e in promotions))
        raise PromoteError(f"no promotion of version {to!r} in {scope} (promoted: {known})")
    if len({e.model for e in chosen}) > 1:
        names = ", ".join(sorted({e.model for e in chosen}))
        raise PromoteError(f"version {to} of several models was promoted to {env} ({names}): name one")
    target = chosen[0]
    patch = GITOPS / "envs" / env / f"{target.model}.yaml"
    git("checkout", target.commit, "--", str(patch))
    # The batch job follows the restored main; its schedule, input and shards stay as they are now.
    if (batch := batch_file(env, target.model)) is not None:
        batch.write_text(render_release(batch, read_state(patch)[0]))
        git("add", str(batch))
    if not git("status", "--porcelain", "--untracked-files=no"):
        raise PromoteError(f"{env} already serves what {target.model} {to} deployed: no commit")
    body = f"Env: {env}\nModel: {target.model}\nVersion: {to}\nRollback-To: {target.commit}"
    git("commit", "--quiet", "-m", f"rollback({env}): restore {target.model} {to}", "-m", body)
    return git("rev-parse", "HEAD")
