"""The feedback endpoints: Seldon v1's `/api/v1.0/feedback` (and its wrapper's `/send-feedback`), and
`/v2/models/{model_name}/feedback` beside the V2 routes. The join, checks and log are feedback.py's;
this module reads bodies and answers in each protocol's format (errors too)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from modelops_serving import ids, protocol_v1, protocol_v2
from modelops_serving.bodies import JSON, openapi_body, read_json
from modelops_serving.state import ServerState
from modelops_serving.validation import RequestError

_STATUSES = [
    (400, "Malformed feedback, or a truth of the wrong type, class or row count"),
    (404, "Unknown model, or a request id this server does not remember (unknown or expired)"),
    (409, "The request id already has its feedback"),
    (413, "Too large"),
    (415, "Not JSON"),
    (503, "Not ready"),
]


def add_feedback_routes(app: FastAPI, state: ServerState) -> None:
    """Register the feedback routes of `state`'s model on `app` (and in its OpenAPI document)."""
    settings = state.settings

    async def feedback(request: Request, v2: bool, name: str | None) -> Response:
        endpoint = "v2" if v2 else "v1"
        try:
            model, _ = state.require_model(name)
            if state.feedback is None:
                raise RequestError(
                    "this server takes no feedback (MODELOPS_FEEDBACK_MEMORY_REQUESTS or _ROWS is 0)", 404
                )
            payload = await read_json(request, settings.max_body_bytes, form_ok=not v2)
            protocol = protocol_v2 if v2 else protocol_v1
            request_id, truth, reward = protocol.decode_feedback(payload)
            rows = state.feedback.accept(request_id, truth, reward)
        except RequestError as exc:
            state.metrics.feedback_requests.labels(endpoint, str(exc.status)).inc()
            return state.error(v2, exc.status, exc.message)
        state.metrics.feedback_requests.labels(endpoint, "200").inc()
        headers = ids.response_headers(state.headers, request_id, ids.GIVEN)
        body = protocol.encode_feedback(request_id, rows, model)
        return Response(body, 200, media_type=JSON, headers=headers)

    v1_responses: dict[int | str, dict[str, Any]] = {
        200: {"model": protocol_v1.SeldonResponse, "description": "Recorded: meta.puid and the rows"},
        **{code: {"model": protocol_v1.SeldonError, "description": d} for code, d in _STATUSES},
    }
    v2_responses: dict[int | str, dict[str, Any]] = {
        200: {"model": protocol_v2.FeedbackResponse, "description": "Recorded: the id and the rows"},
        **{code: {"model": protocol_v2.ErrorResponse, "description": d} for code, d in _STATUSES},
    }

    async def v1_feedback(request: Request) -> Response:
        return await feedback(request, False, None)

    for path, summary in (
        ("/api/v1.0/feedback", "Ground truth for a prediction, by its meta.puid (Seldon's Feedback)"),
        ("/send-feedback", "The Python wrapper's internal feedback path (JSON body or form field json=)"),
    ):
        app.add_api_route(
            path,
            v1_feedback,
            methods=["POST"],
            tags=["seldon v1"],
            summary=summary,
            responses=v1_responses,
            openapi_extra=openapi_body(protocol_v1.SeldonFeedback),
            response_class=Response,
            name=f"v1_feedback{path.replace('/', '_').replace('.', '_')}",
        )

    @app.post(
        "/v2/models/{model_name}/feedback",
        tags=["v2"],
        summary="Ground truth for a prediction, by its response's id (this server's extension)",
        responses=v2_responses,
        openapi_extra=openapi_body(protocol_v2.FeedbackRequest),
        response_class=Response,
    )
    async def v2_feedback(model_name: str, request: Request) -> Response:
        return await feedback(request, True, model_name)
