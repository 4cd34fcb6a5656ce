"""Ground-truth feedback: request ids on every prediction, the joins and refusals of both feedback
endpoints, the memory's bounds, and the feedback log (exact lines, drops, rotation)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from modelops_serving.app import create_app
from modelops_serving.feedback import Feedback, FeedbackLog
from modelops_serving.memory import PredictionMemory
from modelops_serving.metrics import Metrics
from modelops_serving.settings import Settings

from tests.serving.conftest import MULTICLASS, REGRESSION, Packaged
from tests.serving.test_inference_log import read_log, wait_until
from tests.serving.test_server import V1, metric, v2_body, v2_path

V1_FEEDBACK = "/api/v1.0/feedback"
HEX32 = re.compile(r"[0-9a-f]{32}")
FEEDBACK_FILE = re.compile(r"^feedback/(\d{4}-\d{2}-\d{2})/(\d{6})-(\d+)-(\d+)\.jsonl$")
KEYS = ["ts", "predicted_at", "model", "version", "hash", "request_id", "row", "truth", "prediction"]
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def v2_feedback(packaged: Packaged) -> str:
    return f"/v2/models/{packaged.name}/feedback"


def seldon_feedback(puid: str, truth: list, reward: float | None = None) -> dict:
    """Seldon's Feedback body as its clients send it: the response's meta (puid), the truth, a reward."""
    body = {"response": {"meta": {"puid": puid}}, "truth": {"data": {"ndarray": truth}}}
    return body | ({"reward": reward} if reward is not None else {})


def feedback_lines(root: Path, packaged: Packaged) -> list[dict]:
    """Every line of the model's feedback files, oldest file first."""
    files = sorted((root / packaged.name / "feedback").glob("*/*.jsonl"))
    return [orjson.loads(line) for f in files for line in f.read_bytes().splitlines()]


def classes_of(out: list[list[float]], packaged: Packaged) -> list[str]:
    return [packaged.model.classes[int(np.argmax(p))] for p in out]


@contextlib.asynccontextmanager
async def serve(packaged: Packaged, tmp_path: Path, **settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in this process, ready (its lifespan loaded the model, started the writers);
    leaving the block runs its shutdown. `client.app_state` is the server's state."""
    defaults = {"cache_dir": tmp_path / "cache", "inference_log_dir": tmp_path / "log"}
    config = Settings(
        model_uri=packaged.path.as_uri(),
        model_name=packaged.name,
        model_version=packaged.version,
        expected_hash=packaged.content_hash,
        **(defaults | settings),
    )
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://in-process") as client,
    ):
        await wait_until(lambda: client.get("/v2/health/ready"), lambda r: r.status_code == 200)
        client.app_state = app.state.modelops  # type: ignore[attr-defined]
        yield client


async def metric_of(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    return metric((await client.get("/metrics")).text, name, **labels)


# ---- request ids (a real server process) ----


def test_every_prediction_carries_one_request_id_in_body_and_header(server, packaged: Packaged) -> None:
    rows = packaged.rows[:2]
    v1_body = {"data": {"ndarray": rows}}
    get = {"json": orjson.dumps(v1_body).decode()}
    version_path = f"/v2/models/{packaged.name}/versions/{packaged.version}/infer"
    with server.client() as c:
        # the fast Starlette routes and the FastAPI ones (POST and GET /predict, versioned infer)
        v1 = [c.post(V1, json=v1_body), c.post("/predict", json=v1_body), c.get("/predict", params=get)]
        v2 = [
            c.post(v2_path(packaged), json=v2_body(packaged, rows)),
            c.post(version_path, json=v2_body(packaged, rows)),
        ]
        for r in v1 + v2:
            assert r.status_code == 200, r.text
        ids = [r.json()["meta"]["puid"] for r in v1] + [r.json()["id"] for r in v2]
        assert all(HEX32.fullmatch(i) for i in ids) and len(set(ids)) == len(ids)
        assert [r.headers["x-request-id"] for r in v1 + v2] == ids

        # a sane x-request-id header is the id (the router gives a request and its shadow one id)
        for path, body, read in (
            (V1, v1_body, lambda r: r.json()["meta"]["puid"]),
            (v2_path(packaged), v2_body(packaged, rows), lambda r: r.json()["id"]),
        ):
            r = c.post(path, json=body, headers={"x-request-id": "router.id-7_A"})
            assert read(r) == r.headers["x-request-id"] == "router.id-7_A"
            for insane in ("has space", "x" * 65, "semi;colon"):
                r = c.post(path, json=body, headers={"x-request-id": insane})
                assert HEX32.fullmatch(read(r)) and r.headers["x-request-id"] == read(r)

        # the client's own id in the body wins (V2 must echo it; Seldon keeps a given puid)
        r = c.post(
            v2_path(packaged), json=v2_body(packaged, rows) | {"id": "mine-1"}, headers={"x-request-id": "h"}
        )
        assert r.json()["id"] == r.headers["x-request-id"] == "mine-1"
        r = c.post(V1, json=v1_body | {"meta": {"puid": "seldon-puid"}}, headers={"x-request-id": "h"})
        assert r.json()["meta"]["puid"] == r.headers["x-request-id"] == "seldon-puid"
        # ...even one that cannot be a header value: echoed in the body, no header
        r = c.post(v2_path(packaged), json=v2_body(packaged, rows) | {"id": "é\nx"})
        assert r.status_code == 200 and r.json()["id"] == "é\nx" and "x-request-id" not in r.headers
        # a refused request has no id
        bad = c.post(V1, json={"data": {"ndarray": [[1.0]]}})
        assert bad.status_code == 400 and "x-request-id" not in bad.headers


# ---- feedback joins and refusals (a real server process) ----


def test_feedback_is_refused_in_each_protocols_format(server, packaged: Packaged) -> None:
    rows = packaged.rows[:3]
    with server.client() as c:
        puid = c.post(V1, json={"data": {"ndarray": rows}}).json()["meta"]["puid"]
        v2_id = c.post(v2_path(packaged), json=v2_body(packaged, rows)).json()["id"]
        good = ["good", "bad", "good"]

        def v1(body, **kw) -> tuple[int, str]:
            r = c.post(V1_FEEDBACK, **({"json": body} if body is not None else {}), **kw)
            status = r.json()["status"]
            assert status["status"] == "FAILURE" and status["code"] == r.status_code, r.text
            return r.status_code, status["info"]

        def v2(body, path: str = v2_feedback(packaged), **kw) -> tuple[int, str]:
            r = c.post(path, **({"json": body} if body is not None else {}), **kw)
            assert set(r.json()) == {"error"}, r.text
            return r.status_code, r.json()["error"]

        status, info = v1(seldon_feedback("0" * 32, good))
        assert status == 404 and info.startswith(f"no prediction with request id {'0' * 32!r} here")
        assert v2({"id": "nope", "truth": good})[0] == 404
        assert v2({"id": v2_id, "truth": good}, path="/v2/models/other/feedback") == (
            404,
            f"model 'other' not found; this server serves {packaged.name!r}",
        )
        # malformed bodies
        assert v1({"truth": {"data": {"ndarray": good}}}) == (
            400,
            "response.meta.puid is required: the puid (request id) of the prediction's response",
        )
        assert v1({"response": {"meta": {"puid": puid}}, "truth": {"jsonData": good}})[0] == 400
        assert v1(seldon_feedback(puid, good) | {"reward": "high"})[1].startswith("reward must be a finite")
        assert v2({"truth": good}) == (400, "id is required: the id of the prediction's response (a string)")
        assert v2({"id": v2_id, "truth": "good"})[1].startswith("truth must be a list")
        assert v2([1, 2])[0] == 400
        # the truth against the prediction: type, class, rows
        assert v1(seldon_feedback(puid, [0, 1, 0])) == (
            400,
            "truth row 0: 0 is not a class name (a string); the classes are ['good', 'bad']",
        )
        assert v2({"id": v2_id, "truth": ["good", "ugly", "bad"]}) == (
            400,
            "truth row 1: 'ugly' is not a class of the model; the classes are ['good', 'bad']",
        )
        assert v2({"id": v2_id, "truth": ["good"]})[1] == (
            f"truth has 1 value(s); the prediction of request id {v2_id!r} has 3 row(s): "
            "send one truth per row, in the request's order"
        )
        # size and media type
        big = b'{"truth": [' + b" " * (1024 * 1024 + 10) + b"]}"
        assert v1(None, content=big, headers={"content-type": "application/json"})[0] == 413
        assert v2({"id": v2_id, "truth": ["good"] * 200_000})[0] == 413
        assert v2(None, content=b"id=1", headers={"content-type": "text/plain"})[0] == 415
        # nothing refused consumed the ids: both still take their feedback, once
        ok1 = c.post(V1_FEEDBACK, json=seldon_feedback(puid, good, reward=1.0))
        ok2 = c.post(v2_feedback(packaged), json={"id": v2_id, "truth": [[g] for g in good]})
        assert ok1.status_code == ok2.status_code == 200, (ok1.text, ok2.text)
        assert ok1.json()["meta"]["puid"] == ok1.headers["x-request-id"] == puid
        assert ok1.json()["meta"]["tags"]["feedback_rows"] == 3
        assert ok2.json() == {
            "model_name": packaged.name,
            "model_version": packaged.version,
            "id": v2_id,
            "rows": 3,
        }
        assert v1(seldon_feedback(puid, good)) == (409, f"request id {puid!r} already has its feedback")
        assert v2({"id": v2_id, "truth": good})[0] == 409
        text = c.get("/metrics").text
        assert metric(text, "modelops_feedback_total") == 6
        assert metric(text, "modelops_feedback_requests_total", endpoint="v1", status="409") == 1
        assert metric(text, "modelops_feedback_requests_total", endpoint="v2", status="200") == 1
        # feedback is not prediction traffic: the request counters the alerts read are untouched by it
        assert metric(text, "modelops_requests_total", endpoint="v1", status="404") == 0
        assert c.get("/v2/health/ready").status_code == 200


# ---- the feedback log (a real server process) ----


def test_outcomes_are_logged_one_line_per_row_beside_the_inference_log(
    launch, packaged: Packaged, tmp_path: Path
) -> None:
    root = tmp_path / "inference-log"
    srv = launch(inference_log_dir=str(root), inference_log_sample_rate="1")
    srv.wait_ready()
    names = [f.name for f in packaged.model.features]
    before = datetime.now(UTC)
    with srv.client() as c:
        flat = c.post(V1, json={"data": {"names": names, "ndarray": packaged.rows[:3]}})
        tensor = c.post(V1, json={"data": {"ndarray": packaged.rows[3:5]}})  # its truth: a tensor
        form = c.post(V1, json={"data": {"ndarray": packaged.rows[5:6]}})  # its feedback: a form post
        v2 = c.post(v2_path(packaged), json=v2_body(packaged, packaged.rows[6:8]) | {"id": "order-42"})
        answers = {
            flat.json()["meta"]["puid"]: (flat.json()["data"]["ndarray"], ["bad", "good", "good"], 0.5),
            tensor.json()["meta"]["puid"]: (tensor.json()["data"]["ndarray"], ["good", "bad"], None),
            form.json()["meta"]["puid"]: (form.json()["data"]["ndarray"], ["bad"], -1.0),
            "order-42": (np.reshape(v2.json()["outputs"][0]["data"], (2, 2)).tolist(), ["good", "good"], 2),
        }
        sent = [
            c.post(
                V1_FEEDBACK, json=seldon_feedback(flat.headers["x-request-id"], ["bad", "good", "good"], 0.5)
            ),
            c.post(
                V1_FEEDBACK,
                json={
                    "request": {"data": {"ndarray": packaged.rows[3:5]}},  # Seldon clients send it; not read
                    "response": tensor.json(),
                    "truth": {
                        "data": {"names": ["truth"], "tensor": {"shape": [2, 1], "values": ["good", "bad"]}}
                    },
                },
            ),
            c.post(
                "/send-feedback",  # Seldon's internal path, form-encoded as its executor may send it
                data={
                    "json": orjson.dumps(
                        seldon_feedback(form.json()["meta"]["puid"], [["bad"]], -1.0)
                    ).decode()
                },
            ),
            c.post(v2_feedback(packaged), json={"id": "order-42", "truth": ["good", "good"], "reward": 2}),
        ]
        assert [r.status_code for r in sent] == [200] * 4, [r.text for r in sent]
        srv.wait(lambda: metric(c.get("/metrics").text, "modelops_feedback_log_records_total") == 8)
        assert metric(c.get("/metrics").text, "modelops_feedback_dropped_total", reason="write_error") == 0
    after = datetime.now(UTC)

    lines = feedback_lines(root, packaged)
    assert len(lines) == 8
    for request_id, (out, truth, reward) in answers.items():
        mine = [line for line in lines if line["request_id"] == request_id]
        assert [line["row"] for line in mine] == list(range(len(truth)))
        for line, proba, value in zip(mine, out, truth, strict=True):
            assert list(line) == [*KEYS, "probabilities", "reward"]  # the contract's key order
            assert (line["model"], line["version"], line["hash"]) == (
                packaged.name,
                packaged.version,
                packaged.content_hash,
            )
            assert line["truth"] == value and line["reward"] == reward
            assert line["probabilities"] == {"good": proba[0], "bad": proba[1]}
            assert line["prediction"] == classes_of([proba], packaged)[0]
            assert STAMP.fullmatch(line["ts"]) and STAMP.fullmatch(line["predicted_at"])
            assert (
                before
                <= datetime.fromisoformat(line["predicted_at"])
                <= datetime.fromisoformat(line["ts"])
                <= after
            )
    (only,) = sorted((root / packaged.name).glob("feedback/*/*.jsonl"))
    day, _, pid, _ = FEEDBACK_FILE.match(only.relative_to(root / packaged.name).as_posix()).groups()
    assert int(pid) == srv.proc.pid and day == lines[0]["ts"][:10]
    # the inference log names the same ids, and holds only inference rows
    logged = read_log(root, packaged)
    assert len(logged) == 8 and {r["request_id"] for r in logged} == set(answers)


# ---- the memory's bounds (the real app in this process) ----


def test_the_memory_forgets_the_oldest_by_requests_and_by_rows(packaged: Packaged, tmp_path: Path) -> None:
    async def run() -> None:
        async with serve(packaged, tmp_path, feedback_memory_requests=3, feedback_memory_rows=6) as c:

            async def predict(n: int, start: int = 0) -> str:
                r = await c.post(V1, json={"data": {"ndarray": packaged.rows[start : start + n]}})
                return r.json()["meta"]["puid"]

            async def feedback(puid: str, n: int) -> httpx.Response:
                return await c.post(V1_FEEDBACK, json=seldon_feedback(puid, ["good"] * n))

            by_requests = [await predict(1) for _ in range(4)]  # the fourth pushes the first out
            assert (await feedback(by_requests[0], 1)).status_code == 404
            assert [(await feedback(p, 1)).status_code for p in by_requests[1:]] == [200] * 3
            by_rows = [await predict(3), await predict(3), await predict(2)]  # 8 rows > 6: the first goes
            expired = await feedback(by_rows[0], 3)
            assert expired.status_code == 404 and "older than the 3 requests / 6 rows" in expired.text
            assert (await feedback(by_rows[1], 3)).status_code == 200
            too_big = await predict(7)  # more rows than the memory holds: answered, not remembered
            assert (await feedback(too_big, 7)).status_code == 404
            memory = c.app_state.feedback.memory
            assert len(memory) <= 3 and memory.rows <= 6

    asyncio.run(run())


def test_a_reused_client_id_joins_its_latest_prediction(packaged: Packaged, tmp_path: Path) -> None:
    async def run() -> list[dict]:
        async with serve(packaged, tmp_path) as c:
            one = await c.post(v2_path(packaged), json=v2_body(packaged, packaged.rows[:1]) | {"id": "same"})
            two = await c.post(v2_path(packaged), json=v2_body(packaged, packaged.rows[1:3]) | {"id": "same"})
            assert one.json()["id"] == two.json()["id"] == "same"
            wrong = await c.post(v2_feedback(packaged), json={"id": "same", "truth": ["good"]})
            assert wrong.status_code == 400 and "has 2 row(s)" in wrong.text
            ok = await c.post(v2_feedback(packaged), json={"id": "same", "truth": ["bad", "bad"]})
            assert ok.status_code == 200 and ok.json()["rows"] == 2
            assert c.app_state.feedback.memory.rows == 0  # one entry, its outputs let go
        return feedback_lines(tmp_path / "log", packaged)

    assert [line["truth"] for line in asyncio.run(run())] == ["bad", "bad"]


@pytest.mark.parametrize("kind", [REGRESSION, MULTICLASS])
def test_the_other_tasks_take_their_own_truths(task_models, kind: str, tmp_path: Path) -> None:
    packaged = task_models(kind)
    model = packaged.model

    async def run() -> list[dict]:
        async with serve(packaged, tmp_path) as c:
            r = await c.post(v2_path(packaged), json=v2_body(packaged, packaged.rows[:2]))
            out = np.reshape(r.json()["outputs"][0]["data"], (2, len(model.outputs)))
            path = v2_feedback(packaged)
            if kind == REGRESSION:
                refused = await c.post(path, json={"id": r.json()["id"], "truth": ["high", 1.0]})
                assert refused.status_code == 400 and "row 0: 'high' is not a finite number" in refused.text
                assert (
                    await c.post(path, json={"id": r.json()["id"], "truth": [True, 1]})
                ).status_code == 400
                truth = [41.5, 7]
            else:
                refused = await c.post(path, json={"id": r.json()["id"], "truth": [model.classes[0], "nope"]})
                assert refused.status_code == 400 and f"the classes are {list(model.classes)}" in refused.text
                truth = [model.classes[-1], model.classes[0]]
            ok = await c.post(path, json={"id": r.json()["id"], "truth": truth})
            assert ok.status_code == 200, ok.text
        return [
            line | {"out": o}
            for line, o in zip(feedback_lines(tmp_path / "log", packaged), out.tolist(), strict=True)
        ]

    lines = asyncio.run(run())
    for line in lines:
        if kind == REGRESSION:
            assert list(line) == [*KEYS, "reward", "out"]  # no probabilities
            assert isinstance(line["truth"], float) and line["prediction"] == line["out"][0]
        else:
            assert list(line["probabilities"]) == list(model.classes)
            assert line["prediction"] == model.classes[int(np.argmax(line["out"]))]
    assert [line["truth"] for line in lines] == (
        [41.5, 7.0] if kind == REGRESSION else [model.classes[-1], model.classes[0]]
    )


# ---- never fail a request for the log (the real app in this process) ----


def test_a_full_queue_drops_outcomes_counted_and_feedback_still_answers(
    packaged: Packaged, tmp_path: Path
) -> None:
    async def run() -> None:
        async with serve(packaged, tmp_path, feedback_log_queue_size=1) as c:
            # the writer stopped (as at shutdown): nothing drains the one-slot queue any more
            await asyncio.to_thread(c.app_state.feedback.log.close)
            for _ in range(3):
                puid = (await c.post(V1, json={"data": {"ndarray": packaged.rows[:2]}})).json()["meta"][
                    "puid"
                ]
                r = await c.post(V1_FEEDBACK, json=seldon_feedback(puid, ["good", "bad"]))
                assert r.status_code == 200, r.text
            assert await metric_of(c, "modelops_feedback_total") == 6
            assert await metric_of(c, "modelops_feedback_dropped_total", reason="queue_full") == 4
            assert (await c.get("/v2/health/ready")).status_code == 200

    asyncio.run(run())


def test_an_unwritable_directory_drops_outcomes_counted_and_feedback_still_answers(
    packaged: Packaged, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log directory should be\n")

    async def run() -> None:
        async with serve(packaged, tmp_path, inference_log_dir=blocker / "log") as c:
            for k in range(5):
                r = await c.post(v2_path(packaged), json=v2_body(packaged, packaged.rows[k : k + 2]))
                fb = await c.post(
                    v2_feedback(packaged), json={"id": r.json()["id"], "truth": ["good", "good"]}
                )
                assert fb.status_code == 200, fb.text
            drops = "modelops_feedback_dropped_total"
            await wait_until(lambda: metric_of(c, drops, reason="write_error"), lambda v: v == 10)
            assert await metric_of(c, "modelops_feedback_log_records_total") == 0
            assert (await c.get("/v2/health/ready")).status_code == 200

    asyncio.run(run())


def test_feedback_off_answers_404_and_predictions_keep_their_ids(packaged: Packaged, tmp_path: Path) -> None:
    async def run() -> None:
        async with serve(packaged, tmp_path, feedback_memory_requests=0) as c:
            r = await c.post(V1, json={"data": {"ndarray": packaged.rows[:1]}})
            assert HEX32.fullmatch(r.json()["meta"]["puid"])
            fb = await c.post(V1_FEEDBACK, json=seldon_feedback(r.json()["meta"]["puid"], ["good"]))
            assert fb.status_code == 404 and "MODELOPS_FEEDBACK_MEMORY_REQUESTS" in fb.text
            assert c.app_state.feedback is None  # no memory, no writer thread

    asyncio.run(run())


# ---- the parts on their own ----


def test_the_feedback_log_rotates_like_the_inference_log(packaged: Packaged, tmp_path: Path) -> None:
    metrics = Metrics()
    memory = PredictionMemory(1000, 10_000)
    log = FeedbackLog(tmp_path, packaged.model, metrics, queue_size=10_000, max_file_bytes=2048)
    feedback = Feedback(packaged.model, memory, log, metrics)
    out = np.array([[0.25, 0.75], [0.5, 0.5], [0.9, 0.1]])
    for k in range(100):
        memory.remember(f"r{k}", 1.7e9 + k, out, fresh=True)
        assert feedback.accept(f"r{k}", ["bad", "good", "good"], k) == 3
    log.start()
    log.close()
    files = sorted((tmp_path / packaged.name / "feedback").glob("*/*.jsonl"))
    lines = feedback_lines(tmp_path, packaged)
    assert len(files) > 10 and len(lines) == 300
    assert [line["request_id"] for line in lines[:4]] == ["r0", "r0", "r0", "r1"]
    assert lines[0]["predicted_at"] == "2023-11-14T22:13:20.000000Z" and lines[0]["prediction"] == "bad"
    assert lines[2]["probabilities"] == {"good": 0.9, "bad": 0.1} and lines[5]["reward"] == 1
    assert metric(metrics.exposition().decode(), "modelops_feedback_log_records_total") == 300


def test_the_memory_counts_rows_and_keeps_a_settled_ids_place() -> None:
    memory = PredictionMemory(max_requests=3, max_rows=10)
    two, four = np.zeros((2, 2)), np.zeros((4, 2))
    memory.remember("a", 1.0, two, fresh=True)
    memory.remember("b", 2.0, four, fresh=True)
    assert (len(memory), memory.rows) == (2, 6)
    memory.settle("a")  # its outputs go; a second feedback is a 409, not a 404
    assert memory.rows == 4
    with pytest.raises(Exception, match="already has its feedback") as conflict:
        memory.recall("a")
    assert conflict.value.status == 409
    memory.remember("c", 3.0, four, fresh=True)
    memory.remember("d", 4.0, two, fresh=True)  # 4 requests > 3: "a" (settled, 0 rows) goes first
    assert (len(memory), memory.rows) == (3, 10)
    memory.remember("b", 5.0, two, fresh=False)  # a reused id: the new prediction, at the back
    assert memory.recall("b") == (5.0, two) and memory.rows == 8
    memory.remember("e", 6.0, four, fresh=True)  # 12 rows > 10: "c" goes
    with pytest.raises(Exception, match="no prediction with request id 'c'") as missing:
        memory.recall("c")
    assert missing.value.status == 404
    assert (len(memory), memory.rows) == (3, 8)
    by_rows = PredictionMemory(max_requests=100, max_rows=5)
    by_rows.remember("x", 1.0, np.zeros((3, 1)), fresh=True)
    by_rows.remember("y", 2.0, np.zeros((3, 1)), fresh=True)  # 6 rows > 5: "x" goes, requests are few
    by_rows.remember("z", 3.0, np.zeros((6, 1)), fresh=True)  # more than the bound: never remembered
    assert (len(by_rows), by_rows.rows) == (1, 3) and by_rows.recall("y")[0] == 2.0


def test_request_ids_never_repeat_across_batches_threads_and_a_fork() -> None:
    """New ids are cut from one urandom read per 256 (ids.py): never one twice, whether taken past
    a batch's end, from many threads at once, or by a forked child after its parent."""
    import os
    import threading

    from modelops_serving import ids

    taken: list[str] = []
    lock = threading.Lock()

    def take(k: int) -> None:
        mine = [ids.new_id() for _ in range(k)]
        with lock:
            taken.extend(mine)

    threads = [threading.Thread(target=take, args=(1_000,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 8_000 == len(set(taken))
    assert all(HEX32.fullmatch(i) for i in taken)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, as its parent would have taken them from the same batch
        os.close(read)
        os.write(write, "".join(ids.new_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = "".join(ids.new_id() for _ in range(4))
    assert len(child) == 128 and child != parent
    quarters = lambda text: {text[i : i + 32] for i in range(0, 128, 32)}  # noqa: E731
    assert not quarters(child) & quarters(parent)
