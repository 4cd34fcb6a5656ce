"""The prediction path both protocols share, free of any web framework: a body in, an answer out.

`Predictor.handle` takes what a request carries (path parameters, three headers, the body's chunks)
and gives `(status, body, headers)`, so the raw ASGI hot routes (hotpath.py) and the FastAPI routes
(app.py: documented, and `/predict`) answer byte for byte alike. Every failure is an answer in the
caller's protocol: a RequestError its 4xx, a failed batch or a bug a counted, logged 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from modelops_serving import ids, protocol_v1, protocol_v2, protocol_v2_bytes
from modelops_serving.batching import Batcher
from modelops_serving.bodies import is_json, parse_json, read_body
from modelops_serving.model import FeatureRows, ServedModel
from modelops_serving.state import ServerState
from modelops_serving.validation import RequestError, check_predictions

__all__ = ["Answer", "ClientGone", "Predictor"]

log = logging.getLogger("modelops_serving")

# (HTTP status, JSON body, response headers)
Answer = tuple[int, bytes, dict[str, str]]
# (validated rows, the id the body gives or None, v1's answer style or None for V2)
Decoded = tuple[FeatureRows, Any, "protocol_v1.Style | None"]


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is nobody to answer."""


class Predictor:
    """Answers prediction requests of `state`'s model, Seldon v1 or V2."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.settings = state.settings

    def error(self, v2: bool, status: int, message: str) -> Answer:
        """An error in the caller's protocol: V2's `{"error"}` or Seldon's FAILURE status."""
        body = protocol_v2.error_body(status, message) if v2 else protocol_v1.error_body(status, message)
        return status, body, self.state.headers

    async def handle(
        self,
        v2: bool,
        name: str | None,
        content_type: str | None,
        content_length: str | None,
        request_id: str | None,
        chunks: AsyncIterator[bytes],
        *,
        form_ok: bool = False,
    ) -> Answer:
        """One POSTed prediction: its body read (size-limited), parsed, validated, predicted, encoded."""
        started = time.perf_counter()
        endpoint = "v2" if v2 else "v1"
        try:
            model, batcher = self.state.require_model(name)
            body = await read_body(chunks, content_length, self.settings.max_body_bytes)
            # the common V2 body straight from its bytes (protocol_v2_bytes.py); anything else, and
            # every v1 body, parsed and then decoded
            fast = None
            if v2 and is_json(content_type):
                fast = protocol_v2_bytes.decode(body, model, self.settings)
            if fast is not None:
                decoded: Decoded = (*fast, None)
            else:
                decoded = self.decode(parse_json(body, content_type, form_ok=form_ok), model, v2)
            return await self.answer(decoded, model, batcher, v2, started, request_id)
        except RequestError as exc:
            self.state.metrics.observe_request(endpoint, exc.status, time.perf_counter() - started)
            return self.error(v2, exc.status, exc.message)
        except ClientGone:  # not counted: nobody was answered (the send is a no-op)
            return self.error(v2, 400, "the client disconnected before its body arrived")
        except Exception as exc:  # a bug: the caller still gets its protocol's 500, the server goes on
            log.exception("prediction request failed")
            self.state.metrics.observe_request(endpoint, 500, time.perf_counter() - started)
            return self.error(v2, 500, f"internal error: {type(exc).__name__}")

    def decode(self, payload: Any, model: ServedModel, v2: bool) -> Decoded:
        """A parsed body's rows, the id it gives (if any) and, for v1, the style to answer in;
        raises RequestError for the caller's mistakes."""
        try:
            if v2:
                rows, given = protocol_v2.decode(payload, model, self.settings)
                return rows, given, None
            rows, style = protocol_v1.decode(payload, model, self.settings)
            return rows, protocol_v1.given_id(payload), style
        except RecursionError:
            raise RequestError("the JSON document is nested too deeply") from None

    async def answer(
        self,
        decoded: Decoded,
        model: ServedModel,
        batcher: Batcher,
        v2: bool,
        started: float,
        header: str | None,
    ) -> Answer:
        """The answer to a decoded body; raises RequestError for the caller's mistakes."""
        state = self.state
        endpoint = "v2" if v2 else "v1"
        rows, given, style = decoded
        try:
            out = await batcher.predict(rows)
        except ValueError as exc:  # the model refused validated values (infinity after scaling, ...)
            raise RequestError(f"the model cannot predict from these inputs: {exc}") from None
        except Exception as exc:  # the batch failed: a genuine server error, the server keeps going
            state.metrics.observe_request(endpoint, 500, time.perf_counter() - started)
            return self.error(v2, 500, f"prediction failed: {type(exc).__name__}: {exc}")
        check_predictions(out, model)  # NaN/inf: a 400 naming the row, before metrics, log or JSON
        request_id, source = ids.request_id(given, header)
        now = time.time()
        state.metrics.observe_predictions(out)
        if state.inference_log is not None:
            state.inference_log.record(rows, out, request_id, now)
        if state.feedback is not None:
            state.feedback.memory.remember(request_id, now, out, fresh=source == ids.NEW)
        if style is None:  # V2
            content = protocol_v2.encode(out, model, request_id)
        else:
            content = protocol_v1.encode(out, style, model, request_id)
        state.metrics.observe_request(endpoint, 200, time.perf_counter() - started)
        return 200, content, ids.response_headers(state.headers, request_id, source)
