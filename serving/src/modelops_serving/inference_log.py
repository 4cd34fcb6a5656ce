"""The sampled inference log: inputs, prediction, model version and time of some requests, as JSON Lines.

The request path only draws one random number per request and, if the request is sampled, puts a
reference to its id, rows and predictions into the bounded queue of a `JsonlLog` (jsonl_log.py,
shared with the feedback log): a full queue drops the request and counts its rows, and the writer
thread does the serialising (orjson) and the IO. So logging costs a request about a microsecond and
can never block or fail it: a write error (disk full, no permission) is counted, never raised.

File contract (`modelops monitor` reads exactly this; keep it stable):
- `<dir>/<model name>/<YYYY-MM-DD>/<HHMMSS>-<pid>-<seq>.jsonl`, date and time UTC, of the file's first row
  (`<dir>/<model name>/feedback/` holds the feedback log, feedback.py: not inference rows);
- a new file when the current one passes `max_file_bytes` or the UTC hour changes; a file is only
  ever appended to, and a crash can leave its last line truncated;
- one JSON object per row, the rows of one request sharing its `request_id` (the id its response
  carries: 32 hex when the server made it, else the client's, see ids.py):
  `{"ts": "2026-11-23T18:01:02.123456Z", "model": ..., "version": ..., "hash": <64 hex>,
  "request_id": <32 hex>, "inputs": {feature: number | string | null}, "prediction": <class>,
  "probabilities": {class: float}}`, missing and NaN inputs as null;
- that is a classifier's line (binary or multiclass: `prediction` is the most probable class name,
  `probabilities` has every class, in the model's class order). A regression model's line has
  `"prediction": <float>` (the predicted value, always finite) and no `probabilities` key; the keys
  are otherwise the same. A reader tells them apart by the type of `prediction` (or by the key).
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modelops_serving import ids
from modelops_serving.jsonl_log import FLUSH_TIMEOUT_S, JsonlLog
from modelops_serving.metrics import Metrics
from modelops_serving.model import FeatureRows, ServedModel
from modelops_serving.settings import Settings

__all__ = ["FLUSH_TIMEOUT_S", "InferenceLog", "open_inference_log"]

log = logging.getLogger(__name__)


def open_inference_log(settings: Settings, model: ServedModel, metrics: Metrics) -> InferenceLog | None:
    """The started log for `model`, or None when the sample rate is 0 (no queue, no thread)."""
    if settings.inference_log_sample_rate <= 0:
        return None
    inference_log = InferenceLog(
        settings.inference_log_dir,
        model,
        metrics,
        sample_rate=settings.inference_log_sample_rate,
        queue_size=settings.inference_log_queue_size,
        max_file_bytes=settings.inference_log_max_file_bytes,
    )
    inference_log.start()
    log.info(
        "inference log: sampling %g of requests into %s",
        settings.inference_log_sample_rate,
        inference_log.directory,
    )
    return inference_log


class InferenceLog(JsonlLog):
    """The sampled requests of one model, written as JSON Lines files under `<root>/<model>/`."""

    what = "inference log"
    logger = log
    dropped_metric = "modelops_inference_log_dropped_total"

    def __init__(
        self,
        root: Path,
        model: ServedModel,
        metrics: Metrics,
        *,
        sample_rate: float,
        queue_size: int,
        max_file_bytes: int,
    ) -> None:
        super().__init__(
            Path(root) / model.name,
            queue_size=queue_size,
            max_file_bytes=max_file_bytes,
            written=metrics.inference_log_records,
            dropped=metrics.inference_log_dropped,
        )
        self.sample_rate = sample_rate
        self._random = random.Random().random
        self._head = {"model": model.name, "version": model.version, "hash": model.content_hash}
        self._classes = model.classes
        self._regression = not model.is_classifier
        self._names = [f.name for f in model.features]
        # FeatureRows keeps numeric and string columns apart; a row's inputs are written in signature
        # order by picking from (numeric values + string values).
        position = {n: i for i, n in enumerate((*model.numeric_names, *model.string_names))}
        self._order = [position[n] for n in self._names]

    def record(
        self, rows: FeatureRows, out: np.ndarray, request_id: str | None = None, ts: float | None = None
    ) -> None:
        """Queue one answered request if it is sampled; never blocks, never raises. `request_id` is
        the id its response carries (None: the writer makes one), `ts` its unix time (None: now)."""
        if self._random() < self.sample_rate:
            self.put((time.time() if ts is None else ts, rows, out, request_id))

    def start(self, thread_name: str = "inference-log") -> None:
        """Start the writer thread."""
        super().start(thread_name)

    def _rows(self, item: tuple[Any, ...]) -> int:
        return len(item[1])

    def _lines(self, item: tuple[Any, ...], micros: int) -> bytes:
        """One JSON line per row; NaN (missing numbers) serialises as null."""
        _, rows, out, request_id = item
        head = self._head | {"ts": self.timestamp(micros), "request_id": request_id or ids.new_id()}
        names, order, classes = self._names, self._order, self._classes
        dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        if self._regression:  # a value per row: "prediction" is it, there are no probabilities
            predicted: list[dict[str, Any]] = [{"prediction": v} for (v,) in out.tolist()]
        else:  # the most probable class, and every class's probability
            predicted = [
                {"prediction": classes[k], "probabilities": dict(zip(classes, p, strict=True))}
                for p, k in zip(out.tolist(), out.argmax(axis=1).tolist(), strict=True)
            ]
        lines = []
        for nums, strs, answer in zip(rows.numeric.tolist(), rows.strings.tolist(), predicted, strict=True):
            values = nums + strs
            inputs = {name: values[i] for name, i in zip(names, order, strict=True)}
            lines.append(dumps(head | {"inputs": inputs} | answer, option=option))
        return b"".join(lines)
