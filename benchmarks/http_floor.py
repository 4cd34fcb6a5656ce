"""The HTTP floor: a minimal ASGI app under the model server's own uvicorn settings (uvloop,
httptools, one worker, no access log) that reads the body and answers a fixed JSON document.

What no Python server on this stack can beat on this machine: serving_protocols.py measures it in
the same run as the model server and reports the server's share of it.

    python benchmarks/http_floor.py PORT
"""

from __future__ import annotations

import sys
from typing import Any

BODY = b'{"ok":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the whole body, answer BODY."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    import uvicorn

    # the model server's settings (modelops_serving/__main__.py), minus its app
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
