"""An append-only JSON Lines log behind a bounded queue: the machinery the inference log and the
feedback log share.

The request path appends an item to a bounded deque; a full one drops the item and counts its rows.
One writer thread wakes every `WAKE_S` seconds, turns what queued into lines (a subclass's `_lines`)
and appends them to files in batches. So a request never blocks on the log and never fails because
of it: a write error (disk full, no permission) is counted and logged once per many, never raised.

The writer sleeps on a timer rather than on the queue: a `queue.Queue` woke it for every item, and
on a busy one-core server each wake-up (a futex, a context switch, a GIL handoff) cost 7-11 µs of
CPU a request at the 10% sample rate, 6-9% of a single-row request's CPU (docs/benchmarks.md). An item
now waits at most `WAKE_S` before it is written, which `modelops monitor` (minute windows) never sees.

Files (the same rules for every log built on this class):
- `<directory>/<YYYY-MM-DD>/<HHMMSS>-<pid>-<seq>.jsonl`, date and time UTC, of the file's first row;
- a new file when the current one passes `max_file_bytes` or the UTC hour changes; a file is only
  ever appended to, and a crash can leave its last line truncated;
- times in lines are ISO 8601 UTC with microseconds: `2026-11-23T18:01:02.123456Z`.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from pathlib import Path
from typing import IO, Any

from prometheus_client import Counter

__all__ = ["FLUSH_TIMEOUT_S", "JsonlLog"]

log = logging.getLogger(__name__)

# How often the writer wakes to write what queued (seconds).
WAKE_S = 0.05
# Items serialised per write call: large enough to amortise the syscall, small enough that the
# writer holds the GIL for well under a millisecond between two writes (which release it), so the
# event loop never waits long for it.
_BATCH = 32
# A persistent write error (full disk) would otherwise log one line per request.
_LOG_EVERY = 1000
FLUSH_TIMEOUT_S = 5.0


class JsonlLog:
    """A bounded queue of items (tuples whose first element is their unix time) and the thread that
    writes them as rotated JSON Lines files. Subclasses say how an item becomes lines and rows."""

    # what the log messages call this log, the logger they go to, and the metric counting drops
    what = "log"
    logger = log
    dropped_metric = ""

    def __init__(
        self,
        directory: Path,
        *,
        queue_size: int,
        max_file_bytes: int,
        written: Counter,
        dropped: Counter,
    ) -> None:
        self.directory = Path(directory)
        self.max_file_bytes = max_file_bytes
        self.queue_size = queue_size
        # deque.append and popleft are atomic: the request path takes no lock and wakes nobody
        self._queue: collections.deque[Any] = collections.deque()
        self._stop = threading.Event()
        self._written = written
        self._dropped_full = dropped.labels("queue_full")
        self._dropped_error = dropped.labels("write_error")
        self._thread: threading.Thread | None = None
        self._file: IO[bytes] | None = None
        self._hour = -1
        self._second, self._second_text = -1, ""
        self._size = 0
        self._seq = 0
        self._errors = 0

    # ---- what a subclass defines ----

    def _lines(self, item: tuple[Any, ...], micros: int) -> bytes:
        """The item's JSON lines (each ending in a newline); `micros` is its time in microseconds."""
        raise NotImplementedError

    def _rows(self, item: tuple[Any, ...]) -> int:
        """How many lines (rows) the item is: what a drop counts."""
        raise NotImplementedError

    # ---- the request path ----

    def put(self, item: tuple[Any, ...]) -> bool:
        """Queue one item; never blocks, never raises. False (and the rows counted) if the queue is full."""
        if len(self._queue) >= self.queue_size:
            self._dropped_full.inc(self._rows(item))
            return False
        self._queue.append(item)
        return True

    # ---- lifecycle ----

    def start(self, thread_name: str) -> None:
        """Start the writer thread."""
        # daemon: a writer stuck on a hung disk must not keep the process from exiting.
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    def close(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Write what is queued and close the file, waiting at most about `timeout` seconds."""
        if self._thread is None:
            return
        self._stop.set()  # the writer wakes now, writes everything queued, and returns
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.logger.warning("%s: the writer did not finish in %.1f s; rows are lost", self.what, timeout)
        else:
            self.logger.info("%s: flushed and closed", self.what)
        self._thread = None

    # ---- the writer thread ----

    def _run(self) -> None:
        while True:
            stop = self._stop.wait(WAKE_S)
            while self._queue:
                items = []
                while self._queue and len(items) < _BATCH:
                    items.append(self._queue.popleft())
                try:
                    self._write(items)
                except Exception as exc:  # never let the writer die: the next batch may succeed
                    self._failed(sum(self._rows(item) for item in items), exc)
                    self._close_file()
            if stop:
                self._close_file()
                return

    def _write(self, items: list[tuple[Any, ...]]) -> None:
        pending: list[bytes] = []
        pending_rows = 0
        for item in items:
            micros = round(item[0] * 1_000_000)  # one rounding for the line's time and its file's hour
            rows = self._rows(item)
            try:
                data = self._lines(item, micros)
            except (TypeError, ValueError) as exc:
                self._failed(rows, exc)
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
                    self._failed(rows, exc)
                    continue
            pending.append(data)
            pending_rows += rows
            self._size += len(data)
        self._flush(pending, pending_rows)

    def timestamp(self, micros: int) -> str:
        """ISO 8601 UTC with microseconds; strftime runs once per second, not once per item (it was
        most of the writer's cost for a one-row request). Writer thread only."""
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
        self._written.inc(rows)

    def _close_file(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError as exc:  # the buffered tail of a failed write: already counted
            self.logger.debug("%s: closing %s: %s", self.what, file.name, exc)

    def _failed(self, rows: int, exc: BaseException) -> None:
        self._dropped_error.inc(rows)
        self._errors += 1
        if self._errors == 1 or self._errors % _LOG_EVERY == 0:
            self.logger.error(
                "%s: cannot write under %s: %s: %s (%d write errors so far, logged once per %d; the rows "
                "are dropped, counted in %s; requests are unaffected)",
                self.what,
                self.directory,
                type(exc).__name__,
                exc,
                self._errors,
                _LOG_EVERY,
                self.dropped_metric,
            )
