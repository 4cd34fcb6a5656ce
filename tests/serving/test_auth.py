"""Bearer tokens on the model server: each refusal tried, in each protocol's format; probes and
/metrics open; rotation through a file swapped as Kubernetes swaps a mounted Secret; a tokens file
that cannot be used stops the server from starting. In process (the real app and its lifespan),
but one real process for the refusal to start."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import httpx
import pytest
from modelops_serving import auth

from tests.serving.conftest import TOKENS, Packaged
from tests.serving.test_feedback import serve
from tests.serving.test_server import metric, v2_body, v2_path

V1 = "/api/v1.0/predictions"
OLD, NEW = TOKENS
THIRD = "a-third-token-for-the-rotation-0001"


class Secret:
    """A directory laid out as the kubelet lays out a mounted Secret: `tokens` -> `..data/tokens`,
    `..data` -> a versioned directory; an update writes a new version and swaps `..data` atomically."""

    def __init__(self, root: Path) -> None:
        self.root, self.version = root, 0
        root.mkdir()
        (root / "tokens").symlink_to("..data/tokens")

    @property
    def path(self) -> Path:
        return self.root / "tokens"

    def write(self, *lines: str) -> None:
        self.version += 1
        version = self.root / f"..v{self.version}"
        version.mkdir()
        (version / "tokens").write_text("".join(f"{line}\n" for line in lines))
        (self.root / "..data_tmp").symlink_to(version.name)
        os.replace(self.root / "..data_tmp", self.root / "..data")


def serve_with(packaged: Packaged, tmp_path: Path, tokens: Path):
    """test_feedback's in-process app (ready, lifespan run), requiring the tokens of `tokens`,
    whose file is looked at on every request."""
    return serve(packaged, tmp_path, auth_tokens_file=str(tokens), auth_reload_interval_s=0)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


ROUTES = [  # (method, path, v2?) of every protected route; {m} the model name, {v} its version
    ("POST", V1, False),
    ("POST", "/predict", False),
    ("GET", "/predict?json=%7B%7D", False),
    ("GET", "/metadata", False),
    ("POST", "/api/v1.0/feedback", False),
    ("POST", "/send-feedback", False),
    ("POST", "/v2/models/{m}/infer", True),
    ("POST", "/v2/models/{m}/versions/{v}/infer", True),
    ("GET", "/v2/models/{m}", True),
    ("POST", "/v2/models/{m}/feedback", True),
]


def test_each_refusal_in_its_protocols_format_and_probes_stay_open(
    packaged: Packaged, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = Secret(tmp_path / "secret")
    secret.write("# modelops-serving-tokens", OLD, "", NEW)
    caplog.set_level(logging.DEBUG)
    rows = packaged.rows[:2]
    v1, v2 = {"data": {"ndarray": rows}}, v2_body(packaged, rows)
    infer, meta = v2_path(packaged), f"/v2/models/{packaged.name}"

    async def run() -> str:
        async with serve_with(packaged, tmp_path, secret.path) as c:
            # every protected route refuses a request without a token, in its own protocol's format
            for method, route, is_v2 in ROUTES:
                path = route.format(m=packaged.name, v=packaged.version)
                r = await c.request(method, path, json=(v2 if is_v2 else v1) if method == "POST" else None)
                assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="modelops"'
                if is_v2:
                    assert r.json() == {"error": auth._MISSING.message}, path
                else:
                    status = r.json()["status"]
                    assert (status["code"], status["status"], status["reason"]) == (
                        401,
                        "FAILURE",
                        "UNAUTHORIZED",
                    )

            # malformed headers: 401 invalid_request; an unknown token: 403
            for header in (f"Basic {OLD}", "Bearer", "Bearer  ", f"Bearer {OLD} {NEW}", f"Token {OLD}", OLD):
                r = await c.post(V1, json=v1, headers={"authorization": header})
                assert r.status_code == 401 and 'error="invalid_request"' in r.headers["www-authenticate"]
            two = httpx.Headers([("authorization", f"Bearer {OLD}"), ("authorization", f"Bearer {NEW}")])
            assert (await c.post(V1, json=v1, headers=two)).status_code == 401  # one header too many
            for token in ("wrong-token-0123456789abcdef", OLD[:-1], OLD + "x", NEW.upper()):
                r = await c.post(infer, json=v2, headers=bearer(token))
                assert r.status_code == 403 and r.json() == {"error": auth._UNKNOWN.message}, token

            # a token in the query string is refused even beside a good header: under a usual name,
            # or under any name when the value is a configured token
            for query in (f"access_token={OLD}", "token=whatever", "API_KEY=x", f"json=%7B%7D&q={NEW}"):
                r = await c.post(f"{V1}?{query}", json=v1, headers=bearer(OLD))
                assert r.status_code == 400 and "query string is refused" in r.json()["status"]["info"]
                r = await c.get(f"{meta}?{query}", headers=bearer(OLD))
                assert r.status_code == 400 and "query string is refused" in r.json()["error"], query

            # with a token: answered (either token of the rotation; the scheme in any case)
            ok = await c.post(V1, json=v1, headers=bearer(OLD))
            assert ok.status_code == 200, ok.text
            assert (
                await c.post(infer, json=v2, headers={"authorization": f"bearer {NEW}"})
            ).status_code == 200
            assert (await c.get(meta, headers=bearer(NEW))).status_code == 200
            empty = {"json": '{"data":{"ndarray":[]}}'}
            assert (await c.get("/predict", params=empty, headers=bearer(OLD))).status_code == 400
            # any query bytes at all are looked at safely (schemathesis found a 500 here once)
            assert (await c.get("/predict?json=%E2%82%AC%FF", headers=bearer(OLD))).status_code == 400
            # a refused feedback changed nothing: the same feedback with a token is accepted
            puid = ok.json()["meta"]["puid"]
            fb = {"response": {"meta": {"puid": puid}}, "truth": {"data": {"ndarray": ["good", "bad"]}}}
            assert (await c.post("/api/v1.0/feedback", json=fb)).status_code == 401
            assert (await c.post("/api/v1.0/feedback", json=fb, headers=bearer(NEW))).status_code == 200

            # probes, readiness per model, /metrics and the docs answer without a token
            for path in ("/health/ping", "/health/status", "/v2/health/live", "/v2/health/ready", "/metrics"):
                assert (await c.get(path)).status_code == 200, path
            assert (await c.get(f"{meta}/ready")).status_code == 200
            assert (await c.get("/openapi.json")).status_code == 200
            return (await c.get("/metrics")).text

    text = asyncio.run(run())
    # refusals are counted by reason, and not as prediction traffic
    assert metric(text, "modelops_auth_refusals_total", reason="missing") == len(ROUTES) + 1
    assert metric(text, "modelops_auth_refusals_total", reason="malformed") == 7
    assert metric(text, "modelops_auth_refusals_total", reason="unknown") == 4
    assert metric(text, "modelops_auth_refusals_total", reason="query") == 8
    assert metric(text, "modelops_auth_tokens") == 2
    assert metric(text, "modelops_requests_total", endpoint="v1", status="200") == 1
    assert metric(text, "modelops_requests_total", endpoint="v1", status="400") == 2  # the two GET /predict
    assert metric(text, "modelops_requests_total", endpoint="v2", status="200") == 1
    # no token ever reaches the log; one seen in a query string is named by its position only
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]  # not the client's
    logged = "\n".join(r.getMessage() for r in server)
    assert OLD not in logged and NEW not in logged
    assert "token #2 (in file order)" in logged and "rotate it" in logged


def test_rotation_follows_the_mounted_secret(
    packaged: Packaged, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Add the new token, move clients, remove the old one: each step is seen by the next request."""
    secret = Secret(tmp_path / "secret")
    secret.write(OLD)
    body, infer = v2_body(packaged, packaged.rows[:1]), v2_path(packaged)

    async def run() -> None:
        async with serve_with(packaged, tmp_path, secret.path) as c:

            async def status(*tokens: str) -> tuple[int, ...]:
                return tuple(
                    [(await c.post(infer, json=body, headers=bearer(t))).status_code for t in tokens]
                )

            assert await status(OLD, NEW) == (200, 403)
            secret.write(OLD, NEW)  # the rotation starts: both accepted
            assert await status(OLD, NEW) == (200, 200)
            secret.write("# rotated", NEW)  # the old token removed: refused from the next request
            assert await status(OLD, NEW) == (403, 200)
            secret.write("# emptied by mistake")  # no token: none accepted (never open)
            assert await status(OLD, NEW) == (403, 403)
            assert metric((await c.get("/metrics")).text, "modelops_auth_tokens") == 0
            secret.write(NEW, THIRD)
            assert await status(NEW, THIRD) == (200, 200)
            # a file that cannot be read keeps its last tokens (a read error says nothing about them)
            os.replace(secret.root / "..data", secret.root / "..gone")
            assert await status(NEW, THIRD, OLD) == (200, 200, 403)
            assert metric((await c.get("/metrics")).text, "modelops_auth_tokens") == 2

    asyncio.run(run())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("has no token" in e and "every request is refused" in e for e in errors), errors
    assert any("cannot stat the tokens file" in e and "keeping its last tokens" in e for e in errors), errors


def test_every_configured_token_is_compared_without_early_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first token matches, yet all three are compared (and by digest: equal lengths)."""
    path = tmp_path / "tokens"
    path.write_text(f"{OLD}\n{NEW}\n{THIRD}\n")
    tokens = auth.TokenFile(path)
    compared: list[tuple[int, int]] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    assert auth.check([(b"authorization", f"Bearer {OLD}".encode())], b"", tokens) is None
    assert compared == [(32, 32)] * 3
    assert auth.check([(b"authorization", b"Bearer nope-nope-nope-nope")], b"", tokens).status == 403


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the tokens file: FileNotFoundError"),
        ("", "has no token"),
        ("# only a comment\n\n", "has no token"),
        ("dir", "cannot read the tokens file: IsADirectoryError"),
        (f"{OLD}\nnot a token with spaces\n", "line 2 is not a Bearer token"),
        (f"# c\n{OLD}\nshort\n", "line 3: a token of 5 characters is too short"),
        (b"\xff\xfe" + OLD.encode(), "UnicodeDecodeError"),
    ],
)
def test_a_tokens_file_that_cannot_be_used_is_refused_naming_file_and_line(
    tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "tokens"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(auth.AuthConfigError) as refused:
        auth.TokenFile(path)
    assert message in str(refused.value) and str(path) in str(refused.value)
    assert OLD not in str(refused.value)
    with pytest.raises(auth.AuthConfigError, match="is set but empty"):
        auth.read_tokens("")


def test_the_server_refuses_to_start_on_an_empty_tokens_file(launch, tmp_path: Path) -> None:
    """One real process: it logs why and exits; nothing ever listens (never serves open)."""
    empty = tmp_path / "empty-tokens"
    empty.write_text("# the Secret exists but holds no token\n")
    srv = launch(auth_tokens_file=str(empty))
    assert srv.proc.wait(60) == 2
    log = srv.log_text()
    assert f"REFUSED to start: MODELOPS_AUTH_TOKENS_FILE={empty}: the tokens file has no token" in log
    assert "Uvicorn running" not in log and "ready: serving" not in log
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{srv.url}/v2/health/live", timeout=2)
