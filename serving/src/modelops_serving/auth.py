"""Bearer tokens in front of the prediction, feedback and metadata routes (one small ASGI middleware).

Tokens come from a file (`MODELOPS_AUTH_TOKENS_FILE`, in a cluster a mounted Secret): one token a
line, blank lines and `#` comments ignored, several at once so that a rotation can add the new
token, move the clients, then remove the old one. Kubernetes updates a mounted Secret in place, so
the file is re-read when it changes; the request path only compares a clock reading, and the file
is stat()ed at most once per `reload_interval_s`.

Refusals, in the caller's protocol (the `respond` callback formats the body): no Authorization
header -> 401 with `WWW-Authenticate: Bearer`; a header that is not `Bearer <token>` -> 401
(`error="invalid_request"`); a token that is none of the configured ones -> 403; a token in the
query string (under a usual name like `access_token`, or any parameter whose value is a configured
token) -> 400, since URLs end up in proxy and access logs. A presented token is hashed (SHA-256)
and compared with `hmac.compare_digest` against every configured token's digest, never stopping
at the first match, so neither the position nor the length of a match shows in the timing. Tokens,
Authorization headers and query strings are never logged, nor echoed in a refusal.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

__all__ = [
    "ENV",
    "MIN_LENGTH",
    "QUERY_NAMES",
    "REASONS",
    "AuthConfigError",
    "BearerAuth",
    "Refusal",
    "TokenFile",
    "openapi_security",
    "protected",
    "read_tokens",
]

log = logging.getLogger("modelops_serving")

ENV = "MODELOPS_AUTH_TOKENS_FILE"
MIN_LENGTH = 16
# RFC 6750's b64token: what a Bearer credential may be made of.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*").fullmatch
# Query parameters clients put tokens in (RFC 6750 §2.3 names access_token); lower case.
QUERY_NAMES = frozenset({"access_token", "token", "bearer", "auth", "authorization", "jwt"}) | frozenset(
    {"api_key", "apikey", "api-key", "id_token"}
)
# The `reason` label of modelops_auth_refusals_total.
REASONS = ("missing", "malformed", "unknown", "query")
# The open routes of the model server: probes and metrics (readiness per model included).
_OPEN_V1 = frozenset({"/health/ping", "/health/status", "/metrics"})
_PROTECTED_V1 = frozenset(
    {"/api/v1.0/predictions", "/predict", "/api/v1.0/feedback", "/send-feedback", "/metadata"}
)


class AuthConfigError(Exception):
    """The tokens file cannot be used; the server must not start (nor serve open by accident)."""


def read_tokens(path: str | Path) -> tuple[str, ...]:
    """The tokens of the file, in file order; refused (naming the file and line) if there is none,
    if it cannot be read, or if a line cannot be a Bearer token. Never puts a token in a message."""
    if not str(path).strip():
        raise AuthConfigError(f"{ENV} is set but empty: give the path of a tokens file, or unset it")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthConfigError(
            f"{ENV}={path}: cannot read the tokens file: {type(exc).__name__}: {exc}"
        ) from None
    tokens: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not _TOKEN(line):
            raise AuthConfigError(
                f"{ENV}={path}: line {number} is not a Bearer token (one token a line, made of "
                "A-Z a-z 0-9 - . _ ~ + / and trailing =; no spaces)"
            )
        if len(line) < MIN_LENGTH:
            raise AuthConfigError(
                f"{ENV}={path}: line {number}: a token of {len(line)} characters is too short to be a "
                f"secret (at least {MIN_LENGTH}; e.g. `openssl rand -hex 32`)"
            )
        tokens.append(line)
    if not tokens:
        raise AuthConfigError(f"{ENV}={path}: the tokens file has no token (one a line; # starts a comment)")
    return tuple(tokens)


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def _stamp(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)  # follows the symlink a mounted Secret's file is: a new version is a new inode
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class TokenFile:
    """The digests of the accepted tokens, kept from the file and refreshed when it changes.

    At construction the file must hold tokens (else AuthConfigError). Later, a file that cannot be
    read keeps the tokens of its last good version (a read error says nothing about which tokens
    are valid); a file with no token accepts none (every token then gets 403) until it has one.
    """

    def __init__(
        self,
        path: str | Path,
        reload_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_load: Callable[[int], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.reload_interval_s = reload_interval_s
        self._clock = clock
        self._on_load = on_load
        tokens = read_tokens(path)
        try:
            self._stamp = _stamp(self.path)
        except OSError as exc:
            raise AuthConfigError(f"{ENV}={path}: {exc}") from None
        self._set(tokens)
        self._due = clock() + reload_interval_s
        self._problem: str | None = None

    def _set(self, tokens: tuple[str, ...]) -> None:
        self.digests = tuple(_digest(t.encode()) for t in tokens)
        if self._on_load is not None:
            self._on_load(len(tokens))

    def current(self) -> tuple[bytes, ...]:
        """The accepted digests now; the file is looked at when the interval has passed."""
        now = self._clock()
        if now >= self._due:
            self._due = now + self.reload_interval_s
            self._refresh()
        return self.digests

    def _refresh(self) -> None:
        try:
            stamp = _stamp(self.path)
        except OSError as exc:
            return self._trouble(
                f"cannot stat the tokens file ({type(exc).__name__}); keeping its last tokens"
            )
        if stamp == self._stamp:
            return None
        try:
            tokens = read_tokens(self.path)
        except AuthConfigError as exc:
            if "has no token" not in str(exc):
                return self._trouble(f"{exc}; keeping its last tokens")
            self._stamp = stamp
            self._set(())
            return self._trouble(f"{exc}; every request is refused until it has one")
        self._stamp, self._problem = stamp, None
        self._set(tokens)
        log.info("%s=%s changed: %d token(s) accepted now", ENV, self.path, len(tokens))
        return None

    def _trouble(self, message: str) -> None:
        if message != self._problem:  # once per new problem, not once per check
            log.error("%s=%s: %s", ENV, self.path, message)
            self._problem = message

    def position(self, token: bytes) -> int | None:
        """The token's 1-based position among the file's tokens (not a secret), or None."""
        digest = _digest(token)
        found = None
        for i, known in enumerate(self.current(), start=1):
            if hmac.compare_digest(digest, known) and found is None:
                found = i
        return found


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: HTTP status, metric reason, message, WWW-Authenticate value."""

    status: int
    reason: str
    message: str
    challenge: str | None


_MISSING = Refusal(
    401,
    "missing",
    "this endpoint needs a bearer token: send the header `Authorization: Bearer <token>`",
    'Bearer realm="modelops"',
)
_MALFORMED = Refusal(
    401,
    "malformed",
    "the Authorization header must be `Bearer <token>` (one header, one token, no spaces in it)",
    'Bearer realm="modelops", error="invalid_request"',
)
_UNKNOWN = Refusal(403, "unknown", "the bearer token is not accepted by this server", None)
_QUERY = Refusal(
    400,
    "query",
    "a token in the query string is refused (URLs are logged by proxies); send it in the "
    "`Authorization: Bearer <token>` header, and rotate a token that was sent this way",
    'Bearer realm="modelops", error="invalid_request"',
)


def check(headers: list[tuple[bytes, bytes]], query: bytes, tokens: TokenFile) -> Refusal | None:
    """None if the request carries an accepted bearer token (and none in its query string).

    On every protected request: kept to a few microseconds (one SHA-256, one compare per token)."""
    if query and _query_token(query, tokens):
        return _QUERY
    found: bytes | None = None
    for name, value in headers:
        if name == b"authorization":  # ASGI servers give header names in lower case
            if found is not None:
                return _MALFORMED
            found = value
    if found is None:
        return _MISSING
    parts = found.split()
    if len(parts) != 2 or parts[0].lower() != b"bearer":
        return _MALFORMED
    digest = hashlib.sha256(parts[1]).digest()
    compare = hmac.compare_digest
    ok = False
    for known in tokens.current():  # every one, no early exit
        ok |= compare(digest, known)
    return None if ok else _UNKNOWN


def _query_token(query: bytes, tokens: TokenFile) -> bool:
    # latin-1 both ways: every byte (percent-decoded too) is one character and back, whatever it is
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    named = any(k.lower() in QUERY_NAMES for k, _ in pairs)
    leaked = [n for _, v in pairs if (n := tokens.position(v.strip().encode("latin-1")))]
    if leaked:
        log.warning(
            "a request carried token #%d (in file order) of %s in its query string: refused; that token "
            "is now exposed wherever URLs are logged: rotate it",
            leaked[0],
            tokens.path,
        )
    return named or bool(leaked)


def protected(path: str) -> bool:
    """The model server's policy: prediction, feedback and metadata need a token (Seldon v1 and
    V2); liveness, readiness (per model too), /metrics and the OpenAPI docs stay open."""
    if path in _PROTECTED_V1:
        return True
    if path in _OPEN_V1 or not path.startswith("/v2/models/"):
        return False
    parts = path.split("/")  # ['', 'v2', 'models', name, 'ready']
    return not (len(parts) == 5 and parts[4] == "ready")


Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class BearerAuth:
    """ASGI middleware: requests to a path `needs(path)` names must pass `check`; a refusal is
    answered by `respond(path, refusal)` (a Starlette Response) and counted by `on_refusal`."""

    def __init__(
        self,
        app: ASGI,
        tokens: TokenFile,
        needs: Callable[[str], bool],
        respond: Callable[[str, Refusal], Any],
        on_refusal: Callable[[str], None] | None = None,
    ) -> None:
        self.app, self.tokens, self.needs = app, tokens, needs
        self.respond, self.on_refusal = respond, on_refusal

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.needs(scope["path"]):
            return await self.app(scope, receive, send)
        refusal = check(scope["headers"], scope.get("query_string", b""), self.tokens)
        if refusal is None:
            return await self.app(scope, receive, send)
        if self.on_refusal is not None:
            self.on_refusal(refusal.reason)
        response = self.respond(scope["path"], refusal)
        if refusal.challenge:
            response.headers["www-authenticate"] = refusal.challenge
        await response(scope, receive, send)
        return None


def openapi_security(doc: dict[str, Any], needs: Callable[[str], bool], errors: Callable[[str], str]) -> None:
    """Declare the bearer scheme in an OpenAPI document, on the operations `needs` names, with
    their 400/401/403 answers in the schema `errors(path)` names (each protocol's error body)."""
    schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": f"A token of the server's {ENV} file, in the Authorization header only",
    }
    answers = {
        "401": "No bearer token, or an Authorization header that is not `Bearer <token>`",
        "403": "A bearer token the server does not accept",
        "400": "A token in the query string (refused), or an invalid request",
    }
    for path, operations in doc.get("paths", {}).items():
        if not needs(path.replace("{model_name}", "m").replace("{model_version}", "v")):
            continue
        ref = {"$ref": f"#/components/schemas/{errors(path)}"}
        for operation in operations.values():
            operation["security"] = [{"bearerAuth": []}]
            responses = operation.setdefault("responses", {})
            for code, text in answers.items():
                responses.setdefault(
                    code, {"description": text, "content": {"application/json": {"schema": ref}}}
                )
