"""Scratch pipeline repositories for benchmarks: the project's pipeline with a chosen set of models
and datasets, and a dataset's source swapped for seeded synthetic rows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from modelops.workspace import create_pipeline_repo


def edit_yaml(path: Path, edit: Any) -> None:
    """Load, change in place, write back (benchmarks own these scratch files; comments may go)."""
    doc = yaml.safe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def pipeline_repo(
    dest: Path, models: dict[str, dict[str, Any]], synthetic_rows: dict[str, int] | None = None
) -> Path:
    """A committed pipeline repo whose params hold exactly `models` (name -> params entry) and the
    datasets they use; `synthetic_rows` replaces a dataset's source by that many seeded rows."""
    repo = create_pipeline_repo(dest, dest.parent / f"{dest.name}-remote")
    used = {spec["dataset"] for spec in models.values()}

    def params(doc: dict[str, Any]) -> None:
        doc["models"] = models
        doc["datasets"] = {name: spec for name, spec in doc["datasets"].items() if name in used}

    edit_yaml(repo / "params.yaml", params)
    for folder in (repo / "data").glob("*/dataset.yaml"):
        if folder.parent.name not in used:
            shutil.rmtree(folder.parent)
    for name, rows in (synthetic_rows or {}).items():
        edit_yaml(
            repo / "data" / name / "dataset.yaml",
            lambda d, rows=rows: d.update(source={"kind": "synthetic", "rows": rows, "seed": 0}),
        )
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", f"{len(models)} models"], cwd=repo, check=True)
    return repo
