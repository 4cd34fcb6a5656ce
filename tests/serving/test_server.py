"""A real server process: readiness, integrity, batching correctness, invalid input, load, shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal

import httpx
import numpy as np
import orjson

V1 = "/api/v1.0/predictions"


def v2_path(packaged) -> str:
    return f"/v2/models/{packaged.name}/infer"


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = (
        rf"^{re.escape(name)}(?:\{{{re.escape(want)}\}})? (\S+)$" if want else rf"^{re.escape(name)} (\S+)$"
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def v2_body(packaged, rows: list[list]) -> dict:
    """One tensor per feature (BYTES for strings)."""
    inputs = []
    for j, feature in enumerate(packaged.model.features):
        datatype = "BYTES" if feature.kind == "string" else "FP64"
        inputs.append(
            {"name": feature.name, "shape": [len(rows)], "datatype": datatype, "data": [r[j] for r in rows]}
        )
    return {"inputs": inputs}


def test_ready_with_version_and_hash_everywhere(server, packaged) -> None:
    with server.client() as c:
        assert c.get("/health/ping").text == "pong"
        assert c.get("/health/status").status_code == 200
        assert c.get("/v2/health/live").status_code == 200
        assert c.get(f"/v2/models/{packaged.name}/ready").json()["ready"] is True
        meta = c.get("/metadata").json()
        assert meta["versions"] == [packaged.version] and meta["content_hash"] == packaged.content_hash
        v2 = c.get(f"/v2/models/{packaged.name}").json()
        assert v2["versions"] == [packaged.version]
        assert v2["parameters"]["content_hash"] == packaged.content_hash
        assert [i["name"] for i in v2["inputs"]] == [f.name for f in packaged.model.features]
        answer = c.post(V1, json={"data": {"ndarray": packaged.rows[:2]}})
        assert answer.status_code == 200
        assert answer.headers["x-model-name"] == packaged.name
        assert answer.headers["x-model-version"] == packaged.version
        assert answer.headers["x-model-hash"] == packaged.content_hash
        assert answer.json()["data"]["names"] == ["good", "bad"]
        metrics = c.get("/metrics").text
    labels = f'hash="{packaged.content_hash}",name="{packaged.name}",version="{packaged.version}"'
    assert f"modelops_model_info{{{labels}}} 1.0" in metrics
    assert metric(metrics, "modelops_requests_total", endpoint="v1", status="200") >= 1
    predicted = [
        metric(metrics, "modelops_predictions_total", model=packaged.name, **{"class": c})
        for c in ("good", "bad")
    ]
    assert sum(predicted) >= 2


def test_every_request_form_gives_the_pipeline_answer(server, packaged) -> None:
    rows = packaged.rows[:5]
    expected = packaged.reference(rows)
    names = [f.name for f in packaged.model.features]
    flat = [v for r in rows for v in r]
    perm = list(reversed(range(len(names))))
    with server.client() as c:
        answers = {
            "ndarray": c.post(V1, json={"data": {"names": names, "ndarray": rows}}).json()["data"]["ndarray"],
            "reordered": c.post(
                V1,
                json={
                    "data": {
                        "names": [names[i] for i in perm],
                        "ndarray": [[r[i] for i in perm] for r in rows],
                    }
                },
            ).json()["data"]["ndarray"],
            "tensor": np.reshape(
                c.post(V1, json={"data": {"tensor": {"shape": [5, 13], "values": flat}}}).json()["data"][
                    "tensor"
                ]["values"],
                (5, 2),
            ),
            "instances": [
                [p["good"], p["bad"]]
                for p in c.post(
                    V1, json={"jsonData": {"instances": [dict(zip(names, r, strict=True)) for r in rows]}}
                ).json()["jsonData"]["predictions"]
            ],
            "columns": [
                [p["good"], p["bad"]]
                for p in c.post(
                    V1, json={"jsonData": {n: [r[j] for r in rows] for j, n in enumerate(names)}}
                ).json()["jsonData"]["predictions"]
            ],
            "form": c.post(V1, data={"json": orjson.dumps({"data": {"ndarray": rows}}).decode()}).json()[
                "data"
            ]["ndarray"],
            "v2 per feature": np.reshape(
                c.post(v2_path(packaged), json=v2_body(packaged, rows)).json()["outputs"][0]["data"], (5, 2)
            ),
            "v2 matrix": np.reshape(
                c.post(
                    v2_path(packaged),
                    json={"inputs": [{"name": "x", "shape": [5, 13], "datatype": "BYTES", "data": rows}]},
                ).json()["outputs"][0]["data"],
                (5, 2),
            ),
        }
    for form, got in answers.items():
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-9, err_msg=form)


def test_concurrent_requests_each_get_exactly_their_rows(server, packaged) -> None:
    """Many concurrent requests with distinct rows: batching must hand every caller its own answer."""
    pool = packaged.rows
    jobs = []
    start = 0
    for k in range(300):
        n = k % 3 + 1
        jobs.append(pool[start : start + n])
        start = (start + n) % (len(pool) - 3)
    with server.client() as c:
        before = c.get("/metrics").text

    async def run() -> list:
        limits = httpx.Limits(max_connections=48)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:

            async def one(k: int, rows: list) -> np.ndarray:
                if k % 2:
                    r = await client.post(V1, json={"data": {"ndarray": rows}})
                    return np.asarray(r.json()["data"]["ndarray"])
                r = await client.post(v2_path(packaged), json=v2_body(packaged, rows))
                return np.reshape(r.json()["outputs"][0]["data"], (len(rows), 2))

            return await asyncio.gather(*(one(k, rows) for k, rows in enumerate(jobs)))

    results = asyncio.run(run())
    for rows, got in zip(jobs, results, strict=True):
        np.testing.assert_allclose(got, packaged.reference(rows), rtol=1e-9)
    with server.client() as c:
        after = c.get("/metrics").text
    batches = metric(after, "modelops_batch_rows_count") - metric(before, "modelops_batch_rows_count")
    singles = metric(after, "modelops_batch_rows_bucket", le="1.0") - metric(
        before, "modelops_batch_rows_bucket", le="1.0"
    )
    rows_total = sum(map(len, jobs))
    assert batches < len(jobs), (
        f"{batches} batches for {len(jobs)} concurrent requests: nothing was coalesced"
    )
    assert batches - singles > 0 and rows_total / batches > 1.5


def _row(packaged, **changes) -> list:
    row = list(packaged.rows[0])
    names = [f.name for f in packaged.model.features]
    for name, value in changes.items():
        row[names.index(name)] = value
    return row


def _v1_cases(packaged) -> list[tuple[str, object, int, str]]:
    good = packaged.rows[0]
    return [
        ("wrong feature count", {"data": {"ndarray": [good[:-1]]}}, 400, "12 values; the model expects 13"),
        ("1-D data", {"data": {"ndarray": good}}, 400, "row 0 is float"),
        (
            "unknown name",
            {"data": {"names": ["nope", *[f.name for f in packaged.model.features][1:]], "ndarray": [good]}},
            400,
            "unknown feature(s) ['nope']",
        ),
        ("names too short", {"data": {"names": ["age"], "ndarray": [good]}}, 400, "missing feature(s)"),
        (
            "string for number",
            {"data": {"ndarray": [_row(packaged, age="old")]}},
            400,
            "feature 'age', row 0: expected a number, got str",
        ),
        (
            "bool for number",
            {"data": {"ndarray": [_row(packaged, age=True)]}},
            400,
            "booleans are not numbers",
        ),
        (
            "number for string",
            {"data": {"ndarray": [_row(packaged, job=1.5)]}},
            400,
            "feature 'job', row 0: expected a string",
        ),
        (
            "tensor shape",
            {"data": {"tensor": {"shape": [2, 13], "values": good}}},
            400,
            "needs 26 values, got 13",
        ),
        ("no data", {"meta": {}}, 400, "has no data"),
        ("strData", {"strData": "hello"}, 400, "strData is not supported"),
        ("not an object", [1, 2], 400, "must be a JSON object"),
        ("data not an object", {"data": [1]}, 400, "not a SeldonMessage: data"),
        ("jsonData missing feature", {"jsonData": {"instances": [{"age": 1}]}}, 400, "missing feature(s)"),
        ("empty", {"data": {"ndarray": []}}, 400, "no rows"),
        (
            "too many rows",
            {"data": {"ndarray": [good] * 2001}},
            413,
            "2001 rows in one request; the limit is 2000",
        ),
    ]


def test_invalid_v1_requests_get_seldon_4xx_and_the_server_stays_up(server, packaged) -> None:
    with server.client() as c:
        for label, body, status, message in _v1_cases(packaged):
            r = c.post(V1, content=orjson.dumps(body), headers={"content-type": "application/json"})
            assert r.status_code == status, (label, r.text)
            err = r.json()["status"]
            assert err["status"] == "FAILURE" and err["code"] == status, label
            assert message in err["info"], (label, err["info"])
        raw_cases = [
            ("malformed JSON", b'{"data": {"ndarray": [[1,', "application/json", 400, "not valid JSON"),
            ("NaN literal", b'{"data": {"ndarray": [[NaN]]}}', "application/json", 400, "not valid JSON"),
            ("empty body", b"", "application/json", 400, "body is empty"),
            ("wrong content type", b"a,b,c", "text/csv", 415, "unsupported Content-Type 'text/csv'"),
            ("form without json", b"x=1", "application/x-www-form-urlencoded", 400, "json=<SeldonMessage>"),
            ("not utf-8", b"\xff\xfe{", "application/json", 400, "not valid JSON"),
        ]
        for label, body, ctype, status, message in raw_cases:
            r = c.post(V1, content=body, headers={"content-type": ctype})
            assert r.status_code == status, (label, r.text)
            assert message in r.json()["status"]["info"], (label, r.text)
        r = c.get(V1)
        assert r.status_code == 405 and r.json()["status"]["status"] == "FAILURE"
        assert c.get("/v2/health/ready").status_code == 200


def test_invalid_v2_requests_get_v2_errors(server, packaged) -> None:
    good = v2_body(packaged, packaged.rows[:2])
    wrong_type = orjson.loads(orjson.dumps(good))
    wrong_type["inputs"][9]["datatype"] = "FP64"
    missing = {"inputs": good["inputs"][1:]}
    short = orjson.loads(orjson.dumps(good))
    short["inputs"][3]["data"] = [1.0]
    nan = orjson.loads(orjson.dumps(good))
    nan["inputs"][0]["data"] = ["NaN", 1.0]
    cases = [
        ("wrong datatype", wrong_type, 400, "input 'home' is FP64; a string feature needs BYTES"),
        ("missing input", missing, 400, "missing input(s) ['seniority']"),
        ("short input", short, 400, "input 'expenses': shape [2] needs 2 values, got 1"),
        ("NaN string", nan, 400, "feature 'seniority', row 0: expected a number, got str"),
        ("no inputs", {"id": "x"}, 400, "inputs: Field required"),
        (
            "bad datatype",
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP99", "data": [1]}]},
            400,
            "datatype",
        ),
        (
            "matrix shape",
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
            400,
            "[rows, 13]",
        ),
    ]
    with server.client() as c:
        for label, body, status, message in cases:
            r = c.post(v2_path(packaged), json=body)
            assert r.status_code == status, (label, r.text)
            assert message in r.json()["error"], (label, r.json())
        r = c.post("/v2/models/other/infer", json=good)
        assert r.status_code == 404 and "model 'other' not found" in r.json()["error"]
        assert c.get("/v2/models/other").status_code == 404
        assert c.get("/v2/models/other/ready").status_code == 404
        r = c.post(v2_path(packaged), content=b"{", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        assert c.get("/v2/health/ready").status_code == 200


def test_huge_bodies_are_413_by_header_and_while_reading(server, packaged) -> None:
    big = b'{"data": {"ndarray": [' + b" " * (1024 * 1024 + 10) + b"]}}"
    with server.client() as c:
        r = c.post(V1, content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit is 1048576" in r.json()["status"]["info"]

        def chunks():  # no Content-Length: chunked transfer, counted while reading
            yield b'{"data": {"ndarray": ['
            for _ in range(300):
                yield b" " * 4096

        r = c.post(v2_path(packaged), content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]
        assert "content-length" not in r.request.headers
    with server.client() as c:
        assert c.get("/v2/health/ready").status_code == 200


def test_hash_mismatch_never_becomes_ready(launch, packaged) -> None:
    wrong = "0" * 64
    srv = launch(expected_hash=wrong)
    srv.wait(lambda: "model load failed" in srv.log_text())
    log = srv.log_text()
    assert "REFUSED" in log and "content hash mismatch" in log
    assert wrong in log and packaged.content_hash in log
    with srv.client() as c:
        assert c.get("/v2/health/live").status_code == 200
        ready = c.get("/v2/health/ready")
        assert ready.status_code == 503 and "hash mismatch" in ready.json()["error"]
        assert c.get("/health/status").status_code == 503
        r = c.post(V1, json={"data": {"ndarray": packaged.rows[:1]}})
        assert r.status_code == 503 and "not ready" in r.json()["status"]["info"]
        assert "modelops_model_info{" not in c.get("/metrics").text


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def test_bounded_load_without_failures_or_memory_growth(server, packaged) -> None:
    """3,000 requests at saturation (32 connections, single rows, both protocols): zero failures,
    RSS flat. A count, not a duration, so a busy machine makes it slower, never different.

    (benchmarks/serving.py is the long run; this one bounds the suite time.)
    """
    bodies = [(V1, orjson.dumps({"data": {"ndarray": [r]}})) for r in packaged.rows[:200]] + [
        (v2_path(packaged), orjson.dumps(v2_body(packaged, [r]))) for r in packaged.rows[:50]
    ]

    async def run(requests: int) -> tuple[int, list]:
        limits = httpx.Limits(max_connections=32)
        ok, failures = 0, []
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:

            async def worker(k: int) -> None:
                nonlocal ok
                for i in range(k * 7, k * 7 + requests // 32 * 7, 7):
                    path, body = bodies[i % len(bodies)]
                    try:
                        r = await client.post(
                            path, content=body, headers={"content-type": "application/json"}
                        )
                        if r.status_code == 200:
                            ok += 1
                        else:
                            failures.append(r.status_code)
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))

            await asyncio.gather(*(worker(k) for k in range(32)))
        return ok, failures

    asyncio.run(run(640))  # warm up: allocator pools, caches
    before = rss_kib(server.proc.pid)
    ok, failures = asyncio.run(run(3200))
    after = rss_kib(server.proc.pid)
    assert failures == [] and ok == 3200
    assert after < before * 1.10, f"RSS grew from {before} KiB to {after} KiB"


def test_sigterm_drains_readiness_first_and_finishes_in_flight_requests(launch, packaged) -> None:
    srv = launch(shutdown_delay_s="1.0")
    srv.wait_ready()
    body = orjson.dumps({"data": {"ndarray": packaged.rows[:1500]}})

    async def run() -> tuple[list[int], list[int]]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
            inflight = [
                asyncio.create_task(
                    client.post(V1, content=body, headers={"content-type": "application/json"})
                )
                for _ in range(40)
            ]
            await asyncio.sleep(0.05)
            os.kill(srv.proc.pid, signal.SIGTERM)
            await asyncio.sleep(0.2)
            ready = [
                (await client.get("/v2/health/ready")).status_code,
                (await client.get("/health/status")).status_code,
            ]
            late = await client.post(V1, content=body, headers={"content-type": "application/json"})
            done = await asyncio.gather(*inflight)
            return [r.status_code for r in done] + [late.status_code], ready

    statuses, ready = asyncio.run(run())
    assert ready == [503, 503], "readiness must go false as soon as SIGTERM arrives"
    assert statuses == [200] * 41
    srv.proc.wait(30)
    log = srv.log_text()
    assert "draining" in log and "Traceback" not in log
