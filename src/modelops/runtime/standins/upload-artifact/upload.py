"""Stands in for actions/upload-artifact: copy the matched files into the harness's artifact dir.

Like the real action: `path` is newline-separated globs (`!` excludes), files keep their paths
relative to the matches' least common ancestor, a name is uploaded once unless `overwrite`, and
`if-no-files-found` decides between warn, error and ignore.
"""

import glob
import os
import shutil
import sys
from pathlib import Path

name = os.environ["INPUT_NAME"]
patterns = [p.strip() for p in os.environ["INPUT_PATH"].splitlines() if p.strip()]
hidden = os.environ.get("INPUT_INCLUDE_HIDDEN_FILES") == "true"
dest = Path(os.environ["MODELOPS_HARNESS_STATE"]) / "artifacts" / name


def expand(pattern: str) -> set[Path]:
    """Files matched by one glob (directories contribute everything under them)."""
    found: set[Path] = set()
    for match in glob.glob(os.path.expanduser(pattern), recursive=True, include_hidden=hidden):
        p = Path(match).resolve()
        found |= {f for f in p.rglob("*") if f.is_file()} if p.is_dir() else {p}
    return found


files: set[Path] = set()
for pattern in (p for p in patterns if not p.startswith("!")):
    files |= expand(pattern)
for pattern in (p[1:] for p in patterns if p.startswith("!")):
    files -= expand(pattern)


def is_hidden(f: Path) -> bool:
    """A dot-file or a file under a dot-directory, judged inside the workspace."""
    parts = f.relative_to(Path.cwd()).parts if f.is_relative_to(Path.cwd()) else (f.name,)
    return any(part.startswith(".") for part in parts)


if not hidden:
    files = {f for f in files if not is_hidden(f)}

if not files:
    paths = os.environ["INPUT_PATH"]
    message = f"No files were found with the provided path: {paths}. No artifacts will be uploaded."
    mode = os.environ.get("INPUT_IF_NO_FILES_FOUND", "warn")
    if mode == "error":
        print(f"::error::{message}")
        sys.exit(1)
    print(f"::warning::{message}" if mode == "warn" else message)
    sys.exit(0)
if dest.exists():
    if os.environ.get("INPUT_OVERWRITE") != "true":
        print(f"::error::Failed to CreateArtifact: an artifact with this name already exists: {name}")
        sys.exit(1)
    shutil.rmtree(dest)
root = Path(os.path.commonpath([f.parent for f in files]))
for f in sorted(files):
    (dest / f.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(f, dest / f.relative_to(root))
print(f"upload-artifact stand-in: {len(files)} file(s) -> {dest}")
with open(os.environ["GITHUB_OUTPUT"], "a") as out:
    out.write(f"artifact-id={abs(hash(name)) % 10**6}\n")
