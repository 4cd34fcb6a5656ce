"""Batch scoring, overlapping: the input is read and checked in one thread and the scores are written
in another while the main thread predicts, each through a queue of a few chunks.

Why: predicting is most of a run, and scikit-learn's tree walk runs without the GIL, as do Arrow's
reading, parsing, checking kernels and writing; overlapped on a second core, a run takes about as
long as the model's load and its predictions. Predictions keep MODELOPS_THREADS threads (the main
thread's pools); the queues hold a few chunks, so memory still does not grow with the input.
Errors travel with the items: the main thread raises them in input order, and signals (SIGTERM,
^C) still reach it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

_ITEM, _ERROR, _END = "item", "error", "end"
_POLL_S = 0.1  # how often a thread waiting on a full queue checks whether it was stopped


class Ahead[T]:
    """Iterate `items` in a daemon thread, at most `depth` items ahead of the consumer.

    An exception in the thread is raised by the consumer when it reaches it; close() stops the
    thread after the item in hand (a failed run must not keep reading)."""

    def __init__(self, items: Iterator[T], depth: int, name: str) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _run(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put((_ITEM, item)):
                    return
        except BaseException as exc:  # handed to the consumer, which decides
            self._put((_ERROR, exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator's `with` blocks (the open input) end here
                close()
        self._put((_END, None))

    def _put(self, entry: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._queue.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and wait for it (a read stuck on a network is left to the daemon)."""
        self._stop.set()
        self._thread.join(timeout)


class Behind[T]:
    """Call `work(item)` in a daemon thread for each put() item, in order, at most `depth` waiting.

    An exception there is raised by the next put() or by close(); the items after it are dropped."""

    def __init__(self, work: Callable[[T], None], depth: int, name: str) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._dropping = False
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[T], None]) -> None:
        while (entry := self._queue.get())[0] != _END:
            if self._error is None and not self._dropping:
                try:
                    work(entry[1])
                except BaseException as exc:  # raised in the main thread by put() or close()
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        self._raise()
        self._queue.put((_ITEM, item))

    def close(self) -> None:
        """Finish every item put, then raise the thread's exception, if any."""
        self._queue.put((_END, None))
        self._thread.join()
        self._raise()

    def stop(self) -> None:
        """Drop the items waiting and wait for the one in hand (then its files can be removed)."""
        self._dropping = True
        if not self._thread.is_alive():
            return
        self._queue.put((_END, None))
        self._thread.join()
