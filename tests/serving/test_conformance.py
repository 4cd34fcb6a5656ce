"""Protocol conformance: Seldon's own OpenAPI spec (from the seldon-core package) and schemathesis."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import jsonschema
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

ROOT = Path(__file__).resolve().parents[2]
V1 = "/api/v1.0/predictions"


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


def test_responses_match_seldon_message_schema(server, packaged, seldon_spec) -> None:
    message = seldon_validator(seldon_spec, "SeldonMessage")
    rows = packaged.rows[:3]
    names = [f.name for f in packaged.model.features]
    flat = [v for r in rows for v in r]
    with server.client() as c:
        ok = [
            c.post(V1, json={"data": {"ndarray": rows}}),
            c.post(V1, json={"data": {"names": names, "tensor": {"shape": [3, 13], "values": flat}}}),
            c.post("/predict", json={"data": {"ndarray": rows}}),
            c.get("/predict", params={"json": orjson.dumps({"data": {"ndarray": rows}}).decode()}),
            c.get("/health/status"),
        ]
        bad = [
            c.post(V1, json={"data": {"ndarray": [rows[0][:3]]}}),
            c.post(V1, content=b"{", headers={"content-type": "application/json"}),
            c.get("/predict"),
        ]
    for r in ok:
        assert r.status_code == 200, r.text
        message.validate(r.json())
    tensor = ok[1].json()["data"]["tensor"]
    assert tensor["shape"] == [3, 2] and len(tensor["values"]) == 6
    for r in bad:
        assert r.status_code == 400, r.text
        body = r.json()
        message.validate(body)
        seldon_validator(seldon_spec, "Status").validate(body["status"])
        assert body["status"]["status"] == "FAILURE" and body["status"]["code"] == 400


def fuzz(schema: schemathesis.BaseSchema, base_url: str, examples: int) -> tuple[Counter, list[str]]:
    """Run every operation with generated valid and invalid cases; return (cases, 5xx failures)."""
    session = requests.Session()
    failures: list[str] = []
    count: Counter = Counter()
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
                response = case.call(base_url=base_url, session=session, timeout=10)
                count[response.status_code] += 1
                if response.status_code >= 500:
                    where = f"{case.method} {case.formatted_path}"
                    failures.append(f"{where} -> {response.status_code}: {response.text[:200]}")

            try:
                run()
            except Exception as exc:  # a strategy that cannot generate for this mode is not a server bug
                if "Unsatisfiable" not in type(exc).__name__ and "generat" not in str(exc).lower():
                    raise
    return count, failures


def test_schemathesis_own_openapi_no_5xx(server) -> None:
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
    } <= paths
    assert doc["paths"][V1]["post"]["requestBody"]["content"]["application/json"]["schema"]
    count, failures = fuzz(schemathesis.openapi.from_dict(doc), server.url, examples=60)
    assert failures == [], "\n".join(failures[:20])
    assert count.total() > 300 and count[200] > 0, count
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def test_schemathesis_seldon_spec_no_5xx(server, seldon_spec) -> None:
    spec = dict(seldon_spec)
    spec["paths"] = {"/predict": seldon_spec["paths"]["/predict"]}  # the model-server part of the spec
    count, failures = fuzz(schemathesis.openapi.from_dict(spec), server.url, examples=50)
    assert failures == [], "\n".join(failures[:20])
    assert count.total() > 100 and count[200] + count[400] > 0, count
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
