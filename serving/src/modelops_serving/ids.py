"""Request ids: the key a feedback uses to name the prediction it is about.

Every answered prediction has one id, in the body (V2 `id`, Seldon v1 `meta.puid`), in the
`x-request-id` response header, in the inference log's `request_id` and in the server's memory of
recent predictions. Which id, first match wins:
1. the client's own: V2 `id` or v1 `meta.puid` in the request body (V2 says a given id must come
   back in the response, and Seldon keeps a given puid), as given;
2. the request's `x-request-id` header when it is sane (1-64 of [A-Za-z0-9._-]): how the local
   router gives a request and its shadow copy one id;
3. a new random 32-hex id: the only token a request ever costs.
The `x-request-id` response header carries the id when it is header-safe (visible ASCII, at most
`MAX_HEADER_ID` characters; a client's own body id can be anything), else it is left out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "FROM_HEADER",
    "GIVEN",
    "HEADER",
    "MAX_HEADER_ID",
    "NEW",
    "header_safe",
    "new_id",
    "request_id",
    "response_headers",
    "sane",
]

HEADER = "x-request-id"
# where a request's id came from (`request_id`'s second value)
GIVEN, FROM_HEADER, NEW = 0, 1, 2
MAX_HEADER_ID = 256
_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}").fullmatch
_HEADER_SAFE = re.compile(rf"[\x21-\x7e]{{1,{MAX_HEADER_ID}}}").fullmatch


# Ids are cut from one os.urandom read of 4 KiB, 256 at a time: `secrets.token_hex` made a
# getrandom system call per request, ~2.5% of a loaded server's samples. The same kernel randomness,
# a read per 256 ids. Taking the next id is one `next` on a list iterator, atomic under the GIL,
# so threads never share one; a forked child starts its own batch.
_BATCH_BYTES = 4096
_ids: Iterator[str] = iter(())


def _refill() -> Iterator[str]:
    pool = os.urandom(_BATCH_BYTES).hex()
    return iter([pool[i : i + 32] for i in range(0, len(pool), 32)])


def _forget() -> None:
    global _ids
    _ids = iter(())


os.register_at_fork(after_in_child=_forget)


def new_id() -> str:
    """A fresh 32-hex id (128 random bits from os.urandom)."""
    global _ids
    fresh = next(_ids, None)
    if fresh is None:
        _ids = _refill()
        fresh = next(_ids)
    return fresh


def sane(value: str | None) -> bool:
    """Is this `x-request-id` value usable as an id (1-64 of [A-Za-z0-9._-])?"""
    return value is not None and _SANE(value) is not None


def header_safe(value: str) -> bool:
    """Can this id go into the `x-request-id` response header unchanged?"""
    return _HEADER_SAFE(value) is not None


def request_id(given: Any, header: str | None) -> tuple[str, int]:
    """The request's id and where it came from: the body's own (a string: GIVEN), else a sane
    header (FROM_HEADER), else a new one (NEW)."""
    if isinstance(given, str):
        return given, GIVEN
    if header is not None and _SANE(header) is not None:
        return header, FROM_HEADER
    return new_id(), NEW


def response_headers(base: dict[str, str], request_id: str, source: int) -> dict[str, str]:
    """`base` plus `x-request-id`, unless the id (a client's own) cannot be a header value."""
    if source != GIVEN or _HEADER_SAFE(request_id) is not None:
        return base | {HEADER: request_id}
    return base
