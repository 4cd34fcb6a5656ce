"""Outcome lines as the server writes them, built from probabilities: for the monitor tests.

One line per row with an outcome: the server's own prediction (and a classifier's probabilities)
joined to the truth the client sent, under `<log_dir>/<model>/feedback/<UTC date>/`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from tests.inference_log import START, _predictions

STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


def outcomes(
    truth: Sequence,
    predicted: np.ndarray,
    content_hash: str,
    version: str = "v1",
    model: str = "credit-hgb",
    start: datetime = START,
    step: timedelta = timedelta(seconds=7),
    delay: timedelta = timedelta(minutes=5),
    classes: Sequence[str] | None = ("good", "bad"),
) -> list[dict]:
    """One outcome line per row, the prediction made at start + i * step and its truth `delay` later.

    `classes` given: `truth` holds class names or indices into `classes`, `predicted` the
    probabilities (n, classes) or, for two classes, the second class's. `classes=None`: values.
    """
    out = []
    for i, (y, prediction) in enumerate(zip(truth, _predictions(predicted, classes), strict=True)):
        if classes is not None and not isinstance(y, str):
            y = classes[int(y)]
        elif classes is None:
            y = float(y)
        at = start + i * step
        out.append(
            {
                "ts": (at + delay).strftime(STAMP),
                "predicted_at": at.strftime(STAMP),
                "model": model,
                "version": version,
                "hash": content_hash,
                "request_id": uuid.UUID(int=i + 1).hex,
                "row": 0,
                "truth": y,
                "reward": None,
            }
            | prediction
        )
    return out


def write(log_dir: Path, rows: list[dict], name: str = "060000-1-0.jsonl", torn: bool = False) -> list[Path]:
    """Append outcome lines to `<log_dir>/<model>/feedback/<UTC date>/<name>`; `torn` cuts the last
    line short, as a crash mid-write would."""
    files: dict[Path, list[str]] = {}
    for rec in rows:
        files.setdefault(log_dir / rec["model"] / "feedback" / rec["ts"][:10] / name, []).append(
            json.dumps(rec)
        )
    for path, lines in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "\n".join(lines) + "\n"
        with path.open("a") as fh:
            fh.write(text[: len(text) - len(lines[-1]) // 2 - 1] if torn else text)
    return sorted(files)
