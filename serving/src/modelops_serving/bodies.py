"""Request bodies read by hand (size-limited, parsed by orjson) and their place in /openapi.json.

Handlers read the body themselves instead of letting FastAPI parse it: every failure then maps to
a 4xx in the caller's protocol, never FastAPI's 422, and the hot path skips FastAPI's JSON and
validation layers. The pydantic models still document the bodies in /openapi.json.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi

from modelops_serving.validation import RequestError

JSON = "application/json"


async def read_body(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The body from its chunks, refused with 413 past `limit` bytes (by the declared Content-Length
    and while reading)."""
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(f"invalid Content-Length {declared!r}")
        if int(declared) > limit:
            raise RequestError(
                f"the body is {declared} bytes; the limit is {limit} (MODELOPS_MAX_BODY_BYTES)", 413
            )
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the body exceeds the limit of {limit} bytes (MODELOPS_MAX_BODY_BYTES)", 413)
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _media(content_type: str | None) -> str:
    return (content_type or JSON).split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """Does this Content-Type (absent: yes) say JSON?"""
    media = _media(content_type)
    return media == JSON or media.endswith("+json")


def parse_json(body: bytes, content_type: str | None, *, form_ok: bool) -> Any:
    """The JSON document in the body (or, for Seldon's form posts, in its `json` field)."""
    media = _media(content_type)
    if media == "application/x-www-form-urlencoded" and form_ok:
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
        except UnicodeDecodeError:
            raise RequestError("the form body is not UTF-8") from None
        if "json" not in fields:
            raise RequestError("a form-encoded request needs a json=<SeldonMessage> field")
        body = fields["json"][0].encode()
    elif not is_json(media):
        raise RequestError(f"unsupported Content-Type {media!r}; send application/json", 415)
    if not body:
        raise RequestError("the body is empty; send a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"the body is not valid JSON: {exc}") from None


async def read_json(request: Request, limit: int, *, form_ok: bool) -> Any:
    """`read_body` then `parse_json`."""
    body = await read_body(request.stream(), request.headers.get("content-length"), limit)
    return parse_json(body, request.headers.get("content-type"), form_ok=form_ok)


def openapi_body(model: type) -> dict[str, Any]:
    """The `openapi_extra` of a route whose JSON body the handler reads itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


def install_openapi(
    app: FastAPI, bodies: tuple[type, ...], finish: Callable[[dict[str, Any]], None] | None = None
) -> None:
    """Add the hand-parsed request bodies' schemas to the generated document (then `finish` it)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for model in bodies:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            if finish is not None:
                finish(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
