"""The fast request path (hotpath.py, handler.py, the V2 decode without pydantic, the columnar
validation): the same answers as the documented FastAPI routes and as each other protocol, the same
refusals, and the metrics and inference log still written."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import numpy as np
import pytest
from modelops_serving.settings import Settings
from modelops_serving.validation import RequestError, rows_from_columns, rows_from_values

from tests.serving.conftest import Packaged
from tests.serving.test_feedback import serve
from tests.serving.test_inference_log import read_log, wait_until
from tests.serving.test_server import V1, metric, v2_body, v2_path

VERSIONED = "/v2/models/{name}/versions/{version}/infer"
MODEL_HEADERS = ("content-type", "x-model-name", "x-model-version", "x-model-hash")


def test_v1_v2_and_the_documented_routes_give_one_answer(packaged: Packaged, tmp_path: Path) -> None:
    rows = packaged.rows[:40]  # real test rows, missing values among them
    assert any(v is None for r in rows for v in r)
    versioned = VERSIONED.format(name=packaged.name, version=packaged.version)

    async def run() -> None:
        async with serve(packaged, tmp_path, inference_log_sample_rate=1.0) as c:
            answers = {
                "v1 hot": await c.post(V1, json={"data": {"ndarray": rows}}),
                "v1 FastAPI": await c.post("/predict", json={"data": {"ndarray": rows}}),
                "v2 hot": await c.post(v2_path(packaged), json=v2_body(packaged, rows)),
                "v2 FastAPI": await c.post(versioned, json=v2_body(packaged, rows)),
                # a row-major V2 matrix goes through the v1 path's row validation
                "v2 matrix": await c.post(v2_path(packaged), json=matrix(packaged, rows)),
            }
            for key, r in answers.items():
                assert r.status_code == 200, (key, r.text)
            probs = {
                k: np.asarray(r.json()["data"]["ndarray"])
                if k.startswith("v1")
                else np.asarray(r.json()["outputs"][0]["data"]).reshape(r.json()["outputs"][0]["shape"])
                for k, r in answers.items()
            }
            first = probs["v1 hot"]
            assert all(np.array_equal(p, first) for p in probs.values())
            np.testing.assert_allclose(first, packaged.reference(rows), rtol=1e-9)
            for key in ("v1", "v2"):  # same headers, same body but the id, hot or through FastAPI
                hot, doc = answers[f"{key} hot"], answers[f"{key} FastAPI"]
                assert [hot.headers[h] for h in MODEL_HEADERS] == [doc.headers[h] for h in MODEL_HEADERS]
                assert strip_id(hot.json()) == strip_id(doc.json())
            text = (await c.get("/metrics")).text
            assert metric(text, "modelops_requests_total", endpoint="v1", status="200") == 2
            assert metric(text, "modelops_requests_total", endpoint="v2", status="200") == 3
            assert metric(
                text, "modelops_predictions_total", model=packaged.name, **{"class": "good"}
            ) + metric(
                text, "modelops_predictions_total", model=packaged.name, **{"class": "bad"}
            ) == 5 * len(rows)
            ids = {r.headers["x-request-id"] for r in answers.values()}
            logged = await wait_until(
                lambda: asyncio.sleep(0, read_log(tmp_path / "log", packaged)),
                lambda lines: len(lines) >= 5 * len(rows),
            )
            assert len(logged) == 5 * len(rows) and {line["request_id"] for line in logged} == ids

    asyncio.run(run())


def test_the_fast_decode_refuses_what_the_checked_one_refuses(packaged: Packaged, tmp_path: Path) -> None:
    rows = packaged.rows[:3]
    body = v2_body(packaged, rows)
    numeric = next(i for i, f in enumerate(packaged.model.features) if f.kind == "double")
    string = next(i for i, f in enumerate(packaged.model.features) if f.kind == "string")
    name = packaged.model.features[numeric].name

    def edited(i: int, **change) -> dict:
        inputs = [dict(inp) for inp in body["inputs"]]
        inputs[i] |= change
        return {"inputs": inputs}

    async def run() -> None:
        async with serve(packaged, tmp_path, max_body_bytes=4096) as c:
            path = v2_path(packaged)
            # coerced by the pydantic fallback, as before: a shape written as strings still answers
            coerced = await c.post(path, json=edited(numeric, shape=["3"]))
            assert coerced.status_code == 200, coerced.text
            refusals = {
                "datatype.*Input should be": edited(numeric, datatype=["FP64"]),
                "inputs.0.data": edited(0, data="abc"),
                f"feature '{name}', row 1: expected a number, got str": edited(numeric, data=[1.0, "x", 2.0]),
                f"feature '{name}', row 2: expected a number, got bool": edited(
                    numeric, data=[1.0, 2.0, True]
                ),
                "a string feature needs BYTES": edited(string, datatype="FP64"),
                "appears twice": {"inputs": [*body["inputs"], body["inputs"][0]]},
                "missing input": {"inputs": body["inputs"][1:]},
                "needs 3 values, got 2": edited(numeric, data=[1.0, 2.0]),
            }
            for expected, doc in refusals.items():
                r = await c.post(path, json=doc)
                assert r.status_code == 400 and r.json()["error"], (expected, r.text)
                assert re.search(expected, r.json()["error"]), (expected, r.json())
            for status, r in (
                (404, await c.post("/v2/models/other/infer", json=body)),
                (415, await c.post(path, content=b"{}", headers={"content-type": "text/plain"})),
                (413, await c.post(path, content=b"x" * 5000, headers={"content-type": "application/json"})),
            ):
                assert r.status_code == status and set(r.json()) == {"error"}, r.text
            bad_v1 = await c.post(V1, json={"data": {"ndarray": [[*rows[0][:-1], 7]]}})
            assert bad_v1.status_code == 400 and bad_v1.json()["status"]["status"] == "FAILURE"
            text = (await c.get("/metrics")).text
            assert metric(text, "modelops_requests_total", endpoint="v2", status="400") == len(refusals)

    asyncio.run(run())


def test_row_and_column_validation_agree_on_random_rows(packaged: Packaged) -> None:
    """The C-level fast checks and the column-by-column ones build the same FeatureRows."""
    model, settings = packaged.model, Settings()
    rng = random.Random(15)
    pool = packaged.rows
    for _ in range(50):
        rows = [list(rng.choice(pool)) for _ in range(rng.randint(1, 30))]
        for row in rows:  # ints among floats, and missing values, where the model takes numbers
            for j, f in enumerate(model.features):
                if f.kind == "double" and rng.random() < 0.2:
                    row[j] = None if rng.random() < 0.5 else int(rng.random() * 100)
        columns = [list(col) for col in zip(*rows, strict=True)]
        by_rows = rows_from_values(rows, None, model, settings)
        by_columns = rows_from_columns(columns, model, settings)
        checked = rows_from_columns([tuple(c) for c in columns], model, settings)
        for other in (by_columns, checked):
            np.testing.assert_array_equal(by_rows.numeric, other.numeric)
            assert by_rows.strings.tolist() == other.strings.tolist()
            assert other.numeric.flags.c_contiguous and other.strings.flags.c_contiguous
    bad = [list(pool[0])]
    bad[0][next(j for j, f in enumerate(model.features) if f.kind == "double")] = float("inf")
    with pytest.raises(RequestError, match="not a finite number"):
        rows_from_columns([list(c) for c in zip(*bad, strict=True)], model, settings)


def _edit(rng: random.Random, body: dict, n: int) -> dict:
    """One or two random changes to a V2 body, valid or not: what a careless client could send."""
    doc = {"inputs": [dict(inp) for inp in body["inputs"]]}
    inputs = doc["inputs"]
    for _ in range(rng.randint(1, 2)):
        inp = rng.choice(inputs)
        what = rng.randrange(12)
        if what == 0:
            rng.shuffle(inputs)
        elif what == 1:
            inp["datatype"] = rng.choice(["FP32", "INT64", "BYTES", "FP64", "BOOL", "FP99", ["FP64"], None])
        elif what == 2:
            shapes = [[n], [n, 1], [n, 2], [n + 1], [0], [-1], [float(n)], [str(n)], [True], [n, True], "x"]
            inp["shape"] = rng.choice(shapes)
        elif what == 3:
            data = inp.get("data") if isinstance(inp.get("data"), list) else [1.0]
            inp["data"] = rng.choice([[[v] for v in data], data[:-1], "abc", {}, data * 2])
        elif what == 4:
            inp["parameters"] = rng.choice([None, {}, {"content_type": "str"}, [], "x"])
        elif what == 5:
            inp.pop(rng.choice(["name", "shape", "datatype", "data"]))
        elif what == 6:
            inputs.append(dict(rng.choice(inputs)))
        elif what == 7:
            inputs.remove(inp)
        elif what == 8:
            inp["name"] = rng.choice(["nope", 3, ["x"], inputs[0]["name"]])
        elif what == 9:
            doc[rng.choice(["id", "parameters", "outputs"])] = rng.choice(["x", 1, {}, None, [{"name": "x"}]])
        elif what == 10:
            inp["extra"] = [1, 2]
        else:
            inp["data"] = [rng.choice([None, 1, 2.5, "x", True, [1]]) for _ in range(n)]
    return doc


def test_the_one_pass_v2_form_accepts_only_what_the_checked_decode_accepts(packaged: Packaged) -> None:
    """Over random edits of valid bodies: whenever the one-pass form takes a body, the pydantic and
    by-name path accepts it too and gives the same rows; everything else it leaves to that path."""
    from modelops_serving import protocol_v2

    model, settings = packaged.model, Settings()
    rng = random.Random(8)
    taken = left = 0
    for _ in range(3000):
        rows = [list(r) for r in rng.sample(packaged.rows, rng.randint(1, 4))]
        doc = _edit(rng, v2_body(packaged, rows), len(rows))
        columns = protocol_v2._common_form(doc, model, settings)
        if columns is None:
            left += 1
            continue
        taken += 1
        try:
            fast = rows_from_columns(columns, model, settings)
        except RequestError as exc:  # a bad value: the checked path names the same one
            with pytest.raises(RequestError) as checked_exc:
                protocol_v2.checked_decode(doc, model, settings)
            assert checked_exc.value.message == exc.message, doc
            continue
        checked, _ = protocol_v2.checked_decode(doc, model, settings)
        np.testing.assert_array_equal(fast.numeric, checked.numeric)
        assert fast.strings.tolist() == checked.strings.tolist(), doc
    assert taken > 300 and left > 300, (taken, left)  # both sides of the decision were exercised


def test_the_bytes_decode_takes_only_what_the_parsed_decode_gives_alike(packaged: Packaged) -> None:
    """protocol_v2_bytes (msgspec, straight from the body) against orjson then protocol_v2.decode,
    over random edits of valid bodies and over bodies only bytes can be (a key twice, ints past
    64 bits, spacing): whenever the bytes decode takes a body, the parsed one gives the same rows and
    id, or the same error; every other body it leaves to the parsed path."""
    import orjson
    from modelops_serving import protocol_v2, protocol_v2_bytes

    model, settings = packaged.model, Settings()

    def same(body: bytes) -> bool:
        """Whether the bytes decode took the body (then checked against the parsed one)."""
        try:
            fast = protocol_v2_bytes.decode(body, model, settings)
        except RequestError as exc:  # a bad value: the parsed path refuses it with the same words
            with pytest.raises(RequestError) as parsed_exc:
                protocol_v2.decode(orjson.loads(body), model, settings)
            assert parsed_exc.value.message == exc.message, body
            return True
        if fast is None:
            return False
        parsed, parsed_id = protocol_v2.decode(orjson.loads(body), model, settings)
        np.testing.assert_array_equal(fast[0].numeric, parsed.numeric)
        assert fast[0].strings.tolist() == parsed.strings.tolist(), body
        assert fast[1] == parsed_id and type(fast[1]) is type(parsed_id), body
        return True

    rng = random.Random(9)
    taken = left = 0
    for _ in range(3000):
        rows = [list(r) for r in rng.sample(packaged.rows, rng.randint(1, 4))]
        doc = _edit(rng, v2_body(packaged, rows), len(rows))
        if same(orjson.dumps(doc)):
            taken += 1
        else:
            left += 1
    assert taken > 300 and left > 300, (taken, left)  # both sides of the decision were exercised

    plain = orjson.dumps(v2_body(packaged, packaged.rows[:2]) | {"id": "abc"})
    assert same(plain) and same(b" \n" + plain + b"\n ")
    one_row = v2_body(packaged, packaged.rows[:1])["inputs"]
    first, numeric = one_row[0], next(inp for inp in one_row if inp["datatype"] == "FP64")
    inputs = orjson.dumps(one_row)
    for raw in (
        b'{"id": "a", "id": "b", "inputs": ' + inputs + b"}",  # a key twice: both keep the last
        b'{"inputs": ' + inputs + b', "inputs": ' + inputs + b"}",
        b'{"inputs": ' + inputs.replace(orjson.dumps(first["name"]), b'"x"', 1) + b"}",
        b'{"inputs": ' + inputs.replace(orjson.dumps(numeric["data"]), b"[18446744073709551616]", 1) + b"}",
        b'{"inputs": ' + inputs.replace(orjson.dumps(numeric["data"]), b"[1e400]", 1) + b"}",
        b'{"inputs": ' + inputs + b', "outputs": null}',
        b"",
        b"[]",
    ):
        same(raw)  # taken or left, never taken and different


def matrix(packaged: Packaged, rows: list[list]) -> dict:
    """One row-major 2-D tensor in signature order (BYTES: the protocol's type for mixed values)."""
    flat = [v for r in rows for v in r]
    shape = [len(rows), len(packaged.model.features)]
    return {"inputs": [{"name": "x", "shape": shape, "datatype": "BYTES", "data": flat}]}


def strip_id(doc: dict) -> dict:
    doc = dict(doc)
    doc.pop("id", None)
    if "meta" in doc:
        doc["meta"] = {k: v for k, v in doc["meta"].items() if k != "puid"}
    return doc
