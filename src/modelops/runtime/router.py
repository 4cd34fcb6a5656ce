"""The local runtime's front door: one loopback endpoint per env that routes as Seldon + Istio would.

`modelops sync` keeps a `Table` of what each SeldonDeployment serves; this module only routes by it.
Requests to `/seldon/<namespace>/<deployment>/<path>` go to one replica of one live predictor, picked
by smooth weighted round robin over the `traffic` shares (so 100 requests at 80/20 are exactly 80
and 20), and are mirrored to shadow predictors whose answers are dropped but counted. A mirrored
request and its copy carry one `x-request-id`, so the two servers answer (and log) it under the same
request id. A feedback (Seldon's `/api/v1.0/feedback`, V2's `/v2/models/<name>/feedback`) goes to
every replica of every predictor, since only the one that answered the prediction remembers it: the
first 200 is the answer, else the most specific refusal (see `_rank`). Feedback is not counted as
traffic. A table swap is one assignment; every backend counts its in-flight requests so the old one
is drained, not cut. `/_modelops/counters` serves the servers' counter history (recorder.py).

Given a tokens file (`modelops sync --tokens-file`), the router requires bearer tokens as the model
server does (`modelops_serving.auth`, the same middleware and policy): on every `/_modelops/*`
endpoint, and on the prediction, feedback and metadata paths under `/seldon/...`, refused at the
door in the path's protocol before anything is forwarded or mirrored. The Authorization header is
passed on to the servers, which the controller starts with the same tokens file.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from modelops_serving import auth, ids, protocol_v1
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from yarl import URL

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the upstream client recomputes.
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
ADMIN = "/_modelops"
_FEEDBACK = re.compile(r"^/(api/v1\.0/feedback|v2/models/[^/]+/feedback)$")


@dataclass(eq=False)
class Backend:
    """One running server process (a replica of a predictor) and its request counters."""

    url: str
    pid: int = 0
    inflight: int = 0
    requests: int = 0
    errors: int = 0


@dataclass(eq=False)
class Predictor:
    """A predictor of a deployment as served now: its release, replicas and share of traffic."""

    name: str
    version: str
    content_hash: str
    traffic: int
    shadow: bool
    backends: list[Backend]
    _next: itertools.cycle = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next = itertools.cycle(self.backends)

    def pick(self) -> Backend:
        """The next replica, round robin."""
        return next(self._next)

    def counts(self) -> dict[str, Any]:
        """Requests, errors and in-flight requests over all replicas, and their processes."""
        return {
            "requests": sum(b.requests for b in self.backends),
            "errors": sum(b.errors for b in self.backends),
            "inflight": sum(b.inflight for b in self.backends),
            "pids": [b.pid for b in self.backends],
            "requests_per_replica": [b.requests for b in self.backends],
        }


@dataclass(eq=False)
class Deployment:
    """A SeldonDeployment's predictors; `unserved` says why it has none (e.g. never promoted)."""

    namespace: str
    name: str
    predictors: list[Predictor]
    unserved: str = ""
    _weights: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._weights = {p.name: 0 for p in self.live}

    @property
    def live(self) -> list[Predictor]:
        return [p for p in self.predictors if not p.shadow and p.traffic > 0]

    @property
    def shadows(self) -> list[Predictor]:
        return [p for p in self.predictors if p.shadow]

    def pick(self) -> Predictor:
        """Smooth weighted round robin (as nginx does it): exact shares, evenly interleaved."""
        total = 0
        best: Predictor | None = None
        for p in self.live:
            self._weights[p.name] += p.traffic
            total += p.traffic
            if best is None or self._weights[p.name] > self._weights[best.name]:
                best = p
        assert best is not None, "a served deployment has a live predictor"
        self._weights[best.name] -= total
        return best


@dataclass
class Table:
    """Everything the router serves, keyed by (namespace, deployment name)."""

    deployments: dict[tuple[str, str], Deployment] = field(default_factory=dict)

    def backends(self) -> list[Backend]:
        return [b for d in self.deployments.values() for p in d.predictors for b in p.backends]


class Router:
    """Holds the current table and forwards requests by it; the controller swaps the table."""

    def __init__(self, timeout_s: float = 30.0) -> None:
        self.table = Table()
        self.refused: Counter[str] = Counter()  # requests refused for want of a good bearer token
        self._timeout = timeout_s
        self._client: aiohttp.ClientSession | None = None
        self._mirrors: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # aiohttp, not httpx: forwarding at 16 in flight cost ~3 ms of CPU a request through
        # httpx's connection pool and ~0.2 ms through aiohttp's (docs/runtime.md). Bodies pass
        # through as the server encoded them; the client's own headers are the only ones sent.
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def close(self) -> None:
        if self._mirrors:
            await asyncio.wait(self._mirrors, timeout=5)
        if self._client is not None:
            await self._client.close()

    async def drained(self, backends: list[Backend], timeout_s: float) -> bool:
        """Wait until none of `backends` has a request in flight; False if the timeout passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while any(b.inflight for b in backends):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def forward(self, request: Request) -> Response:
        """Route `/seldon/<namespace>/<deployment>/<rest>` to a predictor replica."""
        parts = request.url.path.split("/", 4)  # ['', 'seldon', ns, name, rest]
        if len(parts) < 4 or parts[1] != "seldon":
            return _error(404, f"no route for {request.url.path}: use /seldon/<namespace>/<deployment>/...")
        deployment = self.table.deployments.get((parts[2], parts[3]))
        if deployment is None:
            known = ", ".join(f"/seldon/{ns}/{name}/" for ns, name in self.table.deployments) or "none"
            return _error(
                404, f"no SeldonDeployment {parts[3]!r} in namespace {parts[2]!r} (serving: {known})"
            )
        if deployment.unserved:
            return _error(503, f"{parts[2]}/{parts[3]}: {deployment.unserved}")
        rest = "/" + (parts[4] if len(parts) > 4 else "")
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        if request.method == "POST" and _FEEDBACK.match(rest):
            return await self._feedback(deployment, rest, request.url.query, headers, body)
        predictor = deployment.pick()
        if deployment.shadows and not ids.sane(headers.get(ids.HEADER)):
            # one id for the request and its copies: outcomes then join to both answers
            headers = {k: v for k, v in headers.items() if k.lower() != ids.HEADER}
            headers[ids.HEADER] = ids.new_id()
        for shadow in deployment.shadows:
            self._mirror(shadow, request.method, rest, request.url.query, headers, body)
        response = await self._send(predictor.pick(), request.method, rest, request.url.query, headers, body)
        response.headers["x-modelops-predictor"] = predictor.name
        return response

    async def _feedback(
        self, deployment: Deployment, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Response:
        """Send a feedback to every replica of every predictor; the best answer (`_rank`)."""
        sent = [(p, b) for p in deployment.predictors for b in p.backends]
        answers = await asyncio.gather(
            *(self._send(b, "POST", path, query, headers, body, traffic=False) for _, b in sent)
        )
        best = min(range(len(sent)), key=lambda i: (_rank(answers[i].status_code), i))
        response = answers[best]
        response.headers["x-modelops-predictor"] = sent[best][0].name
        return response

    async def _send(
        self,
        backend: Backend,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        *,
        traffic: bool = True,
    ) -> Response:
        """Forward one request to one replica; `traffic`: count it in the replica's requests/errors."""
        assert self._client is not None, "Router.start() first"
        backend.inflight += 1
        backend.requests += traffic
        url = URL(backend.url + path + (f"?{query}" if query else ""), encoded=True)
        try:
            async with self._client.request(method, url, headers=headers, data=body) as upstream:
                content, status = await upstream.read(), upstream.status
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        except (aiohttp.ClientError, TimeoutError) as exc:
            backend.errors += traffic
            return _error(502, f"predictor at {backend.url} did not answer: {type(exc).__name__}: {exc}")
        finally:
            backend.inflight -= 1
        if status >= 500:
            backend.errors += traffic
        return Response(content, status, headers=out)

    def _mirror(
        self, shadow: Predictor, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> None:
        """Send a copy to a shadow in the background; its answer is dropped, its counters kept."""
        task = asyncio.create_task(
            self._discard(self._send(shadow.pick(), method, path, query, headers, body))
        )
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    @staticmethod
    async def _discard(call: Awaitable[Response]) -> None:
        with contextlib.suppress(Exception):
            await call


def _rank(status: int) -> int:
    """How good a replica's answer to a feedback is: a 200, then a refusal by the replica that knows
    the id (400 bad truth, 409 duplicate) or of the body itself (413, 415), then 404 (not this
    replica's prediction: every other replica says so), then errors."""
    if status == 200:
        return 0
    if 400 <= status < 500:
        return 2 if status == 404 else 1
    return 3


def _error(status: int, message: str) -> Response:
    return Response(json.dumps({"error": message}), status, media_type="application/json")


def needs_token(path: str) -> bool:
    """The router's policy with a tokens file: every admin endpoint, and under a deployment's
    `/seldon/<namespace>/<name>` prefix what the model server itself protects."""
    if path.startswith(ADMIN + "/"):
        return True
    parts = path.split("/", 4)  # ['', 'seldon', ns, name, rest]
    return len(parts) == 5 and parts[1] == "seldon" and auth.protected("/" + parts[4])


def _refuse(path: str, refusal: auth.Refusal) -> Response:
    """A refusal in the path's protocol: Seldon's status for v1 paths, `{"error"}` for V2 and admin."""
    parts = path.split("/", 4)
    if parts[1] == "seldon" and not parts[4].startswith("v2/"):
        body = protocol_v1.error_body(refusal.status, refusal.message)
        return Response(body, refusal.status, media_type="application/json")
    return _error(refusal.status, refusal.message)


def create_app(
    router: Router,
    status: Callable[[], dict[str, Any]],
    sync_now: Callable[[], Awaitable[dict[str, Any]]],
    lifespan_tasks: Callable[[], contextlib.AbstractAsyncContextManager[None]],
    counters: Callable[[float], Awaitable[dict[str, Any]]] | None = None,
    tokens: auth.TokenFile | None = None,
) -> Starlette:
    """The ASGI app: admin endpoints under /_modelops, everything else routed by the table; with
    `tokens`, behind the bearer-token check (`needs_token`)."""

    async def get_status(request: Request) -> Response:
        return Response(json.dumps(status(), indent=2), media_type="application/json")

    async def post_sync(request: Request) -> Response:
        result = await sync_now()
        return Response(json.dumps(result, indent=2), media_type="application/json")

    async def get_counters(request: Request) -> Response:
        if counters is None:
            return _error(404, "this runtime keeps no counter history")
        try:
            since = float(request.query_params.get("since", "0"))
        except ValueError:
            return _error(400, f"since: {request.query_params['since']!r} is not a unix time in seconds")
        return Response(json.dumps(await counters(since)), media_type="application/json")

    async def forward(request: Request) -> Response:
        return await router.forward(request)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await router.start()
        try:
            async with lifespan_tasks():
                yield
        finally:
            await router.close()

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    middleware = []
    if tokens is not None:

        def count(reason: str) -> None:
            router.refused[reason] += 1

        middleware.append(
            Middleware(auth.BearerAuth, tokens=tokens, needs=needs_token, respond=_refuse, on_refusal=count)
        )
    return Starlette(
        middleware=middleware,
        routes=[
            Route(f"{ADMIN}/status", get_status, methods=["GET"]),
            Route(f"{ADMIN}/sync", post_sync, methods=["POST"]),
            Route(f"{ADMIN}/counters", get_counters, methods=["GET"]),
            Route("/{path:path}", forward, methods=methods),
        ],
        lifespan=lifespan,
    )
