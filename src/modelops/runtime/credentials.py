"""The bearer token modelops' own clients send (status, sync, analyze, the demo's traffic) to a local
runtime or a model server that requires one (`modelops_serving.auth`).

Which token, first found: `$MODELOPS_TOKEN`; else the first token of the tokens file the caller
names (the one a local runtime was started with: its state record keeps the file's path, never a
token); else the first token of `$MODELOPS_AUTH_TOKENS_FILE`. None of them: no Authorization header
(auth off, the local default).
"""

from __future__ import annotations

import os
from pathlib import Path

from modelops_serving import auth

from modelops.runtime.desired import SyncError

TOKEN_ENV = "MODELOPS_TOKEN"
TOKENS_FILE_ENV = auth.ENV


def token(tokens_file: str | Path | None = None) -> str | None:
    """The token to send, or None; a named tokens file that cannot be used is a SyncError."""
    given = os.environ.get(TOKEN_ENV, "").strip()
    if given:
        return given
    path = tokens_file or os.environ.get(TOKENS_FILE_ENV)
    if not path:
        return None
    try:
        return auth.read_tokens(path)[0]
    except auth.AuthConfigError as exc:
        raise SyncError(f"no bearer token to send: {exc} (or set {TOKEN_ENV})") from None


def headers(tokens_file: str | Path | None = None) -> dict[str, str]:
    """`{"authorization": "Bearer <token>"}`, or {} when there is no token to send."""
    found = token(tokens_file)
    return {"authorization": f"Bearer {found}"} if found else {}
