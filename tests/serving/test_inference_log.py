"""The sampled inference log: exact rows in real files, sampling, rotation, drops and shutdown flush."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from modelops_serving.app import create_app
from modelops_serving.inference_log import InferenceLog
from modelops_serving.metrics import Metrics
from modelops_serving.settings import Settings
from modelops_serving.validation import rows_from_values

from tests.serving.conftest import Packaged
from tests.serving.test_server import V1, metric, v2_body, v2_path

FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})/(\d{6})-(\d+)-(\d+)\.jsonl$")


def log_files(root: Path, packaged: Packaged) -> list[Path]:
    """Every log file of the model, oldest first (by date, time and sequence number)."""

    def key(path: Path) -> tuple:
        day, hms, pid, seq = FILE.match(path.relative_to(root / packaged.name).as_posix()).groups()
        return day, hms, int(pid), int(seq)

    return (
        sorted((root / packaged.name).glob("*/*.jsonl"), key=key) if (root / packaged.name).exists() else []
    )


def read_log(root: Path, packaged: Packaged) -> list[dict]:
    """All rows of all files, each line parsed (a line that is not JSON fails the test)."""
    return [orjson.loads(line) for f in log_files(root, packaged) for line in f.read_bytes().splitlines()]


def new_log(tmp_path: Path, packaged: Packaged, metrics: Metrics, **kw) -> InferenceLog:
    options = {"sample_rate": 1.0, "queue_size": 10_000, "max_file_bytes": 64 * 1024 * 1024} | kw
    return InferenceLog(tmp_path / "log", packaged.model, metrics, **options)


def batch(packaged: Packaged, start: int, n: int):
    """Validated rows, as the request path hands them over, and the model's probabilities for them."""
    rows = rows_from_values(packaged.rows[start : start + n], None, packaged.model, Settings())
    return rows, packaged.model.predict(rows)


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "inference-log"]


@contextlib.asynccontextmanager
async def in_process(packaged: Packaged, **settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in this process, ready: its lifespan loaded the model and started (or not) the
    writer; leaving the block runs the app's shutdown."""
    config = Settings(
        model_uri=packaged.path.as_uri(),
        model_name=packaged.name,
        model_version=packaged.version,
        expected_hash=packaged.content_hash,
        **{f"inference_log_{k}": v for k, v in settings.items()},
    )
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://in-process") as client,
    ):
        await wait_until(lambda: client.get("/v2/health/ready"), lambda r: r.status_code == 200)
        yield client


async def wait_until(call, predicate, timeout: float = 30):
    """Await `call()` until `predicate` holds for its result; the result."""
    deadline = time.monotonic() + timeout
    while not predicate(result := await call()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; last result {result!r}")
        await asyncio.sleep(0.02)
    return result


async def in_process_metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    return metric((await client.get("/metrics")).text, name, **labels)


# ---- a real server process ----


def test_rate_1_logs_every_row_exactly_and_sigterm_flushes(
    launch, packaged: Packaged, tmp_path: Path
) -> None:
    root = tmp_path / "inference-log"
    srv = launch(inference_log_dir=str(root), inference_log_sample_rate="1")
    srv.wait_ready()
    names = [f.name for f in packaged.model.features]
    v1_rows = [list(r) for r in packaged.rows[:5]]
    v1_rows[1][names.index("age")] = None  # a missing number and a missing string are logged as null
    v1_rows[2][names.index("job")] = None
    v2_rows = packaged.rows[5:8]
    before = datetime.now(UTC)
    with srv.client() as c:
        v1 = c.post(V1, json={"data": {"ndarray": v1_rows}})
        v2 = c.post(v2_path(packaged), json=v2_body(packaged, v2_rows))
        assert v1.status_code == v2.status_code == 200
        srv.wait(lambda: metric(c.get("/metrics").text, "modelops_inference_log_records_total") == 8)
    after = datetime.now(UTC)
    answers = {
        "v1": (v1, v1_rows, v1.json()["data"]["ndarray"]),
        "v2": (v2, v2_rows, np.reshape(v2.json()["outputs"][0]["data"], (3, 2)).tolist()),
    }
    logged = read_log(root, packaged)
    by_request: dict[str, list[dict]] = {}
    for row in logged:
        by_request.setdefault(row["request_id"], []).append(row)
    assert sorted(map(len, by_request.values())) == [3, 5]
    for response, rows, probabilities in answers.values():
        (group,) = [g for g in by_request.values() if len(g) == len(rows)]
        for line, sent, proba in zip(group, rows, probabilities, strict=True):
            assert set(line) == {
                "ts",
                "model",
                "version",
                "hash",
                "request_id",
                "inputs",
                "prediction",
                "probabilities",
            }
            assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
            assert line["model"] == response.headers["x-model-name"] == packaged.name
            assert line["version"] == response.headers["x-model-version"] == packaged.version
            assert line["hash"] == response.headers["x-model-hash"] == packaged.content_hash
            assert list(line["inputs"]) == names and line["inputs"] == dict(zip(names, sent, strict=True))
            assert line["probabilities"] == {"good": proba[0], "bad": proba[1]}
            assert line["prediction"] == ("good", "bad")[int(np.argmax(proba))]
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["ts"])
            assert before <= datetime.fromisoformat(line["ts"]) <= after
    assert by_request[logged[0]["request_id"]][1]["inputs"]["age"] is None
    (only,) = log_files(root, packaged)
    day, _, pid, _ = FILE.match(only.relative_to(root / packaged.name).as_posix()).groups()
    assert int(pid) == srv.proc.pid and day == logged[0]["ts"][:10]

    # A burst, then SIGTERM right after the last answer: shutdown writes whatever is still queued.
    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
            body = orjson.dumps({"data": {"ndarray": packaged.rows[:2]}})
            headers = {"content-type": "application/json"}
            answers = await asyncio.gather(
                *(client.post(V1, content=body, headers=headers) for _ in range(300))
            )
            os.kill(srv.proc.pid, signal.SIGTERM)
            return [r.status_code for r in answers]

    assert asyncio.run(burst()) == [200] * 300
    srv.proc.wait(30)
    assert len(read_log(root, packaged)) == 8 + 600
    assert "inference log: flushed and closed" in srv.log_text() and "Traceback" not in srv.log_text()


# ---- the real app in this process ----


def test_rate_0_writes_nothing_and_starts_no_writer(packaged: Packaged, tmp_path: Path) -> None:
    root = tmp_path / "inference-log"

    async def run() -> float:
        async with in_process(packaged, dir=root, sample_rate=0.0) as client:
            for k in range(20):
                r = await client.post(V1, json={"data": {"ndarray": packaged.rows[k : k + 2]}})
                assert r.status_code == 200
            assert writer_threads() == []
            return await in_process_metric(client, "modelops_inference_log_records_total")

    assert asyncio.run(run()) == 0
    assert not root.exists()


def test_an_unwritable_directory_fails_no_request_and_counts_drops(
    packaged: Packaged, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log directory should be\n")
    caplog.set_level(logging.ERROR, logger="modelops_serving.inference_log")

    async def run() -> None:
        async with in_process(packaged, dir=blocker / "log", sample_rate=1.0) as client:
            for k in range(20):
                r = await client.post(V1, json={"data": {"ndarray": packaged.rows[k : k + 3]}})
                assert r.status_code == 200
            drops = "modelops_inference_log_dropped_total"
            await wait_until(
                lambda: in_process_metric(client, drops, reason="write_error"), lambda v: v == 60
            )
            assert await in_process_metric(client, "modelops_inference_log_records_total") == 0
            assert (await client.get("/v2/health/ready")).status_code == 200

    asyncio.run(run())
    errors = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(errors) == 1 and str(blocker / "log") in errors[0]


# ---- the module on its own ----


def test_a_sample_rate_of_0_2_logs_about_a_fifth_of_requests(packaged: Packaged, tmp_path: Path) -> None:
    inference_log = new_log(tmp_path, packaged, Metrics(), sample_rate=0.2)
    inference_log.start()
    rows, proba = batch(packaged, 0, 2)
    for _ in range(2000):
        inference_log.record(rows, proba)
    inference_log.close()
    per_request = Counter(r["request_id"] for r in read_log(tmp_path / "log", packaged))
    # Binomial(2000, 0.2): mean 400, sd 17.9; outside 7 sd is a ~1e-12 chance, not a flake.
    assert 275 <= len(per_request) <= 525
    assert set(per_request.values()) == {2}, "a sampled request logs all of its rows"


def test_size_rotation_makes_several_files_and_loses_no_line(packaged: Packaged, tmp_path: Path) -> None:
    metrics = Metrics()
    limit = 4096
    inference_log = new_log(tmp_path, packaged, metrics, max_file_bytes=limit)
    inference_log.start()
    for k in range(300):
        inference_log.record(*batch(packaged, k, 3))
    inference_log.close()
    files = log_files(tmp_path / "log", packaged)
    logged = read_log(tmp_path / "log", packaged)
    assert len(files) > 10
    assert len(logged) == 900 and set(Counter(r["request_id"] for r in logged).values()) == {3}
    largest_request = 3 * max(len(orjson.dumps(r)) + 1 for r in logged)
    for f in files[:-1]:  # closed once past the limit, so never more than one request beyond it
        assert limit <= f.stat().st_size < limit + largest_request, f
    assert [r["inputs"]["seniority"] for r in logged[:3]] == [r[0] for r in packaged.rows[:3]]
    text = metrics.exposition().decode()
    assert metric(text, "modelops_inference_log_records_total") == 900


def test_a_full_queue_drops_and_counts_without_blocking(packaged: Packaged, tmp_path: Path) -> None:
    metrics = Metrics()
    inference_log = new_log(tmp_path, packaged, metrics, queue_size=2)
    rows, proba = batch(packaged, 0, 3)
    for _ in range(5):  # the writer is not running yet: the queue fills after two requests
        inference_log.record(rows, proba)
    text = metrics.exposition().decode()
    assert metric(text, "modelops_inference_log_dropped_total", reason="queue_full") == 9
    inference_log.start()
    inference_log.close()
    assert len(read_log(tmp_path / "log", packaged)) == 6
    assert metric(metrics.exposition().decode(), "modelops_inference_log_records_total") == 6


def test_close_writes_what_is_queued_and_stops_the_writer(packaged: Packaged, tmp_path: Path) -> None:
    inference_log = new_log(tmp_path, packaged, Metrics())
    rows, proba = batch(packaged, 0, 2)
    for _ in range(1000):  # several writer batches, queued before it starts; close() follows at once
        inference_log.record(rows, proba)
    inference_log.start()
    inference_log.close()
    assert len(read_log(tmp_path / "log", packaged)) == 2000
    assert writer_threads() == []
