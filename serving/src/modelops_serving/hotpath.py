"""The two hot routes as raw ASGI, in front of the FastAPI application.

POST /api/v1.0/predictions and POST /v2/models/{name}/infer are most of a server's traffic. Through
FastAPI each request also passed its middleware stack (error handling, telemetry, body limits, the
exit stack), route matching and Starlette's Request and Response objects: ~40 µs of a ~200 µs
single-row request (CPU, in process; docs/benchmarks.md, "where the time goes"). Here they go
straight to the shared `Predictor` (handler.py), which answers exactly as the FastAPI routes do;
those routes stay for the OpenAPI document and anything this does not take (another method, a root
path). With bearer tokens on, the same `auth.BearerAuth` check wraps these routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from modelops_serving.handler import ClientGone, Predictor

__all__ = ["V1_PATH", "ModelServer", "hot_routes", "route"]

V1_PATH = "/api/v1.0/predictions"
_V2_PREFIX, _V2_SUFFIX = "/v2/models/", "/infer"
_ROUTE = "modelops.route"

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def route(scope: Scope) -> tuple[bool, str | None] | None:
    """(V2?, model name) if the request is a hot one, else None (FastAPI answers it)."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    path = scope["path"]
    if path == V1_PATH:
        return False, None
    if path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX):
        name = path[len(_V2_PREFIX) : -len(_V2_SUFFIX)]
        if name and "/" not in name:  # Starlette's {model_name}: one path segment
            return True, name
    return None


class ModelServer(FastAPI):
    """FastAPI, with `hot` (an ASGI app) taking the requests `route` names before anything else."""

    hot: ASGI | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if self.hot is not None and (hit := route(scope)) is not None:
            scope[_ROUTE] = hit  # the hot app (perhaps behind the token check) reads it, not re-matches
            return await self.hot(scope, receive, send)
        return await super().__call__(scope, receive, send)


async def _chunks(receive: Callable[[], Awaitable[Any]]) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def hot_routes(predictor: Predictor) -> ASGI:
    """The raw ASGI app of the two hot routes (called only for requests `route` accepts)."""

    def raw(headers: dict[str, str], length: int) -> list[tuple[bytes, bytes]]:
        out = [(b"content-length", str(length).encode()), (b"content-type", b"application/json")]
        out += [(key.encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]
        return out

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        v2, name = scope.get(_ROUTE) or route(scope) or (False, None)
        content_type = content_length = request_id = None
        for key, value in scope["headers"]:  # ASGI servers give header names in lower case
            if key == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
            elif key == b"content-length" and content_length is None:
                content_length = value.decode("latin-1")
            elif key == b"x-request-id" and request_id is None:
                request_id = value.decode("latin-1")
        status, body, headers = await predictor.handle(
            v2, name, content_type, content_length, request_id, _chunks(receive), form_ok=not v2
        )
        await send({"type": "http.response.start", "status": status, "headers": raw(headers, len(body))})
        await send({"type": "http.response.body", "body": body})

    return app
