"""The FastAPI application: Seldon v1 and Open Inference (V2) endpoints over one batched model.

Prediction and feedback handlers read the body themselves (bodies.py): every failure maps to a 4xx
in the caller's protocol, never FastAPI's 422. Predictions go through one framework-free path
(handler.py); the two hot routes reach it as raw ASGI ahead of FastAPI (hotpath.py). Every answered
prediction carries a request id (ids.py) and is remembered for its feedback (memory.py, feedback.py).

With `MODELOPS_AUTH_TOKENS_FILE` set, prediction, feedback and metadata routes need a bearer token
(auth.py: one ASGI middleware in front of the routes); probes and /metrics stay open.

A model that fails to load (hash mismatch, missing file, bad pickle) keeps the process up and never
ready: the readiness probe holds the rollout, the previous ReplicaSet keeps serving, and the reason
stays visible in the log, /health/status and /v2/health/ready instead of in a crash loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from modelops_serving import auth, ids, protocol_v1, protocol_v2, signature
from modelops_serving.batching import Batcher
from modelops_serving.bodies import JSON, install_openapi, openapi_body
from modelops_serving.fastpath import SMALL_BATCH_ROWS
from modelops_serving.feedback import open_feedback
from modelops_serving.feedback_routes import add_feedback_routes
from modelops_serving.handler import ClientGone, Predictor
from modelops_serving.hotpath import ModelServer, hot_routes
from modelops_serving.inference_log import FLUSH_TIMEOUT_S, open_inference_log
from modelops_serving.metrics import CONTENT_TYPE_LATEST
from modelops_serving.model import ModelLoadError, load_model, pin_threads
from modelops_serving.settings import Settings
from modelops_serving.state import ServerState
from modelops_serving.validation import RequestError

log = logging.getLogger("modelops_serving")

# The bodies the handlers parse themselves, documented in /openapi.json.
BODIES = (
    protocol_v1.SeldonRequest,
    protocol_v1.SeldonFeedback,
    protocol_v2.InferenceRequest,
    protocol_v2.FeedbackRequest,
)


def create_app(settings: Settings | None = None) -> ModelServer:
    """The server for `settings`: the model loads in the background after startup.

    Raises auth.AuthConfigError when a tokens file is configured but cannot be used."""
    settings = settings or Settings()
    state = ServerState(settings)
    tokens = None
    if settings.auth_tokens_file is not None:
        tokens = auth.TokenFile(
            settings.auth_tokens_file, settings.auth_reload_interval_s, on_load=state.metrics.auth_tokens.set
        )
        log.info(
            "bearer tokens required on prediction, feedback and metadata routes: %d from %s",
            len(tokens.digests),
            tokens.path,
        )

    async def load() -> None:
        try:
            model = await asyncio.to_thread(
                load_model,
                settings.model_uri,
                expected_hash=settings.expected_hash,
                name=settings.model_name,
                version=settings.model_version,
                cache_dir=settings.cache_dir,
                signer=signature.required(settings),
            )
        except ModelLoadError as exc:
            state.load_error = str(exc)
            log.error("model load failed; the server stays up and NOT ready: %s", exc)
            return
        except Exception as exc:  # anything else is also "cannot serve", never a crash
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("model load failed; the server stays up and NOT ready")
            return
        batcher = Batcher(
            model.predict,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_batch_wait_ms,
            thread_init=lambda: pin_threads(settings.threads),
            on_batch=state.metrics.observe_batch,
            # the numpy fast path's small batches hold the GIL anyway: on the loop they cost no
            # thread handoff (batching.py); larger ones go to sklearn, which releases it
            inline_rows=SMALL_BATCH_ROWS if model.fast_path else 0,
        )
        await batcher.start()
        if model.example is not None and len(model.example):
            await batcher.warm_up(model.example)
        try:
            state.inference_log = open_inference_log(settings, model, state.metrics)
        except Exception:  # the log is an observer: without it the model still serves
            log.exception("inference log could not start; serving without it")
        try:
            state.feedback = open_feedback(settings, model, state.metrics)
        except Exception:  # the same: predictions go on, feedback answers 404
            log.exception("feedback could not start; serving without it")
        state.metrics.set_model(
            model.name, model.version, model.content_hash, model.classes, regression=not model.is_classifier
        )
        state.headers = {
            "x-model-name": model.name,
            "x-model-version": model.version,
            "x-model-hash": model.content_hash,
        }
        # Everything loaded so far (sklearn, pandas, the model) lives as long as the process: keep it
        # out of the cyclic GC, whose full passes over it were the p99 outliers under load.
        gc.collect()
        gc.freeze()
        state.model, state.batcher = model, batcher
        log.info("ready: serving %s version %s (hash %s)", model.name, model.version, model.content_hash)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(load())
        try:
            yield
        finally:
            state.begin_drain()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if state.batcher is not None:
                await state.batcher.stop()
            if state.inference_log is not None:
                await asyncio.to_thread(state.inference_log.close, FLUSH_TIMEOUT_S)
            if state.feedback is not None:
                await asyncio.to_thread(state.feedback.close, FLUSH_TIMEOUT_S)

    app = ModelServer(
        title="modelops model server",
        version="1",
        description="Seldon v1 and Open Inference Protocol (V2) endpoints for one hash-verified model.",
        lifespan=lifespan,
    )
    app.state.modelops = state

    error_response = state.error
    predictor = Predictor(state)

    async def predict(request: Request, v2: bool, name: str | None, form_ok: bool = False) -> Response:
        status, body, headers = await predictor.handle(
            v2,
            name,
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.headers.get(ids.HEADER),
            _chunks(request),
            form_ok=form_ok,
        )
        return Response(body, status, media_type=JSON, headers=headers)

    statuses = [(400, "Invalid request"), (404, "Unknown model"), (413, "Too large")]
    statuses += [(415, "Not JSON"), (503, "Not ready")]
    answer = "Class probabilities or predicted values"
    v1_responses: dict[int | str, dict[str, Any]] = {
        200: {"model": protocol_v1.SeldonResponse, "description": answer},
        **{code: {"model": protocol_v1.SeldonError, "description": d} for code, d in statuses},
    }
    v2_responses: dict[int | str, dict[str, Any]] = {
        200: {"model": protocol_v2.InferenceResponse, "description": answer},
        **{code: {"model": protocol_v2.ErrorResponse, "description": d} for code, d in statuses},
    }

    # ---- Seldon v1 ----

    async def v1_predictions(request: Request) -> Response:
        return await predict(request, False, None, form_ok=True)

    for path, summary in (
        ("/api/v1.0/predictions", "Predict (SeldonMessage in, SeldonMessage out)"),
        ("/predict", "The Python wrapper's internal predict path (JSON body or form field json=)"),
    ):
        app.add_api_route(
            path,
            v1_predictions,
            methods=["POST"],
            tags=["seldon v1"],
            summary=summary,
            responses=v1_responses,
            openapi_extra=openapi_body(protocol_v1.SeldonRequest),
            response_class=Response,
            name=f"v1_predict{path.replace('/', '_').replace('.', '_')}",
        )

    @app.get(
        "/predict",
        tags=["seldon v1"],
        summary="Predict with the SeldonMessage in the json query parameter",
        responses=v1_responses,
        response_class=Response,
    )
    async def v1_predict_get(request: Request, json: str | None = None) -> Response:
        started = time.perf_counter()
        try:
            model, batcher = state.require_model()
            if json is None:
                raise RequestError("the json query parameter (a SeldonMessage) is required")
            if len(json) > settings.max_body_bytes:
                raise RequestError("the json query parameter is too large", 413)
            try:
                payload = orjson.loads(json)
            except orjson.JSONDecodeError as exc:
                raise RequestError(f"the json query parameter is not valid JSON: {exc}") from None
            header = request.headers.get(ids.HEADER)
            decoded = predictor.decode(payload, model, False)
            status, body, headers = await predictor.answer(decoded, model, batcher, False, started, header)
        except RequestError as exc:
            state.metrics.observe_request("v1", exc.status, time.perf_counter() - started)
            return error_response(False, exc.status, exc.message)
        return Response(body, status, media_type=JSON, headers=headers)

    @app.get("/health/ping", tags=["seldon v1"], summary="Liveness", response_class=Response)
    async def ping() -> Response:
        return Response(b"pong", media_type="text/plain")

    @app.get(
        "/health/status",
        tags=["seldon v1"],
        summary="Readiness (503 until the model is loaded and verified, and while draining)",
        responses={200: {"model": protocol_v1.SeldonError}, 503: {"model": protocol_v1.SeldonError}},
        response_class=Response,
    )
    async def health_status() -> Response:
        if state.ready:
            body = {"status": {"code": 200, "info": "ready", "reason": "", "status": "SUCCESS"}}
            return Response(orjson.dumps(body), 200, media_type=JSON, headers=state.headers)
        reason = "draining" if state.draining else state.load_error or "loading"
        return error_response(False, 503, f"not ready: {reason}")

    @app.get(
        "/metadata",
        tags=["seldon v1"],
        summary="Model name, version, content hash, inputs and outputs",
        responses={503: {"model": protocol_v1.SeldonError}},
        response_class=Response,
    )
    async def v1_metadata() -> Response:
        try:
            model, _ = state.require_model()
        except RequestError as exc:
            return error_response(False, exc.status, exc.message)
        return Response(orjson.dumps(protocol_v1.metadata(model)), media_type=JSON, headers=state.headers)

    # ---- Open Inference Protocol (V2) ----

    def v2_status(ok: bool, reason: str = "") -> Response:
        if ok:
            return Response(
                orjson.dumps({"ready": True}) if reason == "ready" else b"{}", 200, media_type=JSON
            )
        return Response(orjson.dumps({"error": reason}), 503, media_type=JSON)

    @app.get("/v2/health/live", tags=["v2"], summary="Liveness", response_class=Response)
    async def v2_live() -> Response:
        return Response(orjson.dumps({"live": True}), media_type=JSON)

    @app.get(
        "/v2/health/ready",
        tags=["v2"],
        summary="Readiness",
        responses={503: {"model": protocol_v2.ErrorResponse}},
        response_class=Response,
    )
    async def v2_ready() -> Response:
        if state.ready:
            return Response(orjson.dumps({"ready": True}), media_type=JSON)
        reason = "draining" if state.draining else state.load_error or "loading"
        return Response(orjson.dumps({"ready": False, "error": f"not ready: {reason}"}), 503, media_type=JSON)

    @app.get(
        "/v2/models/{model_name}",
        tags=["v2"],
        summary="Model metadata (versions, inputs, outputs, content hash)",
        responses={200: {"model": protocol_v2.ModelMetadata}, 404: {"model": protocol_v2.ErrorResponse}},
        response_class=Response,
    )
    async def v2_metadata(model_name: str) -> Response:
        try:
            model, _ = state.require_model(model_name)
        except RequestError as exc:
            return error_response(True, exc.status, exc.message)
        return Response(orjson.dumps(protocol_v2.metadata(model)), media_type=JSON, headers=state.headers)

    @app.get(
        "/v2/models/{model_name}/ready",
        tags=["v2"],
        summary="Model readiness",
        responses={404: {"model": protocol_v2.ErrorResponse}, 503: {"model": protocol_v2.ErrorResponse}},
        response_class=Response,
    )
    async def v2_model_ready(model_name: str) -> Response:
        try:
            state.require_model(model_name)
        except RequestError as exc:
            return error_response(True, exc.status, exc.message)
        if state.draining:
            return error_response(True, 503, "not ready: draining")
        return Response(orjson.dumps({"name": model_name, "ready": True}), media_type=JSON)

    @app.post(
        "/v2/models/{model_name}/infer",
        tags=["v2"],
        summary="Predict class probabilities (classifiers) or values (regression)",
        responses=v2_responses,
        openapi_extra=openapi_body(protocol_v2.InferenceRequest),
        response_class=Response,
    )
    async def v2_infer(model_name: str, request: Request) -> Response:
        return await predict(request, True, model_name)

    @app.post(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        tags=["v2"],
        summary="Predict with an explicit version (must be the served one)",
        responses=v2_responses,
        openapi_extra=openapi_body(protocol_v2.InferenceRequest),
        response_class=Response,
    )
    async def v2_infer_version(model_name: str, model_version: str, request: Request) -> Response:
        if model_version != settings.model_version:
            msg = f"model {model_name!r} version {model_version!r} not found"
            msg += f"; serving {settings.model_version!r}"
            return error_response(True, 404, msg)
        return await predict(request, True, model_name)

    add_feedback_routes(app, state)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # ---- errors outside the handlers: the protocol's format, never FastAPI's 422 ----

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(request.url.path.startswith("/v2"), exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return error_response(request.url.path.startswith("/v2"), 400, f"{where}: {first['msg']}")

    # The two hot routes as raw ASGI in front of everything (hotpath.py); the FastAPI routes above
    # document them and answer what the hot routes leave.
    app.hot = hot_routes(predictor)
    if tokens is None:
        install_openapi(app, BODIES)
        return app

    def refuse(path: str, refusal: auth.Refusal) -> Response:
        return error_response(path.startswith("/v2"), refusal.status, refusal.message)

    guard = {
        "tokens": tokens,
        "needs": auth.protected,
        "respond": refuse,
        "on_refusal": lambda reason: state.metrics.auth_refusals.labels(reason).inc(),
    }
    app.add_middleware(auth.BearerAuth, **guard)
    app.hot = auth.BearerAuth(app.hot, **guard)
    error_schema = lambda path: "ErrorResponse" if path.startswith("/v2") else "SeldonError"  # noqa: E731
    install_openapi(app, BODIES, lambda doc: auth.openapi_security(doc, auth.protected, error_schema))
    return app


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    """The body's chunks; a client gone mid-body ends the request as on the hot routes."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise ClientGone from None
