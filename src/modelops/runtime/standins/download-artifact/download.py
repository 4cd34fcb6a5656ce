"""Stands in for actions/download-artifact: copy one stored artifact into the workspace.

Like the real action with `name:` given: the artifact's files land under `path` (default: the
workspace) with their uploaded relative paths, and a missing artifact fails the step. Only
artifacts of this forge exist, so downloading by pattern or from another run is not supported.
"""

import os
import shutil
import sys
from pathlib import Path

name = os.environ.get("INPUT_NAME", "")
if not name:
    print("::error::download-artifact stand-in: give `name:` (pattern and ids are not supported)")
    sys.exit(1)
source = Path(os.environ["MODELOPS_HARNESS_STATE"]) / "artifacts" / name
dest = Path(os.environ.get("GITHUB_WORKSPACE", ".")) / os.path.expanduser(os.environ.get("INPUT_PATH", ""))
if not source.is_dir():
    print(f"::error::Unable to download artifact(s): Artifact not found for name: {name}")
    sys.exit(1)
shutil.copytree(source, dest, dirs_exist_ok=True)
files = sum(1 for f in source.rglob("*") if f.is_file())
print(f"download-artifact stand-in: {files} file(s) {source} -> {dest}")
with open(os.environ["GITHUB_OUTPUT"], "a") as out:
    out.write(f"download-path={dest.resolve()}\n")
