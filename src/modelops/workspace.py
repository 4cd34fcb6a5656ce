"""Scratch workspaces: a fresh git repository holding this project's pipeline, for tests,
benchmarks and demos that must not touch the real work tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# What a pipeline repository needs: the pipeline definition, params, the code its stages hash,
# the dataset declarations and their suites, DVC's config and the gitops/ manifests promotions edit.
# Outputs and locks are never copied.
PIPELINE_FILES = (
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    "data",
    "src/modelops",
    "gitops",
)


# DVC outputs and caches never travel with the pipeline's source.
_IGNORED = shutil.ignore_patterns("__pycache__", "raw.csv", "prepared", "validation.json", "*.tmp")


def venv_tool(name: str) -> str:
    """A console script of this environment (dvc, modelops), even when its bin is not on PATH."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def create_pipeline_repo(dest: Path, dvc_remote: Path, source: Path = PROJECT_ROOT) -> Path:
    """Copy the pipeline into `dest`, `git init` it, point DVC's remote at `dvc_remote`, commit."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in PIPELINE_FILES:
        src = source / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=_IGNORED)
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    _git("init", "-q", "-b", "main", cwd=dest)
    # --local: the remote of a scratch repo is its own business, not a change to commit
    subprocess.run(
        [venv_tool("dvc"), "remote", "add", "--local", "-f", "local", str(dvc_remote)],
        cwd=dest,
        check=True,
        capture_output=True,
        text=True,
    )
    _git("add", "-A", cwd=dest)
    _git("commit", "-q", "-m", "pipeline", cwd=dest)
    return dest
