"""`.github/CODEOWNERS`: who must review what, parsed and edited without losing its meaning.

GitHub asks the owners of every path a pull request touches for a review (required once branch
protection turns on "Require review from Code Owners"), and the LAST matching line decides a
path's owners. The shipped file therefore ends with the production block: whatever reaches
gitops/envs/production/ (a model's patch, its batch job, the image digest) needs the release
owners, whichever model it belongs to. `modelops new model` inserts a model's block above that
block and checks the result: the model's own files go to its owner, its production files stay
with the release owners, and a malformed file is refused (naming its line) before anything is
written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from modelops.changeset import ScaffoldError

PATH = Path(".github/CODEOWNERS")
DEFAULT_OWNER = "@your-org/ml-team"
RELEASE_OWNER = "@your-org/release-team"
PROTECTED = "/gitops/envs/production/"
# @user, @org/team or an e-mail address, as GitHub accepts them.
OWNER = re.compile(r"^(@[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)?|[^@\s]+@[^@\s]+\.[^@\s]+)$")
HEADER = """\
# Who must review what: GitHub asks the owners of every path a pull request touches for a review
# (with branch protection's "Require review from Code Owners", their approval is required).
# `modelops new model` adds one block per model above the production block; replace the
# placeholder teams with yours. The last matching line wins: the production block stays last.
"""
PRODUCTION_BLOCK = f"""\
# Production: whatever reaches gitops/envs/production/ (a model's patch or batch job, the image
# digest) needs the release owners, whichever model it is. Last, so it wins over the blocks above.
{PROTECTED} {RELEASE_OWNER}
"""


@dataclass(frozen=True)
class Rule:
    """One line of CODEOWNERS: its number, its pattern and its owners (none: the path is unowned)."""

    line: int
    pattern: str
    owners: tuple[str, ...]


def parse(text: str, source: Path | str = PATH) -> list[Rule]:
    """The rules of a CODEOWNERS file; a line GitHub would reject is a ScaffoldError naming it."""
    rules, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()  # comments, whole-line or after a space
        if not line:
            continue
        pattern, *owners = line.split()
        why = None
        if pattern.startswith("!"):
            why = "negation (!) is not supported in CODEOWNERS"
        elif "[" in pattern or "]" in pattern:
            why = "character ranges ([...]) are not supported in CODEOWNERS"
        elif pattern.startswith("\\#"):
            why = "an escaped # is not supported in CODEOWNERS"
        elif bad := [o for o in owners if not OWNER.match(o)]:
            why = f"{', '.join(map(repr, bad))} is not an owner (@user, @org/team or an e-mail address)"
        if why:
            problems.append(f"{source}:{number}: {raw.strip()!r}: {why}")
        else:
            rules.append(Rule(number, pattern, tuple(owners)))
    if problems:
        raise ScaffoldError("CODEOWNERS is malformed; nothing was written:\n" + "\n".join(problems))
    return rules


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    """gitignore-style matching as CODEOWNERS uses it, for repository-relative paths."""
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    body, out, i = pattern.strip("/"), "", 0
    while i < len(body):
        if body.startswith("**", i):
            out, i = out + ".*", i + 2
        elif body[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif body[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(body[i]), i + 1
    # A pattern names a file, or a directory and everything beneath it.
    return re.compile(("^" if anchored else "^(.*/)?") + out + "(/.*)?$")


def owners_of(rules: Iterable[Rule], path: str) -> tuple[str, ...] | None:
    """The owners of a repository-relative path: the last rule that matches it (None: no rule)."""
    found = None
    for rule in rules:
        if _regex(rule.pattern).match(path.lstrip("/")):
            found = rule.owners
    return found


def model_block(name: str, dataset: str, owner: str) -> str:
    """The lines that give a model's outputs and manifests to its owner."""
    return (
        f"# {name} (dataset {dataset}): its outputs and manifests\n"
        f"/models/{name}/ {owner}\n"
        f"/gitops/base/{name}.yaml {owner}\n"
        f"/gitops/base/kserve/{name}.yaml {owner}\n"
        f"/gitops/envs/*/{name}.yaml {owner}\n"
        f"/gitops/base/batch/{name}/ {owner}\n"
        f"/gitops/envs/*/batch/{name}.yaml {owner}\n"
    )


def model_paths(name: str, envs: Iterable[str]) -> list[str]:
    """A file of each kind the model's block must own (its outputs, base, every env's patches)."""
    paths = [
        f"models/{name}/model/MLmodel",
        f"gitops/base/{name}.yaml",
        f"gitops/base/kserve/{name}.yaml",
        f"gitops/base/batch/{name}/cronjob.yaml",
    ]
    for env in envs:
        paths += [f"gitops/envs/{env}/{name}.yaml", f"gitops/envs/{env}/batch/{name}.yaml"]
    return paths


def add_model(text: str | None, name: str, dataset: str, owner: str, envs: Iterable[str]) -> str:
    """CODEOWNERS with the model's block inserted above the production block (a new file if None).

    Refuses a malformed file, and a result in which a line below the new block would take the
    model's non-production files from its owner."""
    if not OWNER.match(owner):
        raise ScaffoldError(f"--owner {owner!r}: expected @org/team, @user or an e-mail address")
    if text is None:
        return f"{HEADER}\n{model_block(name, dataset, owner)}\n{PRODUCTION_BLOCK}"
    rules = parse(text)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    protected = [r.line for r in rules if r.pattern.startswith(PROTECTED.rstrip("/"))]
    at = protected[0] - 1 if protected else len(lines)
    while at > 0 and lines[at - 1].lstrip().startswith("#"):  # keep the block's comment with it
        at -= 1
    lead = "\n" if at > 0 and lines[at - 1].strip() else ""
    block = lead + model_block(name, dataset, owner) + ("\n" if at < len(lines) else "")
    added = block.count("\n")
    result = "".join([*lines[:at], block, *lines[at:]])
    below = [r for r in parse(result) if r.line > at + added]
    for path in model_paths(name, envs):
        if path.startswith(PROTECTED.lstrip("/")):
            continue  # the production block below is meant to own these
        rule = next((r for r in reversed(below) if _regex(r.pattern).match(path)), None)
        if rule is not None:
            raise ScaffoldError(
                f"{PATH}:{rule.line - added}: {rule.pattern!r} comes after the model blocks and would "
                f"own {path} instead of {owner}: move it above them; nothing was written"
            )
    return result
