"""The server's memory of recent predictions, so that a feedback joins its prediction by request id.

Bounded twice, oldest first out: at most `max_requests` predictions and at most `max_rows` rows of
outputs (a request with more rows than that is not remembered at all). An id that has left the
memory, or was never answered here, is unknown: its feedback is a 404. Once a feedback for an id is
accepted, its outputs are let go (the id stays, marked, until evicted) so a second one is a 409.

Only the event loop touches it: no lock. The request path costs one dict insert (plus, when the
bounds are reached, popping the oldest entries); the outputs are referenced, not copied (the batch
they are a slice of stays alive until its last request leaves).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from modelops_serving.validation import RequestError

__all__ = ["PredictionMemory", "Remembered"]

# A prediction: (unix time it was answered, its outputs (n, outputs) or None once its feedback came)
Remembered = tuple[float, np.ndarray | None]


class PredictionMemory:
    """Recent predictions by request id, bounded by requests and by rows."""

    def __init__(self, max_requests: int, max_rows: int) -> None:
        self.max_requests = max_requests
        self.max_rows = max_rows
        self._entries: OrderedDict[str, Remembered] = OrderedDict()
        self.rows = 0  # rows of outputs held (entries whose feedback has not come yet)

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, request_id: str, ts: float, out: np.ndarray, *, fresh: bool) -> None:
        """Keep a prediction; `fresh`: the id was just generated, so it cannot be in the memory yet
        (a client that reuses an id gets its latest prediction remembered under it)."""
        n = len(out)
        if n > self.max_rows or self.max_requests == 0:
            return
        entries = self._entries
        if not fresh and (old := entries.pop(request_id, None)) is not None and old[1] is not None:
            self.rows -= len(old[1])
        entries[request_id] = (ts, out)
        self.rows += n
        while len(entries) > self.max_requests or self.rows > self.max_rows:
            _, (_, dropped) = entries.popitem(last=False)
            if dropped is not None:
                self.rows -= len(dropped)

    def recall(self, request_id: str) -> tuple[float, np.ndarray]:
        """The prediction a feedback is about: 404 if unknown or expired, 409 if its feedback came."""
        entry = self._entries.get(request_id)
        if entry is None:
            raise RequestError(
                f"no prediction with request id {request_id!r} here: unknown, or older than the "
                f"{self.max_requests} requests / {self.max_rows} rows this server remembers "
                "(MODELOPS_FEEDBACK_MEMORY_REQUESTS / _ROWS)",
                404,
            )
        ts, out = entry
        if out is None:
            raise RequestError(f"request id {request_id!r} already has its feedback", 409)
        return ts, out

    def settle(self, request_id: str) -> None:
        """Mark the id's feedback as received; let its outputs go (its place in line is kept)."""
        ts, out = self._entries[request_id]
        if out is not None:
            self.rows -= len(out)
        self._entries[request_id] = (ts, None)
