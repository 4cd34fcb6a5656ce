"""Write feedback logs exactly as the serving contract says (docs/serving.md), for tests.

`<dir>/<model>/feedback/<YYYY-MM-DD>/<HHMMSS>-<pid>-<seq>.jsonl`, one JSON line per fed-back row:
`{"ts", "predicted_at", "model", "version", "hash", "request_id", "row", "truth", "prediction",
"probabilities" (classifiers), "reward"}`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def outcomes(
    content_hash: str,
    version: str,
    truths: Sequence,
    predictions: Sequence,
    *,
    model: str = "credit-hgb",
    start: datetime = START,
    step: timedelta = timedelta(seconds=3),
    request_ids: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
) -> list[dict]:
    """One line per row; classifiers (`classes` given) get probabilities peaked on the prediction."""
    out = []
    for i, (truth, predicted) in enumerate(zip(truths, predictions, strict=True)):
        ts = start + i * step
        line = {
            "ts": stamp(ts),
            "predicted_at": stamp(ts - timedelta(seconds=1)),
            "model": model,
            "version": version,
            "hash": content_hash,
            "request_id": request_ids[i] if request_ids is not None else f"{content_hash[:8]}{i:024x}",
            "row": 0,
            "truth": truth,
            "prediction": predicted,
            "reward": None,
        }
        if classes is not None:
            line["probabilities"] = {
                c: (0.9 if c == predicted else 0.1 / (len(classes) - 1)) for c in classes
            }
        out.append(line)
    return out


def write(
    log_dir: Path, lines: list[dict], model: str = "credit-hgb", name: str = "000000-1-0.jsonl"
) -> None:
    """Append lines to one file per UTC day under the model's feedback directory."""
    for line in lines:
        day = log_dir / model / "feedback" / line["ts"][:10]
        day.mkdir(parents=True, exist_ok=True)
        with (day / name).open("a") as fh:
            fh.write(json.dumps(line) + "\n")
