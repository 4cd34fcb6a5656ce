"""Publish: content-addressed, verified, never overwritten, on a local directory and on fsspec stores."""

from __future__ import annotations

import os
import stat
import threading
import uuid
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from modelops_serving import storage
from modelops_serving.integrity import tree_hash

from modelops.delivery import publish
from modelops.delivery.publish import (
    ArtifactConflict,
    ModelNotPackaged,
    PublishError,
    StoreError,
    VerificationFailed,
)

MODEL = "credit-hgb"


class LossyMemoryFileSystem(MemoryFileSystem):
    """A memory store whose uploads flip one bit of MLmodel: a byte corrupted in transit."""

    protocol = "lossymem"

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix("lossymem://"))

    def put_file(self, lpath, rpath, callback=None, **kwargs):
        data = Path(lpath).read_bytes()
        if rpath.endswith("/MLmodel"):
            data = data[:-1] + bytes([data[-1] ^ 1])
        self.pipe_file(rpath, data)


fsspec.register_implementation("lossymem", LossyMemoryFileSystem, clobber=True)


def make_model(root: Path, weights: bytes = b"\x80\x04weights") -> Path:
    """A small directory shaped like a packaged MLflow model."""
    root.mkdir(parents=True)
    (root / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (root / "model.pkl").write_bytes(weights)
    (root / "sub").mkdir()
    (root / "sub" / "input_example.json").write_text('{"columns": []}\n')
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry under root with its mtime and size: any write shows up here."""
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model(tmp_path / "models" / MODEL / "model")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def memory_store() -> str:
    """A private root in fsspec's process-wide memory filesystem, removed afterwards."""
    root = f"memory://store-{uuid.uuid4().hex[:8]}"
    yield root
    fs, path = fsspec.core.url_to_fs(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)


# --- local directory store --------------------------------------------------------------------


def test_publish_copies_to_the_content_path_read_only(model_dir: Path, store: Path) -> None:
    digest = tree_hash(model_dir)
    published = publish.publish(model_dir, MODEL, str(store))
    dest = store / MODEL / digest
    assert published == publish.Published(MODEL, digest, dest.as_uri() + "/", reused=False)
    assert published.uri.startswith("file:///") and published.uri.endswith(f"/{MODEL}/{digest}/")
    assert tree_hash(dest) == digest
    assert sorted(p.name for p in (store / MODEL).iterdir()) == [digest]  # no temporary sibling left
    assert all(not p.stat().st_mode & stat.S_IWUSR for p in dest.rglob("*") if p.is_file())
    assert published.uri == publish.artifact_uri(MODEL, digest, str(store))


def test_publishing_the_same_content_again_writes_nothing(model_dir: Path, store: Path) -> None:
    first = publish.publish(model_dir, MODEL, str(store))
    before = snapshot(store)
    again = publish.publish(model_dir, MODEL, str(store))
    assert again.reused and again.uri == first.uri and again.content_hash == first.content_hash
    assert snapshot(store) == before


def test_other_content_gets_its_own_path(model_dir: Path, store: Path, tmp_path: Path) -> None:
    first = publish.publish(model_dir, MODEL, str(store))
    other = publish.publish(make_model(tmp_path / "other", b"other weights"), MODEL, str(store))
    assert other.content_hash != first.content_hash and not other.reused
    assert len(list((store / MODEL).iterdir())) == 2


def test_a_content_path_holding_other_bytes_is_refused_not_overwritten(model_dir: Path, store: Path) -> None:
    published = publish.publish(model_dir, MODEL, str(store))
    tampered = store / MODEL / published.content_hash / "model.pkl"
    tampered.chmod(0o644)
    tampered.write_bytes(b"tampered")
    actual = tree_hash(tampered.parent)
    with pytest.raises(ArtifactConflict) as caught:
        publish.publish(model_dir, MODEL, str(store))
    message = str(caught.value)
    assert str(tampered.parent) in message and published.content_hash in message and actual in message
    assert "not overwritten" in message
    assert tampered.read_bytes() == b"tampered"


def test_verify_passes_on_a_published_artifact_and_catches_a_flipped_byte(
    model_dir: Path, store: Path
) -> None:
    published = publish.publish(model_dir, MODEL, str(store))
    publish.verify(published.uri, published.content_hash)
    target = store / MODEL / published.content_hash / "sub" / "input_example.json"
    target.chmod(0o644)
    data = target.read_bytes()
    target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(VerificationFailed, match=f"expected {published.content_hash}"):
        publish.verify(published.uri, published.content_hash)


def test_verify_names_a_missing_artifact(store: Path) -> None:
    uri = (store / MODEL / ("0" * 64)).as_uri()
    with pytest.raises(StoreError, match="no such model directory"):
        publish.verify(uri, "0" * 64)


@pytest.mark.parametrize("case", ["missing", "empty", "no-mlmodel"])
def test_an_unpackaged_model_is_a_clear_error_and_nothing_is_written(
    case: str, tmp_path: Path, store: Path
) -> None:
    model_dir = tmp_path / "models" / MODEL / "model"
    if case != "missing":
        model_dir.mkdir(parents=True)
    if case == "no-mlmodel":
        (model_dir / "model.pkl").write_bytes(b"x")
    with pytest.raises(ModelNotPackaged, match=r"`dvc repro`.*`dvc pull`") as caught:
        publish.publish(model_dir, MODEL, str(store))
    assert str(model_dir) in str(caught.value)
    assert not store.exists()


def test_a_model_name_cannot_escape_the_store(model_dir: Path, store: Path) -> None:
    with pytest.raises(PublishError, match="must match"):
        publish.publish(model_dir, "../escape", str(store))
    assert not store.exists()


def test_concurrent_publishers_of_the_same_content_all_succeed_and_one_writes(
    model_dir: Path, store: Path
) -> None:
    results: list[publish.Published] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(publish.publish(model_dir, MODEL, str(store)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [r.reused for r in results].count(False) == 1
    assert len({r.uri for r in results}) == 1
    assert [p.name for p in (store / MODEL).iterdir()] == [results[0].content_hash]


def test_the_default_store_is_the_environment_or_a_directory_beside_the_repo(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    monkeypatch.delenv(publish.STORE_ENV, raising=False)
    assert publish.default_store() == str(tmp_path.resolve() / "modelops-artifacts")
    published = publish.publish(model_dir, MODEL)
    assert published.uri.startswith((tmp_path.resolve() / "modelops-artifacts" / MODEL).as_uri())
    monkeypatch.setenv(publish.STORE_ENV, "memory://from-env")
    assert publish.default_store() == "memory://from-env"


def test_relative_paths_and_file_uris_name_the_same_store(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = publish.publish(model_dir, MODEL, "artifacts")
    again = publish.publish(model_dir, MODEL, (tmp_path / "artifacts").as_uri())
    assert again.reused and again.uri == first.uri
    assert first.uri == (tmp_path.resolve() / "artifacts" / MODEL / first.content_hash).as_uri() + "/"


def test_the_server_loads_a_locally_published_uri_in_place(model_dir: Path, store: Path) -> None:
    published = publish.publish(model_dir, MODEL, str(store))
    served = storage.resolve(published.uri)
    assert served == store / MODEL / published.content_hash
    assert tree_hash(served) == published.content_hash


def test_a_store_path_that_cannot_be_written_is_a_store_error(model_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store should be\n")
    with pytest.raises(StoreError, match="cannot write"):
        publish.publish(model_dir, MODEL, str(blocker))


# --- fsspec stores ----------------------------------------------------------------------------


def test_memory_store_publish_reuse_and_marker(model_dir: Path, memory_store: str) -> None:
    digest = tree_hash(model_dir)
    published = publish.publish(model_dir, MODEL, memory_store)
    fs, root = fsspec.core.url_to_fs(memory_store)
    dest = f"{root}/{MODEL}/{digest}"
    assert published.uri == fs.unstrip_protocol(dest) + "/" and not published.reused
    assert published.uri == publish.artifact_uri(MODEL, digest, memory_store)
    assert sorted(fs.find(dest)) == [f"{dest}/MLmodel", f"{dest}/model.pkl", f"{dest}/sub/input_example.json"]
    assert fs.cat_file(dest + publish.MARKER_SUFFIX) == digest.encode()
    modified = {p: fs.modified(p) for p in fs.find(root)}
    again = publish.publish(model_dir, MODEL, memory_store)
    assert again.reused and again.uri == published.uri
    assert {p: fs.modified(p) for p in fs.find(root)} == modified


def test_memory_store_refuses_to_overwrite_other_content(model_dir: Path, memory_store: str) -> None:
    published = publish.publish(model_dir, MODEL, memory_store)
    fs, root = fsspec.core.url_to_fs(memory_store)
    fs.pipe_file(f"{root}/{MODEL}/{published.content_hash}/model.pkl", b"tampered")
    with pytest.raises(ArtifactConflict, match=published.content_hash):
        publish.publish(model_dir, MODEL, memory_store)
    assert fs.cat_file(f"{root}/{MODEL}/{published.content_hash}/model.pkl") == b"tampered"
    with pytest.raises(VerificationFailed):
        publish.verify(published.uri, published.content_hash)


def test_an_upload_corrupted_in_transit_is_not_published(model_dir: Path) -> None:
    store = f"lossymem://lossy-{uuid.uuid4().hex[:8]}"
    fs, root = fsspec.core.url_to_fs(store)
    try:
        with pytest.raises(VerificationFailed, match="upload not published"):
            publish.publish(model_dir, MODEL, store)
        assert fs.find(root) == []  # neither the bad files nor a completion marker remain
    finally:
        if fs.exists(root):
            fs.rm(root, recursive=True)


def test_an_unfinished_upload_of_the_same_content_is_completed(model_dir: Path, memory_store: str) -> None:
    """A prefix without its marker (a publisher died before writing it) is re-hashed, then marked."""
    digest = tree_hash(model_dir)
    fs, root = fsspec.core.url_to_fs(memory_store)
    dest = f"{root}/{MODEL}/{digest}"
    for path in model_dir.rglob("*"):
        if path.is_file():
            fs.pipe_file(f"{dest}/{path.relative_to(model_dir).as_posix()}", path.read_bytes())
    published = publish.publish(model_dir, MODEL, memory_store)
    assert published.reused
    assert fs.cat_file(dest + publish.MARKER_SUFFIX) == digest.encode()


def test_an_unfinished_partial_upload_is_refused_and_named(model_dir: Path, memory_store: str) -> None:
    digest = tree_hash(model_dir)
    fs, root = fsspec.core.url_to_fs(memory_store)
    fs.pipe_file(f"{root}/{MODEL}/{digest}/MLmodel", (model_dir / "MLmodel").read_bytes())
    with pytest.raises(ArtifactConflict, match="unfinished upload"):
        publish.publish(model_dir, MODEL, memory_store)


def test_the_server_fetches_a_remotely_published_uri(
    model_dir: Path, memory_store: str, tmp_path: Path
) -> None:
    published = publish.publish(model_dir, MODEL, memory_store)
    fetched = storage.resolve(published.uri, cache_dir=tmp_path / "cache")
    assert tree_hash(fetched) == published.content_hash


def test_an_unknown_scheme_is_a_store_error(model_dir: Path) -> None:
    with pytest.raises(StoreError, match="nosuchproto"):
        publish.publish(model_dir, MODEL, "nosuchproto://bucket/models")


def test_published_files_are_read_only_but_their_directories_stay_removable(
    model_dir: Path, store: Path
) -> None:
    """Garbage collection of unreferenced artifacts must stay possible without chmod."""
    published = publish.publish(model_dir, MODEL, str(store))
    dest = store / MODEL / published.content_hash
    assert os.access(dest, os.W_OK)
    (dest / "MLmodel").unlink()
    assert not (dest / "MLmodel").exists()
