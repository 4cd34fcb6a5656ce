"""Write inference logs exactly as the server's contract says (`modelops.monitoring.monitor`), for tests."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from modelops.pipeline import dataset


def records(
    features: pd.DataFrame,
    proba_bad: np.ndarray,
    content_hash: str,
    version: str = "v1",
    model: str = "credit-hgb",
    start: datetime = datetime(2026, 11, 23, 6, 0, tzinfo=UTC),
    step: timedelta = timedelta(seconds=7),
) -> list[dict]:
    """One log record per row: inputs as JSON values (NaN -> null), argmax prediction."""
    out = []
    for i, (row, p) in enumerate(zip(features.to_dict("records"), proba_bad, strict=True)):
        inputs = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        probabilities = {"good": float(1 - p), "bad": float(p)}
        out.append(
            {
                "ts": (start + i * step).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "model": model,
                "version": version,
                "hash": content_hash,
                "request_id": uuid.UUID(int=i).hex,
                "inputs": inputs,
                "prediction": max(probabilities, key=probabilities.get),
                "probabilities": probabilities,
            }
        )
    return out


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


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """The contract's feature columns of a frame (categoricals as str or NaN)."""
    return dataset.to_features(frame)
