"""Batch tests' inputs and helpers: files of rows that follow the model's declaration, the engine run
in-process or as the `modelops-batch` process, and outputs read back."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from modelops_serving.batch_run import Options, Progress, run
from modelops_serving.integrity import tree_hash
from modelops_serving.settings import Settings

from modelops.pipeline import dataset, ingest
from tests.serving.conftest import DS, Packaged

BATCH = Path(sys.executable).with_name("modelops-batch")


def rows(n: int, seed: int = 0) -> pd.DataFrame:
    """n rows following the credit declaration (id, target, features; about 5% missing where nullable)."""
    return ingest.synthesize(DS, n, seed)


def write(frame: pd.DataFrame, path: Path) -> Path:
    """The frame as the file its suffix names (.csv or .parquet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def read(path: Path | str, id_column: str = "id") -> pd.DataFrame:
    """An output or rejects file, ids as text (they are text in a CSV)."""
    path = Path(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={id_column: str}, keep_default_na=False, na_values=[""])
    return pd.read_parquet(path)


def settings(model: Packaged, tmp: Path, **changes: Any) -> Settings:
    """What the server's env variables would say for `model`."""
    values = {
        "model_uri": str(model.path),
        "expected_hash": model.content_hash,
        "model_name": model.name,
        "model_version": model.version,
        "cache_dir": tmp / "model-cache",
    }
    return Settings(**(values | changes))


def score(model: Packaged, tmp: Path, source: Path | str, output: Path | str, **options: Any) -> dict:
    """Run the engine in this process; the success manifest (progress lines kept in `.progress`)."""
    stream = io.StringIO()
    manifest = run(
        Options(str(source), str(output), **options), settings(model, tmp), Progress(stream, False)
    )
    manifest[".progress"] = stream.getvalue()
    return manifest


def environment(model: Packaged, tmp: Path, **changes: str) -> dict[str, str]:
    """The `modelops-batch` process's environment: the server's MODELOPS_* variables."""
    values = {
        "MODELOPS_MODEL_URI": str(model.path),
        "MODELOPS_EXPECTED_HASH": model.content_hash,
        "MODELOPS_MODEL_NAME": model.name,
        "MODELOPS_MODEL_VERSION": model.version,
        "MODELOPS_CACHE_DIR": str(tmp / "model-cache"),
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    return clean | values | changes


def expected(model: Packaged, frame: pd.DataFrame) -> np.ndarray:
    """The in-process pipeline's predict_proba on the same rows (the DataFrame MLflow would pass)."""
    return model.pipeline.predict_proba(dataset.to_features(DS, frame))


def labels(proba: np.ndarray) -> np.ndarray:
    """The label the engine writes: the positive class at probability >= 0.5."""
    return np.where(proba[:, 1] >= 0.5, DS.classes[1], DS.classes[0])


def with_declaration(model: Packaged, dest: Path, declaration: dict) -> Packaged:
    """A copy of a packaged model with `declaration` as its declaration.json, and its new hash."""
    from dataclasses import replace

    shutil.copytree(model.path, dest)
    (dest / "declaration.json").write_text(json.dumps(declaration, indent=2))
    return replace(model, path=dest, content_hash=tree_hash(dest))
