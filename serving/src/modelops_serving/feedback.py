"""Ground-truth feedback: outcomes joined server-side to the predictions they are about, and logged.

A prediction is remembered by its request id (memory.py). A feedback names that id and gives one
truth per row of the prediction (a class name for a classifier, a finite number for a regressor)
and an optional reward. Refusals, in this order: a malformed body 400, an unknown or expired id 404,
an id whose feedback already came 409, a truth of the wrong type, class or row count 400.

Accepted outcomes go to the feedback log, beside the inference log and on the same machinery
(jsonl_log.py): a bounded queue, `put_nowait`, one writer thread, the same file rotation. A full
queue or a failing disk drops outcomes, counted in `modelops_feedback_dropped_total{reason}`; the
feedback is still answered 200 (`modelops_feedback_total` counts accepted outcomes).

File contract (`modelops monitor` reads it; keep it stable):
- `<dir>/<model name>/feedback/<YYYY-MM-DD>/<HHMMSS>-<pid>-<seq>.jsonl` (`<dir>`:
  MODELOPS_INFERENCE_LOG_DIR), the inference log's rotation rules (jsonl_log.py);
- one JSON object per row of the prediction, in this key order:
  `{"ts": <feedback time>, "predicted_at": <prediction time>, "model", "version", "hash",
  "request_id", "row": <index in the request>, "truth": <class name | float>,
  "prediction": <class name | float>, "probabilities": {class: p} (classifiers only),
  "reward": <number | null>}`, times as the inference log's `ts` (ISO 8601 UTC, microseconds).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modelops_serving.jsonl_log import JsonlLog
from modelops_serving.memory import PredictionMemory
from modelops_serving.metrics import Metrics
from modelops_serving.model import ServedModel
from modelops_serving.settings import Settings
from modelops_serving.validation import RequestError

__all__ = ["Feedback", "FeedbackLog", "check_reward", "check_truth", "open_feedback"]

log = logging.getLogger(__name__)

FEEDBACK_DIR = "feedback"
_SHOWN_CLASSES = 20


def open_feedback(settings: Settings, model: ServedModel, metrics: Metrics) -> Feedback | None:
    """The memory and the started feedback log of `model`; None when the memory is off (0 requests)."""
    if settings.feedback_memory_requests <= 0 or settings.feedback_memory_rows <= 0:
        log.info("feedback: off (MODELOPS_FEEDBACK_MEMORY_REQUESTS or _ROWS is 0)")
        return None
    memory = PredictionMemory(settings.feedback_memory_requests, settings.feedback_memory_rows)
    feedback_log = FeedbackLog(
        settings.inference_log_dir,
        model,
        metrics,
        queue_size=settings.feedback_log_queue_size,
        max_file_bytes=settings.inference_log_max_file_bytes,
    )
    feedback_log.start()
    log.info(
        "feedback: remembering the last %d predictions (at most %d rows); outcomes go to %s",
        memory.max_requests,
        memory.max_rows,
        feedback_log.directory,
    )
    return Feedback(model, memory, feedback_log, metrics)


class Feedback:
    """One model's memory of recent predictions, the check of outcomes, and their log."""

    def __init__(
        self, model: ServedModel, memory: PredictionMemory, feedback_log: FeedbackLog, metrics: Metrics
    ) -> None:
        self.model = model
        self.memory = memory
        self.log = feedback_log
        self._accepted = metrics.feedback

    def accept(self, request_id: str, truth: Any, reward: Any) -> int:
        """Join a feedback to its prediction and queue its outcomes; the number of rows. Raises
        RequestError: 404 unknown or expired id, 409 a second feedback, 400 a bad truth or reward."""
        reward = check_reward(reward)
        if not isinstance(truth, list):  # malformed: refused before the id is looked up
            raise RequestError(f"truth must be a list of one value per row, not {_shown(truth)}")
        predicted_at, out = self.memory.recall(request_id)
        values = check_truth(truth, self.model, len(out), f"the prediction of request id {request_id!r}")
        self.memory.settle(request_id)
        self._accepted.inc(len(values))
        self.log.put((time.time(), predicted_at, request_id, out, values, reward))
        return len(values)

    def close(self, timeout: float) -> None:
        """Write the queued outcomes and stop the writer."""
        self.log.close(timeout)


def check_reward(reward: Any) -> float | None:
    """A finite number, or None."""
    if reward is None:
        return None
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        raise RequestError(f"reward must be a finite number (or null), not {_shown(reward)}")
    return float(reward)


def check_truth(truth: Any, model: ServedModel, rows: int, about: str = "the prediction") -> list[Any]:
    """One truth per row: a class name of the model (classifiers) or a finite number (regression).
    A row may be given as a one-value list (`[["bad"], ["good"]]`, Seldon's ndarray of one column)."""
    if not isinstance(truth, list):
        raise RequestError(f"truth must be a list of one value per row, not {_shown(truth)}")
    values = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in truth]
    if len(values) != rows:
        raise RequestError(
            f"truth has {len(values)} value(s); {about} has {rows} row(s): send one truth per row, "
            "in the request's order"
        )
    if model.is_classifier:
        classes = set(model.classes)
        for i, v in enumerate(values):
            if not isinstance(v, str) or v not in classes:
                shown = list(model.classes[:_SHOWN_CLASSES]) + (
                    ["..."] if len(model.classes) > _SHOWN_CLASSES else []
                )
                what = "not a class of the model" if isinstance(v, str) else "not a class name (a string)"
                raise RequestError(f"truth row {i}: {_shown(v)} is {what}; the classes are {shown}")
    else:
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise RequestError(f"truth row {i}: {_shown(v)} is not a finite number (a regression target)")
        values = [float(v) for v in values]
    return values


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class FeedbackLog(JsonlLog):
    """Outcomes of one model, written as JSON Lines files under `<root>/<model>/feedback/`."""

    what = "feedback log"
    logger = log
    dropped_metric = "modelops_feedback_dropped_total"

    def __init__(
        self, root: Path, model: ServedModel, metrics: Metrics, *, queue_size: int, max_file_bytes: int
    ) -> None:
        super().__init__(
            Path(root) / model.name / FEEDBACK_DIR,
            queue_size=queue_size,
            max_file_bytes=max_file_bytes,
            written=metrics.feedback_log_records,
            dropped=metrics.feedback_dropped,
        )
        self._model = {"model": model.name, "version": model.version, "hash": model.content_hash}
        self._classes = model.classes
        self._regression = not model.is_classifier

    def start(self, thread_name: str = "feedback-log") -> None:
        """Start the writer thread."""
        super().start(thread_name)

    def _rows(self, item: tuple[Any, ...]) -> int:
        return len(item[4])

    def _lines(self, item: tuple[Any, ...], micros: int) -> bytes:
        """One line per row: the outcome beside what was predicted for that row."""
        _, predicted_at, request_id, out, truth, reward = item
        head = {"ts": self.timestamp(micros), "predicted_at": self.timestamp(round(predicted_at * 1_000_000))}
        head |= self._model | {"request_id": request_id}
        dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        lines = []
        if self._regression:
            for row, (value, (predicted,)) in enumerate(zip(truth, out.tolist(), strict=True)):
                line = head | {"row": row, "truth": value, "prediction": predicted, "reward": reward}
                lines.append(dumps(line, option=option))
        else:
            classes = self._classes
            best = np.asarray(out).argmax(axis=1).tolist()
            for row, (value, p, k) in enumerate(zip(truth, out.tolist(), best, strict=True)):
                line = head | {"row": row, "truth": value, "prediction": classes[k]}
                line |= {"probabilities": dict(zip(classes, p, strict=True)), "reward": reward}
                lines.append(dumps(line, option=option))
        return b"".join(lines)
