"""Write inference logs exactly as the server's contract says (`modelops.monitoring.logs`), for tests.

Classification records carry the argmax class and every class's probability; regression records
carry the predicted value alone (no `probabilities`).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from modelops.declarations import Dataset
from modelops.pipeline import dataset

START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def _predictions(predicted: np.ndarray, classes: Sequence[str] | None) -> list[dict]:
    """Per row, the `prediction` (and `probabilities`) part of a record."""
    predicted = np.asarray(predicted, dtype="float64")
    if classes is None:  # regression: the value
        return [{"prediction": float(v)} for v in predicted.ravel()]
    if predicted.ndim == 1:  # binary, given as the positive (second) class's probability
        predicted = np.column_stack([1 - predicted, predicted])
    out = []
    for row in predicted:
        probabilities = {c: float(p) for c, p in zip(classes, row, strict=True)}
        out.append({"prediction": classes[int(row.argmax())], "probabilities": probabilities})
    return out


def records(
    features: pd.DataFrame,
    predicted: np.ndarray,
    content_hash: str,
    version: str = "v1",
    model: str = "credit-hgb",
    start: datetime = START,
    step: timedelta = timedelta(seconds=7),
    classes: Sequence[str] | None = ("good", "bad"),
) -> list[dict]:
    """One log record per row: inputs as JSON values (NaN -> null).

    `classes` given: `predicted` is probabilities (n, classes), or for two classes the second
    class's probability; the prediction is the argmax. `classes=None`: regression values.
    """
    out = []
    rows = features.to_dict("records")
    for i, (row, prediction) in enumerate(zip(rows, _predictions(predicted, classes), strict=True)):
        inputs = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        out.append(
            {
                "ts": (start + i * step).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "model": model,
                "version": version,
                "hash": content_hash,
                "request_id": uuid.UUID(int=i).hex,
                "inputs": inputs,
            }
            | prediction
        )
    return out


def for_model(
    ds: Dataset,
    features: pd.DataFrame,
    predicted: np.ndarray,
    content_hash: str,
    model: str,
    **kw,
) -> list[dict]:
    """Records as the server logs them for a model of dataset `ds` (its task decides the format)."""
    return records(features, predicted, content_hash, model=model, classes=ds.classes, **kw)


def write(log_dir: Path, rows: list[dict], name: str = "server-0.jsonl", torn: bool = False) -> list[Path]:
    """Append records to `<log_dir>/<model>/<UTC date>/<name>`; `torn` cuts the last line short."""
    files: dict[Path, list[str]] = {}
    for rec in rows:
        day = rec["ts"][:10]
        files.setdefault(log_dir / rec["model"] / day / name, []).append(json.dumps(rec))
    for path, lines in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "\n".join(lines) + "\n"
        with path.open("a") as fh:
            fh.write(text[: len(text) - len(lines[-1]) // 2 - 1] if torn else text)
    return sorted(files)


def features(ds: Dataset, frame: pd.DataFrame) -> pd.DataFrame:
    """The declaration's feature columns of a frame (categoricals as str or NaN)."""
    return dataset.to_features(ds, frame)
