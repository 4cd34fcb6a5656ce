"""What the handlers share: the model once loaded, the batcher, the logs, the memory of recent
predictions, the lifecycle flags, and the answers every handler gives the same way."""

from __future__ import annotations

import logging

from fastapi.responses import Response

from modelops_serving import protocol_v1, protocol_v2
from modelops_serving.batching import Batcher
from modelops_serving.feedback import Feedback
from modelops_serving.inference_log import InferenceLog
from modelops_serving.metrics import Metrics
from modelops_serving.model import ServedModel
from modelops_serving.settings import Settings
from modelops_serving.validation import RequestError

log = logging.getLogger("modelops_serving")

JSON = "application/json"


class ServerState:
    """The server's shared state; `ready` once the model is loaded and until draining starts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: ServedModel | None = None
        self.batcher: Batcher | None = None
        self.inference_log: InferenceLog | None = None
        self.feedback: Feedback | None = None
        self.metrics = Metrics()
        self.load_error: str | None = None
        self.draining = False
        self.headers: dict[str, str] = {}

    @property
    def ready(self) -> bool:
        return self.model is not None and self.batcher is not None and not self.draining

    def begin_drain(self) -> None:
        """Readiness goes false; requests still in flight (and arriving) are still answered."""
        if not self.draining:
            log.info("draining: readiness is now false; in-flight requests will complete")
        self.draining = True

    def require_model(self, name: str | None = None) -> tuple[ServedModel, Batcher]:
        """The loaded model and its batcher: 404 for another model's name, 503 until loaded."""
        if name is not None and name != self.settings.model_name:
            raise RequestError(
                f"model {name!r} not found; this server serves {self.settings.model_name!r}", 404
            )
        if self.model is None or self.batcher is None:
            reason = self.load_error or "the model is still loading"
            raise RequestError(f"model {self.settings.model_name!r} is not ready: {reason}", 503)
        return self.model, self.batcher

    def error(self, v2: bool, status: int, message: str) -> Response:
        """An error in the caller's protocol: V2's `{"error"}` or Seldon's FAILURE status."""
        body = protocol_v2.error_body(status, message) if v2 else protocol_v1.error_body(status, message)
        return Response(body, status, media_type=JSON, headers=self.headers)
