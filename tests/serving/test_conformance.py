"""Protocol conformance: Seldon's own OpenAPI spec (from the seldon-core package) and schemathesis,
against the binary model and the multiclass and regression ones (fewer examples: same code paths).
Every server here requires bearer tokens: the runs send one, and refusals keep the protocols' formats."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import httpx
import jsonschema
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.serving.conftest import MULTICLASS, REGRESSION, SMALL, start_server

ROOT = Path(__file__).resolve().parents[2]
V1 = "/api/v1.0/predictions"
# Schemathesis examples per operation and mode: the binary model as before, the other tasks fewer.
EXAMPLES = {"binary": 60, REGRESSION: 15, MULTICLASS: 15}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, packaged):
    """conftest's binary-model server, with bearer tokens on (as the task servers are)."""
    srv = start_server(tmp_path_factory.mktemp("server"), packaged, auth=True, **SMALL)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(params=list(EXAMPLES))
def served(request: pytest.FixtureRequest) -> tuple[str, object, object]:
    """(task kind, a ready server, its packaged model) for the binary, regression and multiclass models."""
    if request.param == "binary":
        return "binary", request.getfixturevalue("server"), request.getfixturevalue("packaged")
    kind = request.param
    return kind, request.getfixturevalue("task_server")(kind), request.getfixturevalue("task_models")(kind)


@pytest.fixture(scope="module")
def seldon_spec() -> dict:
    """seldon_core/openapi/seldon.json from the competitors' environment (never imported here)."""
    found = sorted(
        (ROOT / "benchmarks/competitors/.venv/lib").glob(
            "python3*/site-packages/seldon_core/openapi/seldon.json"
        )
    )
    if not found:
        pytest.skip("seldon-core is not installed: run `uv sync --frozen --project benchmarks/competitors`")
    return json.loads(found[0].read_text())


def seldon_validator(spec: dict, name: str) -> jsonschema.protocols.Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return jsonschema.Draft7Validator(schema)


def test_responses_match_seldon_message_schema(served, seldon_spec) -> None:
    _, server, packaged = served
    message = seldon_validator(seldon_spec, "SeldonMessage")
    rows = packaged.rows[:3]
    names = [f.name for f in packaged.model.features]
    flat = [v for r in rows for v in r]
    with server.client() as c:
        ok = [
            c.post(V1, json={"data": {"ndarray": rows}}),
            c.post(V1, json={"data": {"names": names, "tensor": {"shape": [3, len(names)], "values": flat}}}),
            c.post(V1, json={"jsonData": {"instances": [dict(zip(names, r, strict=True)) for r in rows]}}),
            c.post("/predict", json={"data": {"ndarray": rows}}),
            c.get("/predict", params={"json": orjson.dumps({"data": {"ndarray": rows}}).decode()}),
            c.get("/health/status"),
        ]
        model = packaged.model
        truth = [model.classes[0] if model.is_classifier else 1.5] * 3
        puid = ok[0].json()["meta"]["puid"]
        feedback = {"response": {"meta": {"puid": puid}}, "truth": {"data": {"ndarray": truth}}}
        ok.append(c.post("/api/v1.0/feedback", json=feedback))
        bad = [
            c.post(V1, json={"data": {"ndarray": [rows[0][:3]]}}),
            c.post(V1, content=b"{", headers={"content-type": "application/json"}),
            c.get("/predict"),
            c.post(
                "/api/v1.0/feedback",
                json={"response": ok[1].json(), "truth": {"data": {"ndarray": [True] * 3}}},
            ),
        ]
        refused = [
            c.post(V1, json={"data": {"ndarray": rows}}, headers={"authorization": ""}),
            c.post(
                "/predict", json={"data": {"ndarray": rows}}, headers={"authorization": "Bearer two tokens"}
            ),
            c.post("/send-feedback", json=feedback, headers={"authorization": "Bearer " + "0" * 32}),
        ]
    assert [r.status_code for r in refused] == [401, 401, 403]
    for r in refused:
        message.validate(r.json())
        seldon_validator(seldon_spec, "Status").validate(r.json()["status"])
    for r in ok:
        assert r.status_code == 200, r.text
        message.validate(r.json())
    tensor = ok[1].json()["data"]["tensor"]
    k = len(packaged.model.outputs)
    assert tensor["shape"] == [3, k] and len(tensor["values"]) == 3 * k
    for r in bad:
        assert r.status_code == 400, r.text
        body = r.json()
        message.validate(body)
        seldon_validator(seldon_spec, "Status").validate(body["status"])
        assert body["status"]["status"] == "FAILURE" and body["status"]["code"] == 400


def fuzz(
    schema: schemathesis.BaseSchema, base_url: str, examples: int, headers: dict[str, str]
) -> tuple[Counter, list[str], set[str], Counter]:
    """Run every operation with generated valid and invalid cases, sending `headers` (the bearer
    token); return (cases by status, 5xx failures, the paths called, 401/403 answers by generation
    mode: a negative case may drop the Authorization header on purpose)."""
    session = requests.Session()
    failures: list[str] = []
    count: Counter = Counter()
    refused: Counter = Counter()
    called: set[str] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case) -> None:
                response = case.call(base_url=base_url, session=session, headers=headers, timeout=10)
                count[response.status_code] += 1
                if response.status_code in (401, 403):
                    refused[f"{mode.value} {response.status_code}"] += 1  # noqa: B023 (run now)
                called.add(case.operation.path)
                if response.status_code >= 500:
                    where = f"{case.method} {case.formatted_path}"
                    failures.append(f"{where} -> {response.status_code}: {response.text[:200]}")

            try:
                run()
            except Exception as exc:  # a strategy that cannot generate for this mode is not a server bug
                if "Unsatisfiable" not in type(exc).__name__ and "generat" not in str(exc).lower():
                    raise
    return count, failures, called, refused


def test_schemathesis_own_openapi_no_5xx(served) -> None:
    kind, server, _ = served
    doc = httpx.get(f"{server.url}/openapi.json").json()
    paths = set(doc["paths"])
    assert {
        V1,
        "/health/ping",
        "/health/status",
        "/metadata",
        "/metrics",
        "/v2/health/live",
        "/v2/health/ready",
    } <= paths
    assert {
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/feedback",
        "/api/v1.0/feedback",
        "/send-feedback",
    } <= paths
    for path in (V1, "/api/v1.0/feedback", "/v2/models/{model_name}/feedback"):
        assert doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # the bearer scheme, on exactly the operations that need it (probes and /metrics stay open)
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    secured = {p for p, ops in doc["paths"].items() for op in ops.values() if op.get("security")}
    opened = {"/health/ping", "/health/status", "/v2/health/live", "/v2/health/ready", "/metrics"}
    assert secured == paths - opened - {"/v2/models/{model_name}/ready"}
    assert doc["paths"][V1]["post"]["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SeldonError"
    }
    examples = EXAMPLES[kind]
    schema = schemathesis.openapi.from_dict(doc)
    count, failures, called, refused = fuzz(schema, server.url, examples=examples, headers=server.headers)
    assert failures == [], "\n".join(failures[:20])
    assert count.total() > 5 * examples and count[200] > 0, count
    # valid cases always carried the token; schemathesis' negative ones drop it on purpose: a 401
    assert set(refused) == {"negative 401"} and refused["negative 401"] == count[401], refused
    assert called == set(paths), set(paths) - called  # the feedback routes too
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def test_schemathesis_seldon_spec_no_5xx(served, seldon_spec) -> None:
    kind, server, _ = served
    spec = dict(seldon_spec)
    # the model-server part of the spec: predict, and feedback as Seldon's executor posts it
    spec["paths"] = {
        "/predict": seldon_spec["paths"]["/predict"],
        "/send-feedback": {"post": seldon_spec["paths"]["/send-feedback"]["post"]},
    }
    examples = 50 if kind == "binary" else EXAMPLES[kind]
    schema = schemathesis.openapi.from_dict(spec)
    count, failures, called, refused = fuzz(schema, server.url, examples=examples, headers=server.headers)
    assert failures == [], "\n".join(failures[:20])
    assert not refused, refused  # Seldon's spec declares no security: every case carried the token
    assert count.total() > 2 * examples and count[200] + count[400] > 0, count
    assert called == set(spec["paths"]), called
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def feature_values(kind: str) -> st.SearchStrategy:
    """Any JSON value a valid row may hold: any finite float (1e308 too) or null; any string or null."""
    if kind == "string":
        return st.one_of(
            st.none(), st.sampled_from(["A", "B", "C"]), st.text(st.characters(codec="utf-8"), max_size=8)
        )
    return st.one_of(
        st.none(), st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53)
    )


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("kind", [REGRESSION, MULTICLASS, "ridge"])
def test_valid_rows_with_any_values_are_answered_or_refused_never_5xx(
    task_server, task_models, kind: str
) -> None:
    """Schema-valid rows with arbitrary values, extremes included, through v1 and V2: a 200 with
    finite numbers of the right shape, or a 400 that says why (Ridge overflows on purpose)."""
    server, packaged = task_server(kind), task_models(kind)
    model = packaged.model
    rows = st.lists(
        st.tuples(*(feature_values(f.kind) for f in model.features)).map(list), min_size=1, max_size=5
    )
    statuses: Counter = Counter()
    session = requests.Session()
    session.headers.update(server.headers)

    @given(rows=rows, v2=st.booleans())
    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(rows: list[list], v2: bool) -> None:
        if v2:
            inputs = [
                {
                    "name": f.name,
                    "shape": [len(rows)],
                    "datatype": "BYTES" if f.kind == "string" else "FP64",
                    "data": [r[j] for r in rows],
                }
                for j, f in enumerate(model.features)
            ]
            r = session.post(
                f"{server.url}/v2/models/{packaged.name}/infer", json={"inputs": inputs}, timeout=10
            )
        else:
            r = session.post(
                f"{server.url}{V1}",
                data=orjson.dumps({"data": {"ndarray": rows}}),
                timeout=10,
                headers={"content-type": "application/json"},
            )
        statuses[r.status_code] += 1
        assert r.status_code in (200, 400), (r.status_code, r.text)
        body = r.json()
        if r.status_code == 400:
            assert body["error"] if v2 else body["status"]["info"], body
            return
        values = body["outputs"][0]["data"] if v2 else [v for row in body["data"]["ndarray"] for v in row]
        assert len(values) == len(rows) * len(model.outputs)
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), values

    run()
    assert statuses[200] > 10, statuses
