"""Signed models: the server and the batch engine check the signature against the manifest's policy
after the hash and before anything is unpickled. Each refusal names its reason in one line, loads
nothing (a pickle that would leave a marker file leaves none) and the server never becomes ready."""

from __future__ import annotations

import asyncio
import logging
import pickle
import shutil
from pathlib import Path

import httpx
import pytest
from modelops_serving import signature
from modelops_serving.app import create_app
from modelops_serving.batch_run import ModelRefused, Options, run
from modelops_serving.integrity import tree_hash
from modelops_serving.model import ModelLoadError, load_model
from modelops_serving.settings import Settings
from modelops_serving.signature import Required, SignatureError

from modelops.delivery import publish
from modelops.delivery.signing import Signer, generate_key
from tests.serving.batch_inputs import rows, write
from tests.serving.conftest import Packaged


class Marker:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Two key pairs (private, public): the env's signer and a stranger."""
    root = tmp_path_factory.mktemp("keys")
    return {name: generate_key(root / name) for name in ("signer", "stranger")}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, packaged: Packaged, keys) -> publish.Published:
    """The packaged model published to a store and signed there by the signer's key."""
    store = tmp_path_factory.mktemp("store")
    done = publish.publish(packaged.path, packaged.name, str(store), Signer(keys["signer"][0]))
    assert done.signed and done.signature == done.uri.rstrip("/") + ".sig"
    return done


def demand(public: Path, model_uri: str) -> Required:
    """The manifest's key policy, the signature beside `model_uri`."""
    return Required(
        signature.key_policy(public.read_bytes(), str(public)), signature.signature_uri(model_uri)
    )


def planted(tmp_path: Path, packaged: Packaged, signature_of: Path | None = None) -> tuple[Path, str, Path]:
    """An attacker's model in a store: the packaged one with a pickle that touches a marker when
    loaded, and its own tree hash (the manifest's hash edited to match). With `signature_of`, the
    genuine model's signature is copied beside it. (model dir, its hash, the marker)."""
    marker = tmp_path / "unpickled"
    scratch = Path(shutil.copytree(packaged.path, tmp_path / "scratch"))
    (scratch / "model.pkl").write_bytes(pickle.dumps(Marker(marker)))
    digest = tree_hash(scratch)
    model = tmp_path / "store" / packaged.name / digest
    model.parent.mkdir(parents=True)
    scratch.rename(model)
    if signature_of is not None:
        shutil.copy(signature_of, model.parent / f"{digest}.sig")
    return model, digest, marker


def load(model: Path, digest: str, packaged: Packaged, signer: Required | None):
    return load_model(str(model), expected_hash=digest, name=packaged.name, version="v", signer=signer)


def test_a_signed_model_loads_and_a_misconfigured_policy_is_named(
    published: publish.Published, packaged: Packaged, keys
) -> None:
    loaded = load(Path(publish.storage.local_path(published.uri)), published.content_hash, packaged,
                  demand(keys["signer"][1], published.uri))  # fmt: skip
    assert loaded.content_hash == packaged.content_hash
    for args, message in [
        ((None, "https://example.invalid/wf", None), "IDENTITY is set without MODELOPS_SIGNER_ISSUER"),
        ((keys["signer"][1], "id", "issuer"), "both set"),
        ((keys["signer"][1].with_name("absent.pub"), None, None), "absent.pub: No such file"),
        ((keys["signer"][0], None, None), "not a PEM public key"),
    ]:
        with pytest.raises(SignatureError, match=message):
            signature.policy(*args)
    assert signature.policy(None, " ", "") is None  # nothing set: nothing required


def test_valid_hash_but_unsigned_is_refused_before_unpickling(
    tmp_path: Path, packaged: Packaged, keys
) -> None:
    model, digest, marker = planted(tmp_path, packaged)
    with pytest.raises(SignatureError) as refused:
        load(model, digest, packaged, demand(keys["signer"][1], str(model)))
    assert f"model {model} REFUSED: unsigned" in str(refused.value)
    assert f"{model}.sig: no such file" in str(refused.value) and "private key of" in str(refused.value)
    assert not marker.exists()
    # the same directory without a policy is trusted by its hash alone: the marker does work
    with pytest.raises(ModelLoadError):
        load(model, digest, packaged, None)
    assert marker.exists()


def test_a_tampered_model_is_refused_by_hash_and_by_signature(
    tmp_path: Path, packaged: Packaged, published: publish.Published, keys
) -> None:
    genuine = Path(publish.storage.local_path(published.signature))
    model, digest, marker = planted(tmp_path, packaged, signature_of=genuine)
    policy = demand(keys["signer"][1], str(model))
    with pytest.raises(ModelLoadError, match="content hash mismatch"):  # the manifest's hash kept
        load(model, packaged.content_hash, packaged, policy)
    with pytest.raises(SignatureError) as refused:  # the manifest's hash edited to match
        load(model, digest, packaged, policy)
    assert "REFUSED: bad signature" in str(refused.value)
    assert "the model's files differ from the signed ones (changed: model.pkl)" in str(refused.value)
    assert not marker.exists()


def test_signed_by_another_key_is_refused(tmp_path: Path, packaged: Packaged, keys) -> None:
    model, digest, marker = planted(tmp_path, packaged)
    Signer(keys["stranger"][0]).sign(model, model.parent / f"{digest}.sig")
    with pytest.raises(SignatureError) as refused:
        load(model, digest, packaged, demand(keys["signer"][1], str(model)))
    assert "REFUSED: bad signature" in str(refused.value) and "signed with another key" in str(refused.value)
    assert not marker.exists()


def serve(settings: Settings) -> tuple[int, dict]:
    """Start the real app in this process, let its model load finish, answer one readiness probe."""

    async def probe() -> tuple[int, dict]:
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://in-process") as client,
        ):
            for _ in range(3000):
                answer = await client.get("/v2/health/ready")
                if answer.status_code == 200 or "loading" not in answer.json().get("error", "loading"):
                    return answer.status_code, answer.json()
                await asyncio.sleep(0.01)
            raise AssertionError(f"the model neither loaded nor failed: {answer.json()}")

    return asyncio.run(probe())


def test_the_server_serves_a_signed_model_and_never_readies_an_unsigned_one(
    tmp_path: Path, packaged: Packaged, published: publish.Published, keys, caplog
) -> None:
    # As in the cluster: the storage initializer copied the model to its own directory; the
    # signature is read from the store by model name and hash.
    mounted = Path(shutil.copytree(packaged.path, tmp_path / "mnt-models"))
    store = Path(publish.storage.local_path(published.uri)).parents[1]
    base = {
        "model_uri": str(mounted),
        "model_name": packaged.name,
        "model_version": packaged.version,
        "expected_hash": packaged.content_hash,
        "signer_public_key": keys["signer"][1],
        "inference_log_sample_rate": 0,
    }
    status, _ = serve(Settings(**base, signature_store=str(store)))
    assert status == 200

    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="modelops_serving"):
        status, body = serve(Settings(**base, signature_store=str(tmp_path / "empty-store")))
    assert status == 503 and "REFUSED: unsigned" in body["error"]
    refusals = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(refusals) == 1 and "NOT ready" in refusals[0] and "REFUSED: unsigned" in refusals[0]
    assert f"{tmp_path / 'empty-store'}/{packaged.name}/{packaged.content_hash}.sig" in refusals[0]


def test_the_batch_engine_refuses_and_writes_nothing(tmp_path: Path, packaged: Packaged, keys) -> None:
    model, digest, marker = planted(tmp_path, packaged)
    Signer(keys["stranger"][0]).sign(model, model.parent / f"{digest}.sig")
    source = write(rows(20), tmp_path / "in.csv")
    settings = Settings(
        model_uri=str(model),
        expected_hash=digest,
        model_name=packaged.name,
        model_version="v",
        signer_public_key=keys["signer"][1],
        cache_dir=tmp_path / "cache",
    )
    with pytest.raises(ModelRefused, match="signed with another key") as refused:
        run(Options(str(source), str(tmp_path / "out.csv")), settings)
    assert refused.value.exit_code == 4
    assert not marker.exists() and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("digest", [b"plain", b"quote'd", b'dq"uote', b"both'\""])
def test_a_manifest_diff_is_named_by_file_whatever_quotes_its_digests_hold(digest: bytes) -> None:
    # model-signing raises ValueError(f"Signature mismatch: {diffs}"): the repr of a list whose quoting
    # follows the raw digest bytes (a digest with both quote kinds escapes the file name's quotes)
    diffs = [
        "Extra files found in model 'm': a.txt, b.txt",
        "Missing files in model 'm': gone.json",
        f"Hash mismatch for 'model.pkl': Expected '{digest!r}', Actual '{digest[::-1]!r}'",
    ]
    assert signature._mismatch(f"Signature mismatch: {diffs}") == (
        "changed: model.pkl; not signed: a.txt, b.txt; missing: gone.json"
    )
    assert signature._mismatch("Signature mismatch: not a list") == "Signature mismatch: not a list"
