"""Reading the servers' inference logs: the window to read, the files, and the rows as frames.

The inference log contract (the server writes it, append-only; a torn last line is tolerated)::

    <log_dir>/<model>/<YYYY-MM-DD>/*.jsonl     (UTC dates), one JSON object per line:
    classification:
    {"ts": "2026-11-23T18:01:02.123456Z", "model": "<model>", "version": "v3",
     "hash": "<64 hex>", "request_id": "<32 hex>", "inputs": {"<feature>": number|string|null},
     "prediction": "<class>", "probabilities": {"<class>": float}}
    regression: the same head, and the predicted value alone
    {..., "inputs": {...}, "prediction": <float>}

The feedback log (outcomes, written by the server's feedback endpoints) lives beside it, under
``<log_dir>/<model>/feedback/<YYYY-MM-DD>/*.jsonl``: ``read_records`` reads only the date folders
of the model, so never outcomes as inference rows; ``read_feedback`` reads the outcomes (their
contract, and what monitor makes of them: `outcomes`).

The time key is ``ts``; ``time`` is read too, so a writer that names it so is not silently empty.
Which features and which prediction a record carries is the model's business: the frames are
built from the model's own ``reference.json``, never from a list in code.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from modelops.errors import ModelopsError
from modelops.monitoring.drift import task_of

LOG_DIR_ENV = "MODELOPS_INFERENCE_LOG_DIR"
FEEDBACK_DIR = "feedback"  # the server's feedback log, beside the inference log's date folders
DEFAULT_LAST = timedelta(hours=24)
HASH = re.compile(r"^[0-9a-f]{64}$")
DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIME_KEYS = ("ts", "time")
SHOWN_SKIPS = 5


class MonitorError(ModelopsError):
    """Monitoring cannot run: unknown env or model hash, bad window; the message names it."""

    exit_code = 14


# --------------------------------------------------------------------------- the window


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; none means UTC), as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise MonitorError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-23T18:00:00Z)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h`` or ``7d``."""
    found = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if not found or int(found[1]) == 0:
        raise MonitorError(f"not a duration: {text!r} (e.g. 30m, 24h, 7d)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[found[2]]
    return timedelta(**{unit: int(found[1])})


def window(
    since: str | None, until: str | None, last: str | None, now: datetime
) -> tuple[datetime, datetime]:
    """[since, until) from the options: --since/--until, or --last (default 24h) before --until/now."""
    if since and last:
        raise MonitorError("give --since or --last, not both")
    end = parse_time(until) if until else now
    start = parse_time(since) if since else end - (parse_duration(last) if last else DEFAULT_LAST)
    if start >= end:
        raise MonitorError(f"empty window: --since {iso(start)} is not before --until {iso(end)}")
    return start, end


def iso(moment: datetime) -> str:
    """A UTC time to the second, as the reports show it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_log_dir(env: str | None = None) -> Path:
    """Where the env's servers write: $MODELOPS_INFERENCE_LOG_DIR, else the local runtime's log of
    the env (`modelops sync`) if there is one, else the server's own default."""
    from modelops_serving.settings import Settings

    from modelops.runtime.sync import inference_log_dir

    if configured := os.environ.get(LOG_DIR_ENV):
        return Path(configured)
    if env and inference_log_dir(env).is_dir():
        return inference_log_dir(env)
    return Path(Settings.model_fields["inference_log_dir"].default)


# --------------------------------------------------------------------------- the files


@dataclass
class Records:
    """The parsed records of one model in a window, and what could not be read."""

    directory: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    skipped: int = 0
    skip_examples: list[str] = field(default_factory=list)
    where: list[str] | None = None  # each row's file:line, when asked for (outcomes: few, and named)

    def skip(self, where: str, why: str) -> None:
        """Count an unreadable line; keep the first few locations for the report."""
        self.skipped += 1
        if len(self.skip_examples) < SHOWN_SKIPS:
            self.skip_examples.append(f"{where}: {why}")


def _head_problem(rec: Any, model: str) -> str | None:
    if not isinstance(rec, dict):
        return "not a JSON object"
    if rec.get("model") != model:
        return f"model {rec.get('model')!r}, not {model!r}"
    if not isinstance(rec.get("hash"), str) or not HASH.match(rec["hash"]):
        return "no 64-hex 'hash'"
    return None


def _record_problem(rec: Any, model: str) -> str | None:
    if problem := _head_problem(rec, model):
        return problem
    if not isinstance(rec.get("inputs"), dict):
        return "no 'inputs' object"
    return None


def _outcome_problem(rec: Any, model: str) -> str | None:
    if problem := _head_problem(rec, model):
        return problem
    if not isinstance(rec.get("request_id"), str) or not rec["request_id"]:
        return "no 'request_id'"
    row = rec.get("row")
    if not isinstance(row, int) or isinstance(row, bool) or row < 0:
        return "no row index 'row'"
    truth = rec.get("truth")
    if not isinstance(truth, str | int | float) or isinstance(truth, bool):
        return "no 'truth' (a class name or a number)"
    if "prediction" not in rec:
        return "no 'prediction'"
    return None


def _stamp(rec: dict[str, Any]) -> Any:
    return next((rec[k] for k in TIME_KEYS if k in rec), None)


def _read(found: Records, since: datetime, until: datetime, problem: Callable[[Any], str | None]) -> Records:
    """Add to `found` every record under the date folders of `found.directory` with
    since <= ts < until that `problem` finds nothing wrong with; unreadable lines are counted."""
    if not found.directory.is_dir():
        return found
    first, last = since.date(), until.date()
    for day in sorted(p for p in found.directory.iterdir() if p.is_dir() and DAY_DIR.match(p.name)):
        try:
            if not first <= date.fromisoformat(day.name) <= last:
                continue
        except ValueError:
            continue
        for path in sorted(day.glob("*.jsonl")):
            found.files += 1
            with path.open("rb") as fh:
                for number, raw in enumerate(fh, 1):
                    where = f"{path}:{number}"
                    if not raw.strip():
                        continue
                    try:
                        rec = json.loads(raw)
                    except ValueError:
                        # a line cut short by a crash mid-write (the server appends; nothing rewrites it)
                        found.skip(where, "not valid JSON (truncated?)")
                        continue
                    if why := problem(rec):
                        found.skip(where, why)
                        continue
                    try:
                        ts = parse_time(str(_stamp(rec)))
                    except MonitorError:
                        found.skip(where, f"bad 'ts' {_stamp(rec)!r}")
                        continue
                    if since <= ts < until:
                        found.rows.append(rec)
                        if found.where is not None:
                            found.where.append(where)
    return found


def read_records(log_dir: Path, model: str, since: datetime, until: datetime) -> Records:
    """Every well-formed record of `model` with since <= ts < until; unreadable lines are counted.
    Only the model's date folders are read: its `feedback/` folder holds outcomes, not inferences."""
    return _read(Records(log_dir / model), since, until, lambda rec: _record_problem(rec, model))


def read_feedback(log_dir: Path, model: str, since: datetime, until: datetime) -> Records:
    """Every well-formed outcome of `model` whose feedback time (``ts``) is in [since, until), from
    ``<log_dir>/<model>/feedback/``, with each one's file:line; unreadable lines are counted."""
    found = Records(log_dir / model / FEEDBACK_DIR, where=[])
    return _read(found, since, until, lambda rec: _outcome_problem(rec, model))


# --------------------------------------------------------------------------- the frames


@dataclass
class Traffic:
    """One group's records as the checks want them, shaped by the model's reference.

    `labels`: the predicted classes (classification), else empty. `score`: the one number per
    row whose distribution the reference holds: the positive class's probability (binary), the
    top probability (multiclass) or the predicted value (regression).
    """

    inputs: pd.DataFrame
    labels: pd.Series
    score: pd.Series


def _number(value: Any) -> float:
    # bool is an int to Python, but never a probability or a prediction
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _score(rec: dict[str, Any], task: str, positive: str | None) -> float:
    if task == "regression":
        return _number(rec.get("prediction"))
    probabilities = rec.get("probabilities")
    if not isinstance(probabilities, dict):
        return math.nan
    if task == "binary":
        return _number(probabilities.get(positive))
    values = [v for v in map(_number, probabilities.values()) if math.isfinite(v)]
    return max(values) if values else math.nan


def frames(rows: list[dict[str, Any]], reference: dict[str, Any]) -> Traffic:
    """The inputs (the reference's features; numbers coerced, strays become missing), the
    predicted labels and the score of some records."""
    features = reference["features"]
    inputs = pd.DataFrame.from_records([r["inputs"] for r in rows], columns=list(features))
    for name, stats in features.items():
        if stats["kind"] == "numeric":
            inputs[name] = pd.to_numeric(inputs[name], errors="coerce")
    prediction = reference["prediction"]
    task = task_of(reference)
    if task == "regression":
        labels = pd.Series([], dtype=object)
    else:
        labels = pd.Series([r.get("prediction") for r in rows], dtype=object)
    positive = prediction.get("positive_class")
    score = pd.Series([_score(r, task, positive) for r in rows], dtype="float64")
    return Traffic(inputs, labels, score)
