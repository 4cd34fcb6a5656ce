"""`modelops image pin`: the serving image becomes a reviewed, revertable commit, like a model.

The image workflow (`.github/workflows/image.yml`) builds serving/Dockerfile, pushes it, attests
it, and calls this with the digest the registry answered. Each env's kustomization.yaml then maps
the manifests' logical image name to that build (`images: [{name: modelops-serving, newName:
<repository>, digest: sha256:...}]`; round-trip YAML, so only those values change), every env is
rendered and validated in a scratch copy first (a failure writes nothing), and the change is one
commit with `Image:` and `Envs:` trailers: on its own branch with one pull request
(`--branch image/serving --open-pr`) that the next build updates. Reverting the commit brings the
previous image back.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from modelops.changeset import dump, round_trip, write_all
from modelops.delivery import manifests
from modelops.delivery.gitflow import git, preflight
from modelops.delivery.image_rules import DIGEST, LOGICAL_NAME
from modelops.delivery.patches import GITOPS, PromoteError
from modelops.errors import ModelopsError

# A registry repository without tag or digest: host[:port]/path, lowercase (the OCI name grammar).
REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?"  # registry host[:port]
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+$"  # path components
)


class PinError(PromoteError):
    """The image cannot be pinned as asked; nothing was written (same exit code as a promotion)."""


@dataclass(frozen=True)
class Pinned:
    """What a pin did: the commit (None when nothing changed or on a dry run) and its diff."""

    commit: str | None
    diff: str
    image: str
    envs: list[str]
    message: str


def check_digest(digest: str) -> str:
    """A digest as the registry reports it: `sha256:` and 64 lowercase hex digits."""
    if not DIGEST.match(digest):
        raise PinError(f"--digest {digest!r}: expected sha256:<64 lowercase hex digits>")
    return digest


def check_repository(image: str) -> str:
    """A registry repository to pull from: host/path, lowercase, no tag and no digest."""
    if not REPOSITORY.match(image):
        raise PinError(
            f"--image {image!r}: expected a registry repository without tag or digest, "
            "e.g. ghcr.io/your-org/modelops-serving (lowercase)"
        )
    return image


def _entry(images: CommentedSeq, path: Path) -> CommentedMap | None:
    found = [e for e in images if isinstance(e, Mapping) and e.get("name") == LOGICAL_NAME]
    if len(found) > 1:
        raise PinError(f"{path}: images lists {LOGICAL_NAME} {len(found)} times; keep one entry")
    return found[0] if found else None


def edit(text: str, path: Path, digest: str, image: str | None) -> str:
    """An env kustomization with its `images:` entry for the server pinned to `digest`."""
    rt = round_trip(sequence=4, offset=2)
    data = rt.load(text)
    if not isinstance(data, CommentedMap):
        raise PinError(f"{path}: expected a kustomization mapping")
    images = data.get("images")
    if images is None:
        images = data["images"] = CommentedSeq()
    if not isinstance(images, CommentedSeq):
        raise PinError(f"{path}: images must be a list of kustomize image entries")
    entry = _entry(images, path)
    if entry is None:
        if image is None:
            raise PinError(f"{path}: no images entry for {LOGICAL_NAME}: give --image REPOSITORY")
        entry = CommentedMap(name=LOGICAL_NAME)
        images.append(entry)
    if image is not None:
        entry["newName"] = image
    elif not entry.get("newName"):
        raise PinError(f"{path}: the {LOGICAL_NAME} entry has no newName: give --image REPOSITORY")
    entry.pop("newTag", None)  # a digest names the bytes; a tag beside it would only mislead
    entry["digest"] = digest
    return dump(rt, data)


def plan(
    digest: str, image: str | None = None, envs: list[str] | None = None, root: Path = GITOPS
) -> dict[Path, str]:
    """The kustomization files a pin changes (only those whose text changes), checked."""
    check_digest(digest)
    if image is not None:
        check_repository(image)
    known = manifests.envs(root)
    chosen = list(dict.fromkeys(envs or known))
    unknown = [e for e in chosen if e not in known]
    if unknown:
        raise PinError(f"unknown env(s) {', '.join(unknown)} (known: {', '.join(known)})")
    changes = {}
    for env in chosen:
        path = Path(root) / "envs" / env / "kustomization.yaml"
        text = path.read_text()
        after = edit(text, path, digest, image)
        if after != text:
            changes[path] = after
    return changes


def check_renders(changes: Mapping[Path, str], root: Path = GITOPS) -> None:
    """Render and validate every env with the changes applied, in a scratch copy of gitops/."""
    with manifests.edited_copy(changes, root, prefix="modelops-pin-") as scratch:
        try:
            manifests.check_all(scratch)
        except ModelopsError as exc:
            raise PinError(f"the pin would break gitops/; nothing written:\n{exc}") from None


def pin(
    digest: str,
    image: str | None = None,
    envs: list[str] | None = None,
    source_commit: str | None = None,
    dry_run: bool = False,
) -> Pinned:
    """Pin the server image in the envs' kustomizations and commit it (or only show the diff)."""
    if not dry_run:
        preflight()
    changes = plan(digest, image, envs)
    chosen = list(dict.fromkeys(envs or manifests.envs()))
    repository = image or _current_repository(chosen)
    ref = f"{repository}@{digest}"
    if not changes:
        return Pinned(None, "", ref, chosen, f"{', '.join(chosen)} already run(s) {ref}: no commit")
    diff = "".join(_diff(path, text) for path, text in changes.items())
    check_renders(changes)
    if dry_run:
        return Pinned(None, diff, ref, chosen, "dry run: merging would commit this diff")
    write_all(changes)
    git("add", *map(str, changes))
    subject = f"image: pin {LOGICAL_NAME} {digest[:19]} in {', '.join(chosen)}"
    trailers = [f"Image: {ref}", f"Envs: {', '.join(chosen)}"]
    if source_commit:
        trailers.append(f"Source-Commit: {source_commit}")
    git("commit", "--quiet", "-m", subject, "-m", "\n".join(trailers))
    return Pinned(git("rev-parse", "HEAD"), diff, ref, chosen, subject)


def _current_repository(envs: list[str]) -> str:
    """The repository the first env's entry names (what a pin without --image keeps)."""
    path = GITOPS / "envs" / envs[0] / "kustomization.yaml"
    images = round_trip().load(path.read_text()).get("images") or []
    entry = _entry(images, path)
    return str(entry.get("newName")) if entry else LOGICAL_NAME


def pr_body(pinned: Pinned, source_commit: str | None, run_url: str | None, repo: str | None) -> str:
    """The pin pull request's body: what merging runs, where it was built, how to verify it."""
    built = f" built from {source_commit}" if source_commit else ""
    built += f" by {run_url}" if run_url else ""
    lines = [f"Merging this makes {', '.join(pinned.envs)} run the serving image{built}:"]
    lines += ["", f"    {pinned.image}"]
    if repo:
        lines += [
            "",
            "Check its build provenance (signed by this repository's workflow) before merging:",
            "",
            f"    gh attestation verify oci://{pinned.image} --repo {repo}",
        ]
    return "\n".join([*lines, "", "```diff", pinned.diff.rstrip("\n"), "```", ""])


def _diff(path: Path, text: str) -> str:
    before = path.read_text().splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, text.splitlines(keepends=True), f"a/{path}", f"b/{path}"))
