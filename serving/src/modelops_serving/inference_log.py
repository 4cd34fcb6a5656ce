"""The sampled inference log: inputs, prediction, model version and time of some requests, as JSON Lines.

The request path only draws one random number per request and, if the request is sampled, puts a
reference to its rows and predictions into a bounded queue with `put_nowait`; a full queue drops
the request and counts its rows. One writer thread turns queued requests into lines (orjson) and
appends them to files in batches. So logging costs a request about a microsecond and can never block
or fail it: a write error (disk full, no permission) is counted and logged once per many, never raised.

File contract (`modelops monitor` reads exactly this; keep it stable):
- `<dir>/<model name>/<YYYY-MM-DD>/<HHMMSS>-<pid>-<seq>.jsonl`, date and time UTC, of the file's first row;
- a new file when the current one passes `max_file_bytes` or the UTC hour changes; a file is only
  ever appended to, and a crash can leave its last line truncated;
- one JSON object per row, the rows of one request sharing its `request_id`:
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
import os
import queue
import random
import secrets
import threading
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from modelops_serving.metrics import Metrics
from modelops_serving.model import FeatureRows, ServedModel
from modelops_serving.settings import Settings

__all__ = ["InferenceLog", "open_inference_log"]

log = logging.getLogger(__name__)

# A sampled request waiting in the queue: (unix time, its rows, its predictions (n, outputs)).
_Item = tuple[float, FeatureRows, np.ndarray]
_STOP = object()
# Requests serialised per write call: large enough to amortise the syscall, small enough that one
# batch never holds much memory.
_BATCH = 256
# A persistent write error (full disk) would otherwise log one line per request.
_LOG_EVERY = 1000
FLUSH_TIMEOUT_S = 5.0


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


class InferenceLog:
    """A bounded queue of sampled requests and the thread that writes them as JSON Lines files."""

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
        self.directory = Path(root) / model.name
        self.sample_rate = sample_rate
        self.max_file_bytes = max_file_bytes
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._random = random.Random().random
        self._records = metrics.inference_log_records
        self._dropped_full = metrics.inference_log_dropped.labels("queue_full")
        self._dropped_error = metrics.inference_log_dropped.labels("write_error")
        self._head = {"model": model.name, "version": model.version, "hash": model.content_hash}
        self._classes = model.classes
        self._regression = not model.is_classifier
        self._names = [f.name for f in model.features]
        # FeatureRows keeps numeric and string columns apart; a row's inputs are written in signature
        # order by picking from (numeric values + string values).
        position = {n: i for i, n in enumerate((*model.numeric_names, *model.string_names))}
        self._order = [position[n] for n in self._names]
        self._thread: threading.Thread | None = None
        self._file: IO[bytes] | None = None
        self._hour = -1
        self._second, self._second_text = -1, ""
        self._size = 0
        self._seq = 0
        self._errors = 0

    # ---- the request path ----

    def record(self, rows: FeatureRows, out: np.ndarray) -> None:
        """Queue one answered request if it is sampled; never blocks, never raises."""
        if self._random() >= self.sample_rate:
            return
        try:
            self._queue.put_nowait((time.time(), rows, out))
        except queue.Full:
            self._dropped_full.inc(len(rows))

    # ---- lifecycle ----

    def start(self) -> None:
        """Start the writer thread."""
        # daemon: a writer stuck on a hung disk must not keep the process from exiting.
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    def close(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Write what is queued and close the file, waiting at most about `timeout` seconds."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("inference log: the writer did not drain its queue in %.1f s; rows are lost", timeout)
            return
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("inference log: the writer did not finish in %.1f s; rows are lost", timeout)
        else:
            log.info("inference log: flushed and closed")
        self._thread = None

    # ---- the writer thread ----

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < _BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in items)
            try:
                self._write([item for item in items if item is not _STOP])
            except Exception as exc:  # never let the writer die: the next batch may succeed
                self._failed(sum(len(item[1]) for item in items if item is not _STOP), exc)
                self._close_file()
            if stop:
                self._close_file()
                return

    def _write(self, items: list[_Item]) -> None:
        pending: list[bytes] = []
        pending_rows = 0
        for ts, rows, out in items:
            micros = round(ts * 1_000_000)  # one rounding for the line's time and its file's hour
            try:
                data = self._lines(micros, rows, out)
            except (TypeError, ValueError) as exc:
                self._failed(len(rows), exc)
                continue
            hour = micros // 3_600_000_000  # the UTC hour: Unix time has no leap seconds
            if self._file is not None and (hour != self._hour or self._size >= self.max_file_bytes):
                self._flush(pending, pending_rows)
                pending, pending_rows = [], 0
                self._close_file()
            if self._file is None:
                try:
                    self._open(micros // 1_000_000, hour)
                except OSError as exc:
                    self._failed(len(rows), exc)
                    continue
            pending.append(data)
            pending_rows += len(rows)
            self._size += len(data)
        self._flush(pending, pending_rows)

    def _lines(self, micros: int, rows: FeatureRows, out: np.ndarray) -> bytes:
        """One JSON line per row; NaN (missing numbers) serialises as null."""
        head = self._head | {"ts": self._timestamp(micros), "request_id": secrets.token_hex(16)}
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

    def _timestamp(self, micros: int) -> str:
        """ISO 8601 UTC with microseconds; strftime runs once per second, not once per request (it was
        most of the writer's cost for a one-row request)."""
        second, fraction = divmod(micros, 1_000_000)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{fraction:06d}Z"

    def _open(self, second: int, hour: int) -> None:
        utc = time.gmtime(second)
        folder = self.directory / time.strftime("%Y-%m-%d", utc)
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            path = folder / f"{time.strftime('%H%M%S', utc)}-{os.getpid()}-{self._seq}.jsonl"
            self._seq += 1
            try:
                # "x": a restarted process with the same pid (pid 1 in a container) never appends
                # to the file an earlier one may have left with a truncated last line.
                self._file = path.open("xb")
                break
            except FileExistsError:
                continue
        self._hour, self._size = hour, 0

    def _flush(self, pending: list[bytes], rows: int) -> None:
        if not pending or self._file is None:
            return
        try:
            self._file.write(b"".join(pending))
            self._file.flush()  # whole batches become visible to readers at once
        except OSError as exc:
            self._failed(rows, exc)
            self._close_file()
            return
        self._records.inc(rows)

    def _close_file(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError as exc:  # the buffered tail of a failed write: already counted
            log.debug("inference log: closing %s: %s", file.name, exc)

    def _failed(self, rows: int, exc: BaseException) -> None:
        self._dropped_error.inc(rows)
        self._errors += 1
        if self._errors == 1 or self._errors % _LOG_EVERY == 0:
            log.error(
                "inference log: cannot write under %s: %s: %s (%d write errors so far, logged once per "
                "%d; the rows are dropped, counted in modelops_inference_log_dropped_total; requests are "
                "unaffected)",
                self.directory,
                type(exc).__name__,
                exc,
                self._errors,
                _LOG_EVERY,
            )
