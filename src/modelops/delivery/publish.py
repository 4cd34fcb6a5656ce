"""Publish: copy a packaged model to the artifact store under its content hash, never overwriting.

An artifact lives at ``<store>/<model>/<sha256>/`` (its URI keeps the trailing slash), where sha256
is ``tree_hash`` of the model directory, the hash the server verifies before serving. Guarantees:

- The path names the content. If it already exists it is re-hashed: the same content is reused
  and nothing is written; other content is an error naming the path and both hashes (the store
  is corrupt or was tampered with), and it is left alone. Nothing is ever overwritten.
- A URI returned by ``publish`` names verified bytes: the uploaded copy is re-hashed (read back
  from the store, through the server's own fetch code for remote stores) before it is published.
- Local directory stores (the default): the copy goes to a hidden temporary sibling, is verified,
  made read-only and then renamed into place. The rename is atomic, so a reader sees either no
  artifact or the whole one, and of two concurrent publishers exactly one rename wins; the other
  finds the winner's (identical) copy and reuses it.
- Object stores (``s3://``, ``gs://``, anything fsspec knows) have no atomic rename: the files
  are uploaded to the final prefix, read back and verified, and only then is a completion marker
  ``<store>/<model>/<sha256>.published`` written beside (not inside) the hashed tree. A prefix
  without its marker is an unfinished upload: a later publish of the same content re-hashes it
  and completes it; different content there is refused like any other mismatch. An upload that
  fails verification is removed again. The server verifies the hash of whatever it fetches
  anyway, so even a reader that ignores the marker can never serve wrong bytes silently.
  Re-hashing a remote artifact (on upload, on reuse, in ``verify``) downloads it to a temporary
  directory: models here are megabytes, and a checksum the store computes would not be ours.
- Signatures (given a ``signing.Signer``): ``<store>/<model>/<sha256>.sig`` beside the tree, which
  itself does not change. Written once: a local one is created by a hard link that fails if the
  name exists (two signers racing: one link wins); an existing signature is never replaced, only
  checked to be this signer's valid signature of this content (else ``SignatureConflict``, and it
  stays). Object stores check for it, then upload: two signers racing there can both write, each a
  valid signature of the same bytes by the same signer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops_serving import storage
from modelops_serving.integrity import tree_hash

from modelops.config import MODEL_NAME
from modelops.errors import PublishError

if TYPE_CHECKING:
    from modelops.delivery.signing import Signer

STORE_ENV = "MODELOPS_ARTIFACT_STORE"
DEFAULT_STORE_DIR = "modelops-artifacts"  # beside the repository, so it never dirties the work tree
MARKER_SUFFIX = ".published"


class ModelNotPackaged(PublishError):
    """The packaged model directory is missing, empty or not an MLflow model."""


class StoreError(PublishError):
    """The artifact store cannot be reached, read or written (unknown scheme, credentials, network)."""


class ArtifactConflict(PublishError):
    """The content path exists with other content: published artifacts are immutable, so it stays."""


class VerificationFailed(PublishError):
    """A published (or just uploaded) artifact does not hash to what its path and manifest say."""


@dataclass(frozen=True)
class Published:
    """Where a model's content now lives, and whether it was already there."""

    model: str
    content_hash: str
    uri: str
    reused: bool
    signature: str | None = None  # the signature's URI, when this publish signed or found one
    signed: bool = False  # written by this publish (False: kept from before, or not signing)


def default_store(root: Path | None = None) -> str:
    """$MODELOPS_ARTIFACT_STORE if set, else ``modelops-artifacts/`` beside the repository, absolute."""
    if configured := os.environ.get(STORE_ENV):
        return configured
    return str((root or Path.cwd()).resolve().parent / DEFAULT_STORE_DIR)


def artifact_uri(model: str, content_hash: str, store: str | None = None) -> str:
    """The URI a model's content has (or will have) in the store, without touching the store."""
    _check_name(model)
    store = store or default_store()
    if storage.is_local(store):
        return _dir_uri(_local_root(store) / model / content_hash)
    fs, root = _remote(store)
    return fs.unstrip_protocol(f"{root.rstrip('/')}/{model}/{content_hash}") + "/"


def publish(model_dir: Path, model: str, store: str | None = None, signer: Signer | None = None) -> Published:
    """Copy a packaged model to ``<store>/<model>/<sha256>/``, verified; reuse it if already there.
    With a signer, its signature goes to ``<sha256>.sig`` beside it (an existing one is kept)."""
    _check_name(model)
    model_dir = Path(model_dir)
    digest = _packaged_hash(model_dir)
    store = store or default_store()
    if storage.is_local(store):
        done = _publish_local(model_dir, model, digest, _local_root(store))
    else:
        done = _publish_remote(model_dir, model, digest, store)
    if signer is None:
        return done
    if storage.is_local(store):
        where, signed = _sign_local(model_dir, _local_root(store) / model / f"{digest}.sig", signer)
    else:
        where, signed = _sign_remote(model_dir, done.uri, signer)
    return replace(done, signature=where, signed=signed)


def _sign_local(model_dir: Path, final: Path, signer: Signer) -> tuple[str, bool]:
    if final.exists():
        signer.accepts(model_dir, final, str(final))
        return final.as_uri(), False
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        signer.sign(model_dir, tmp)
        tmp.chmod(0o444)
        try:
            os.link(tmp, final)  # never replaces: fails if a signature appeared meanwhile
        except FileExistsError:
            signer.accepts(model_dir, final, str(final))
            return final.as_uri(), False
    except OSError as exc:
        raise StoreError(f"{final}: cannot write the signature: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return final.as_uri(), True


def _sign_remote(model_dir: Path, uri: str, signer: Signer) -> tuple[str, bool]:
    where = uri.rstrip("/") + ".sig"
    fs, path = _remote(where)
    with tempfile.TemporaryDirectory(prefix="modelops-sign-") as tmp:
        local = Path(tmp) / "model.sig"
        try:
            exists = fs.exists(path)
        except Exception as exc:  # credentials, network
            raise StoreError(
                f"{where}: cannot read the artifact store: {type(exc).__name__}: {exc}"
            ) from None
        if exists:
            _write(fs, where, lambda: fs.get_file(path, str(local)))
            signer.accepts(model_dir, local, where)
            return where, False
        signer.sign(model_dir, local)
        _write(fs, where, lambda: fs.put_file(str(local), path))
    return where, True


def verify(uri: str, expected_hash: str) -> None:
    """Re-hash a published artifact (remote ones are downloaded to a temporary directory first)."""
    actual = stored_hash(uri)
    if actual != expected_hash:
        raise VerificationFailed(
            f"{uri}: content hash is {actual}, expected {expected_hash}; the artifact is corrupt or "
            "incomplete and must not be served"
        )


def stored_hash(uri: str) -> str:
    """The content hash of what a URI holds, fetched the way the server fetches it."""
    with tempfile.TemporaryDirectory(prefix="modelops-verify-") as tmp:
        try:
            # The server's own fetch code: what is hashed here is exactly what a server would load.
            path = storage.resolve(uri, cache_dir=Path(tmp))
        except storage.ModelLoadError as exc:
            raise StoreError(f"cannot read {uri}: {exc}") from None
        return _hash_or_placeholder(path)


def _check_name(model: str) -> None:
    # The name becomes a path segment: no separators, no '..'.
    if not MODEL_NAME.match(model):
        raise PublishError(f"model name {model!r} must match {MODEL_NAME.pattern}")


def _packaged_hash(model_dir: Path) -> str:
    hint = "run `dvc repro` to build it, or `dvc pull` to fetch it, first"
    if not model_dir.is_dir():
        raise ModelNotPackaged(f"{model_dir}: no packaged model directory; {hint}")
    if not any(p.is_file() for p in model_dir.rglob("*")):
        raise ModelNotPackaged(f"{model_dir}: the packaged model directory is empty; {hint}")
    if not (model_dir / "MLmodel").is_file():
        raise ModelNotPackaged(
            f"{model_dir}: has no MLmodel file, so it is not a packaged MLflow model "
            f"(expected models/<name>/model); {hint}"
        )
    return tree_hash(model_dir)


def _hash_or_placeholder(path: Path) -> str:
    try:
        return tree_hash(path)
    except FileNotFoundError:
        return "(empty directory)"


def _dir_uri(path: Path) -> str:
    # The trailing slash makes the URI a directory: an object store's prefix listing (Seldon's
    # storage initializer) then cannot also match the sibling `<sha256>.published` marker.
    return path.as_uri() + "/"


def _local_root(store: str) -> Path:
    return storage.local_path(store).expanduser().resolve()


def _conflict(where: str, digest: str, actual: str, note: str = "") -> ArtifactConflict:
    return ArtifactConflict(
        f"{where}: already exists with content hash {actual}, but its path names {digest}{note}. "
        "Published artifacts are immutable, so it was not overwritten; find out how the store was "
        "corrupted before removing it"
    )


def _publish_local(model_dir: Path, model: str, digest: str, root: Path) -> Published:
    dest = root / model / digest
    if dest.exists():
        return _reuse_local(dest, model, digest)
    tmp = dest.with_name(f".{digest}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(model_dir, tmp)
        for path in tmp.rglob("*"):
            if path.is_file():
                path.chmod(0o444)  # a guard against editing in place, not a security boundary
        actual = _hash_or_placeholder(tmp)
        if actual != digest:
            raise VerificationFailed(
                f"{dest}: the copy hashes to {actual}, not {digest} (did {model_dir} change while it "
                "was being copied?); nothing was published"
            )
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.exists():
                raise
            # Another publisher renamed first: its copy is checked like any existing artifact.
            return _reuse_local(dest, model, digest)
    except OSError as exc:
        raise StoreError(f"{dest}: cannot write to the artifact store: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Published(model, digest, _dir_uri(dest), reused=False)


def _reuse_local(dest: Path, model: str, digest: str) -> Published:
    actual = _hash_or_placeholder(dest) if dest.is_dir() else "(not a directory)"
    if actual != digest:
        raise _conflict(str(dest), digest, actual)
    return Published(model, digest, _dir_uri(dest), reused=True)


def _remote(store: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(store)
    except ImportError as exc:
        raise StoreError(f"{store}: no fsspec backend installed for this scheme ({exc})") from None
    except ValueError as exc:  # an unknown protocol
        raise StoreError(f"{store}: {exc}") from None


def _publish_remote(model_dir: Path, model: str, digest: str, store: str) -> Published:
    fs, root = _remote(store)
    dest = f"{root.rstrip('/')}/{model}/{digest}"
    marker = dest + MARKER_SUFFIX
    uri = fs.unstrip_protocol(dest) + "/"
    try:
        exists, complete = fs.exists(dest), fs.exists(marker)
    except Exception as exc:  # credentials, network: the backends raise many types
        raise StoreError(f"{uri}: cannot read the artifact store: {type(exc).__name__}: {exc}") from None
    if exists or complete:
        _reuse_remote(uri, digest, complete)
        if not complete:
            _write(fs, uri, lambda: fs.pipe_file(marker, digest.encode()))
        return Published(model, digest, uri, reused=True)

    def upload() -> None:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                fs.put_file(str(path), f"{dest}/{path.relative_to(model_dir).as_posix()}")

    _write(fs, uri, upload)
    try:
        verify(uri, digest)
    except PublishError as exc:
        # Only our own upload is removed: the path did not exist before, and it has no marker.
        _write(fs, uri, lambda: fs.rm(dest, recursive=True))
        raise VerificationFailed(f"upload not published: {exc}") from None
    _write(fs, uri, lambda: fs.pipe_file(marker, digest.encode()))
    return Published(model, digest, uri, reused=False)


def _reuse_remote(uri: str, digest: str, complete: bool) -> None:
    note = "" if complete else f" (and no {MARKER_SUFFIX} marker: an unfinished upload)"
    try:
        actual = stored_hash(uri)
    except StoreError as exc:  # a marker whose files are gone, or an unreadable prefix
        raise _conflict(uri, digest, "(unreadable)", f"{note}: {exc}") from None
    if actual != digest:
        raise _conflict(uri, digest, actual, note)


def _write(fs: Any, uri: str, action: Any) -> None:
    try:
        action()
    except Exception as exc:  # credentials, network, permissions: the backends raise many types
        raise StoreError(f"{uri}: cannot write to the artifact store: {type(exc).__name__}: {exc}") from None
