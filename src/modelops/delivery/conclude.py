"""Conclude a canary analysis: finish the canary in a pull request, abort it, or wait.

`modelops analyze` answers promote, abort or wait for the canary (or shadow) of one model in one
env. This acts on the answer, and only while the analysis still describes what git deploys: an
analysis of canary v3 must never finish the canary v4 that replaced it. Each action is an ordinary
promotion commit (`promote --finish` or `--abort`) whose message holds the analysis (DESIGN
invariant 11), so an automatic abort is still a commit a person reviews after the fact and undoes
with `git revert`. Running it again on the same analysis changes nothing: a pull request branch
that already holds the same change is reused, and a decision already carried out is recognised
from the manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelops.delivery.gitflow import git, open_pr, preflight, push
from modelops.delivery.patches import Extra, PromoteError, Release, patch_file, plan, read_state
from modelops.delivery.promote import promote

Decision = Literal["promote", "abort", "wait"]


class ConcludeError(PromoteError):
    """An analysis cannot be acted on (unreadable, for another model or env, stale); nothing was
    written. A promotion that cannot be done: the exit code of PromoteError."""


class _Side(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # analyze may add fields: not ours to refuse

    version: str = Field(min_length=1)
    hash: str = Field(min_length=1)


class _Canary(_Side):
    kind: Literal["canary", "shadow"]


class _AnalysisFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(min_length=1)
    env: str = Field(min_length=1)
    decision: Decision
    canary: _Canary
    main: _Side


@dataclass(frozen=True)
class Analysis:
    """What conclude needs of an analysis: its decision, what it judged, and its markdown report."""

    path: Path
    model: str
    env: str
    decision: Decision
    kind: Literal["canary", "shadow"]
    canary: Release
    main: Release
    markdown: str

    def judged(self) -> str:
        """E.g. "canary v3 (0123456789ab) against main v2 (ba9876543210)"."""
        return f"{self.kind} {_short(self.canary)} against main {_short(self.main)}"


@dataclass(frozen=True)
class Outcome:
    """What conclude did: nothing, a pull request (its number or URL), or a commit pushed."""

    action: Literal["none", "pr", "commit"]
    message: str
    commit: str | None = None
    pr: str | None = None


def read(path: Path) -> Analysis:
    """The analysis JSON and the markdown beside it (same stem, .md); errors name file and key."""
    hint = "write both with `modelops analyze MODEL --env ENV --out DIR`"
    if path.suffix != ".json":
        raise ConcludeError(
            f"{path}: expected the analysis JSON (DIR/MODEL.json) that `modelops analyze` writes"
        )
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConcludeError(f"{path}: not found ({hint})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConcludeError(f"{path}: not a readable JSON file: {exc}") from None
    if not isinstance(raw, dict):
        raise ConcludeError(f"{path}: expected a JSON object at the top level, got {type(raw).__name__}")
    try:
        data = _AnalysisFile.model_validate(raw)
    except ValidationError as exc:
        problems = [f"  {'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors()]
        raise ConcludeError(
            f"{path}: not an analysis `modelops analyze` writes\n" + "\n".join(problems)
        ) from None
    report = path.with_suffix(".md")
    try:
        markdown = report.read_text().strip()
    except FileNotFoundError:
        raise ConcludeError(f"{report}: not found: the report goes into the commit or PR ({hint})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConcludeError(f"{report}: not readable: {exc}") from None
    if not markdown:
        raise ConcludeError(f"{report}: empty: the report goes into the commit or PR ({hint})")
    canary = Release(data.canary.version, data.canary.hash, "")
    main = Release(data.main.version, data.main.hash, "")
    return Analysis(path, data.model, data.env, data.decision, data.canary.kind, canary, main, markdown)


def check(analysis: Analysis, main: Release, extras: list[Extra], where: Path) -> bool:
    """True when the analysis still describes what `where` deploys (act on it), False when its
    decision already holds (nothing to do); else refuse, naming what it judged and what runs now."""
    judged = [e for e in extras if e.name == analysis.kind and _same(e.release, analysis.canary)]
    if judged and _same(main, analysis.main):
        return True
    others = any(e.name == analysis.kind for e in extras)
    if analysis.decision == "promote" and _same(main, analysis.canary) and not others:
        return False
    if analysis.decision == "abort" and _same(main, analysis.main) and not extras:
        return False
    now = " + ".join([f"main {_short(main)}", *(f"{e.name} {_short(e.release)}" for e in extras)])
    raise ConcludeError(
        f"{analysis.path} is stale: it judged {analysis.judged()}, but {where} now deploys {now}; "
        f"nothing done: run `modelops analyze {analysis.model} --env {analysis.env}` again"
    )


def conclude(model: str, env: str, analysis_file: Path) -> Outcome:
    """Act on one analysis: promote -> one PR that finishes; abort -> per canary.on_abort; wait -> nothing."""
    from modelops.config import load_params

    params = load_params()
    params.model(model)  # an unknown model fails here, naming the known ones
    analysis = read(analysis_file)
    if (analysis.model, analysis.env) != (model, env):
        raise ConcludeError(
            f"{analysis_file} is the analysis of {analysis.model} in {analysis.env}, "
            f"not of {model} in {env}: nothing done"
        )
    if analysis.decision == "wait":
        return Outcome("none", f"wait: {model} in {env}: {analysis.judged()} needs more data; nothing done")
    start = preflight()
    path = patch_file(env, model)
    if not check(analysis, *read_state(path), path):
        done = {"promote": "finished", "abort": "aborted"}[analysis.decision]
        return Outcome(
            "none", f"{analysis.decision}: {model} in {env}: already {done} ({path}); nothing done"
        )
    if analysis.decision == "promote":
        _finishes_the_judged(analysis, path)
        return _pull_request(analysis, "finish", f"canary/{env}/{model}", start)
    if params.canary.on_abort == "pr":
        return _pull_request(analysis, "abort", f"canary-abort/{env}/{model}", start)
    return _commit_abort(analysis, path, start)


def _finishes_the_judged(analysis: Analysis, path: Path) -> None:
    """`promote --finish` makes the canary main when there is one: refuse if that is not what was judged."""
    main, extras = read_state(path)
    after, _ = plan(main, extras, "finish", None, None)
    if after.content_hash != analysis.canary.content_hash:
        raise ConcludeError(
            f"{path} has a canary {_short(after)} beside the analysed {analysis.kind} "
            f"{_short(analysis.canary)}: `promote --finish` would make that canary main, not what "
            "was judged; conclude (or abort) the canary first. Nothing done"
        )


def _commit(analysis: Analysis, mode: Literal["finish", "abort"]) -> str:
    """`promote --MODE` on the current branch, its message rewritten to hold the analysis; the message."""
    result = promote(analysis.model, analysis.env, mode=mode)
    if result.commit is None:  # check() saw something to do, so promote must have changed the file
        raise ConcludeError(f"promote --{mode} made no commit: {result.message}")
    subject = git("log", "-1", "--format=%s")
    trailers = git("log", "-1", "--format=%(trailers:only,unfold)")
    added = {
        "Decision": analysis.decision,
        "Analysed-Kind": analysis.kind,
        "Analysed-Version": analysis.canary.version,
        "Analysed-Hash": analysis.canary.content_hash,
    }
    intro = (
        f"`modelops conclude` acted on the analysis of {analysis.judged()}: {analysis.decision}. "
        "The analysis follows; `git revert` of this commit undoes it."
    )
    trailer_lines = "\n".join([trailers, *(f"{k}: {v}" for k, v in added.items())])
    message = f"{subject}\n\n{intro}\n\n{analysis.markdown}\n\n{trailer_lines}\n"
    # whitespace cleanup only: the markdown's `#` headings are not comments
    git("commit", "--quiet", "--amend", "--cleanup=whitespace", "-m", message)
    return git("log", "-1", "--format=%B")


def _pull_request(analysis: Analysis, mode: Literal["finish", "abort"], branch: str, start: str) -> Outcome:
    """Commit on `branch` (from the current HEAD) and open or update its one PR, body = the analysis."""
    git("checkout", "--quiet", "-B", branch)
    try:
        _commit(analysis, mode)
        if _same_change_on_origin(branch):
            git("reset", "--quiet", "--hard", f"refs/remotes/origin/{branch}")  # no second commit
        sha = git("rev-parse", "HEAD")
        title = git("log", "-1", "--format=%s")
        number = open_pr(branch, title, analysis.markdown)
    finally:
        git("checkout", "--quiet", start)
    what = "finishes" if mode == "finish" else "aborts"
    return Outcome(
        "pr",
        f"{analysis.decision}: pull request {number} from {branch} {what} {analysis.judged()}: {title}",
        sha,
        number,
    )


def _same_change_on_origin(branch: str) -> bool:
    """Whether origin's `branch` already holds HEAD's change: same parent, tree and message."""
    if not git("ls-remote", "--heads", "origin", f"refs/heads/{branch}"):
        return False
    git("fetch", "--quiet", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
    theirs, ours = f"refs/remotes/origin/{branch}", "HEAD"
    return all(
        git("rev-parse", f"{theirs}{suffix}") == git("rev-parse", f"{ours}{suffix}")
        for suffix in ("^", "^{tree}")
    ) and git("log", "-1", "--format=%B", theirs) == git("log", "-1", "--format=%B", ours)


class _AlreadyDone(Exception):
    """Raised out of a push's redo: the rebased-onto state already has the abort."""


def _commit_abort(analysis: Analysis, path: Path, start: str) -> Outcome:
    """Commit the abort on the current branch and push it. A failed push, or an abort someone else
    pushed first, leaves HEAD where it was."""
    before = git("rev-parse", "HEAD")

    def redo() -> None:
        # After a lost race the edit is redone on top of origin: judge that state again first.
        if not check(analysis, *read_state(path), path):
            raise _AlreadyDone
        _commit(analysis, "abort")

    try:
        message = _commit(analysis, "abort")
        push(start, redo=redo)
        # A rebase drops a commit whose change is already upstream (an abort, or a finish that
        # also removed the canary block): then HEAD is theirs, to be judged like a redo's base.
        if git("log", "-1", "--format=%B") != message:
            if check(analysis, *read_state(path), path):
                raise ConcludeError(f"rebasing onto origin/{start} dropped the abort commit; nothing pushed")
            raise _AlreadyDone
    except _AlreadyDone:
        upstream = git("log", "-1", "--format=%h %s", f"refs/remotes/origin/{start}")
        git("reset", "--quiet", "--keep", before)
        return Outcome(
            "none",
            f"abort: origin/{start} already aborted {analysis.judged()} (now at {upstream}); nothing pushed",
        )
    except BaseException:
        git("reset", "--quiet", "--keep", before, check=False)
        raise
    sha = git("rev-parse", "HEAD")
    subject = git("log", "-1", "--format=%s")
    return Outcome("commit", f"abort: pushed {sha[:12]} to origin/{start}: {subject}", sha)


def _same(release: Release, judged: Release) -> bool:
    """Same version and content: a rebuilt "v2" with another hash is another canary."""
    return (release.version, release.content_hash) == (judged.version, judged.content_hash)


def _short(release: Release) -> str:
    """E.g. "v2 (0123456789ab)": enough of the hash to tell two builds apart in a message."""
    return f"{release.version} ({release.content_hash[:12]})"
