"""The local runtime's router behind bearer tokens (in process): admin endpoints and the protected
paths under /seldon/... refuse at the door, in the path's protocol, and a refusal changes nothing;
probe paths pass through. `tests/integration/test_sync.py` runs a real runtime with tokens (the
header passed on to servers that require it too), `tests/integration/test_analyze.py` reads the
counters of one."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from modelops_serving import auth

from modelops.runtime import credentials
from modelops.runtime.desired import SyncError
from modelops.runtime.router import Router, create_app

GOOD, OTHER = "router-test-token-0123456789abcdef", "router-test-token-second-abcdef01"
V1 = "/seldon/modelops-production/credit-hgb/api/v1.0/predictions"
V2 = "/seldon/modelops-production/credit-hgb/v2/models/credit-hgb/infer"


@contextlib.asynccontextmanager
async def router_app(tokens: auth.TokenFile | None, synced: list[int]) -> AsyncIterator[httpx.AsyncClient]:
    """The router app with an empty table, its lifespan run; POST /_modelops/sync appends to `synced`."""

    async def sync_now() -> dict:
        synced.append(1)
        return {"outcome": "unchanged"}

    async def counters(since: float) -> dict:
        return {"interval_s": 1.0, "servers": {}}

    router = Router()
    app = create_app(
        router, lambda: {"env": "production"}, sync_now, contextlib.nullcontext, counters, tokens
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://r") as c,
    ):
        c.router = router  # type: ignore[attr-defined]
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_the_router_refuses_at_the_door_in_each_paths_protocol(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{GOOD}\n{OTHER}\n")
    synced: list[int] = []

    async def run() -> dict[str, int]:
        async with router_app(auth.TokenFile(path), synced) as c:
            # admin endpoints: every one needs the token
            for method, where in (("GET", "/_modelops/status"), ("POST", "/_modelops/sync")):
                r = await c.request(method, where)
                assert (r.status_code, r.headers["www-authenticate"]) == (401, 'Bearer realm="modelops"')
                assert r.json() == {"error": auth._MISSING.message}
            assert (await c.get("/_modelops/counters?since=0", headers=bearer("x" * 20))).status_code == 403
            assert (await c.get(f"/_modelops/counters?since=0&access_token={GOOD}")).status_code == 400
            assert synced == []  # the refused sync did nothing
            assert (await c.get("/_modelops/status", headers=bearer(GOOD))).json() == {"env": "production"}
            assert (await c.post("/_modelops/sync", headers=bearer(OTHER))).status_code == 200
            assert synced == [1]

            # predictions: refused before anything is routed, Seldon v1's status or V2's error
            r = await c.post(V1, json={})
            assert r.status_code == 401 and r.json()["status"]["reason"] == "UNAUTHORIZED"
            r = await c.post(V2, json={}, headers={"authorization": f"Basic {GOOD}"})
            assert r.status_code == 401 and r.json() == {"error": auth._MALFORMED.message}
            # through the door with a token: then the table answers (nothing is served here)
            r = await c.post(V1, json={}, headers=bearer(GOOD))
            assert r.status_code == 404 and "no SeldonDeployment 'credit-hgb'" in r.json()["error"]
            # probes and metrics under a deployment are not the router's to guard
            probe = await c.get("/seldon/modelops-production/credit-hgb/v2/health/ready")
            assert probe.status_code == 404 and "no SeldonDeployment" in probe.text
            return dict(c.router.refused)  # type: ignore[attr-defined]

    assert asyncio.run(run()) == {"missing": 3, "unknown": 1, "query": 1, "malformed": 1}


def test_without_a_tokens_file_the_router_answers_anyone() -> None:
    async def run() -> int:
        async with router_app(None, []) as c:
            return (await c.get("/_modelops/status")).status_code

    assert asyncio.run(run()) == 200


def test_clients_send_modelops_token_else_the_first_token_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# rotation: new first\n{OTHER}\n{GOOD}\n")
    assert credentials.headers() == {}
    assert credentials.headers(path) == bearer(OTHER)
    monkeypatch.setenv(credentials.TOKENS_FILE_ENV, str(path))
    assert credentials.headers() == bearer(OTHER)
    monkeypatch.setenv(credentials.TOKEN_ENV, GOOD)
    assert credentials.headers(path) == bearer(GOOD)
    monkeypatch.delenv(credentials.TOKEN_ENV)
    monkeypatch.setenv(credentials.TOKENS_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(SyncError, match=r"no bearer token to send: .*missing"):  # never "no token"
        credentials.headers()


def test_sync_refuses_a_tokens_file_it_cannot_use_before_starting_anything(tmp_path: Path) -> None:
    from modelops.runtime import sync

    empty = tmp_path / "tokens"
    empty.write_text("# no token yet\n")
    state = tmp_path / "state"
    with pytest.raises(
        SyncError, match=rf"not started: MODELOPS_AUTH_TOKENS_FILE={re.escape(str(empty))}: .*no token"
    ):
        sync.sync("production", tokens_file=empty, state_dir=state)
    assert not state.exists()  # no daemon, no record
