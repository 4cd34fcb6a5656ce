"""Resolve a model URI to a local directory: local paths in place, anything fsspec knows copied."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

log = logging.getLogger(__name__)

# fsspec protocol -> the package that implements it, for the error message
_BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


class ModelLoadError(Exception):
    """The model cannot be served; the message names the URI or path and the problem."""


def is_local(uri: str) -> bool:
    """True for plain paths and file:// URIs (used in place, never copied)."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and uri[1:3] in (":\\", ":/"))  # C:\ paths


def local_path(uri: str) -> Path:
    """The filesystem path a local URI names."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(uri)


def resolve(uri: str, cache_dir: Path | None = None) -> Path:
    """A local directory holding the model that `uri` names (remote models are copied once)."""
    if is_local(uri):
        path = local_path(uri)
        if not path.is_dir():
            raise ModelLoadError(f"{uri}: no such model directory")
        return path
    return _fetch(uri, cache_dir or Path("/tmp/modelops-models"))


def _fetch(uri: str, cache_dir: Path) -> Path:
    import fsspec

    protocol = urlparse(uri).scheme
    try:
        fs, remote = fsspec.core.url_to_fs(uri)
    except ImportError as exc:
        package = _BACKENDS.get(protocol, f"the fsspec backend for {protocol}://")
        raise ModelLoadError(f"{uri}: cannot read {protocol}:// URIs ({exc}); install {package}") from None
    except ValueError as exc:  # an unknown protocol
        raise ModelLoadError(f"{uri}: {exc}") from None
    # Keyed by URI: a modelUri names immutable content, and the hash is verified after the copy anyway.
    dest = cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if dest.is_dir():
        log.info("model %s: using cached copy %s", uri, dest)
        return dest
    try:
        if not fs.isdir(remote):
            raise ModelLoadError(f"{uri}: no such model directory")
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        fs.get(remote.rstrip("/") + "/", str(tmp) + "/", recursive=True)
    except ModelLoadError:
        raise
    except Exception as exc:  # network, credentials, permissions: all mean "cannot load"
        raise ModelLoadError(f"{uri}: copying the model failed: {type(exc).__name__}: {exc}") from None
    tmp.replace(dest)
    log.info("model %s: copied to %s", uri, dest)
    return dest


def fetch_file(uri: str, cache_dir: Path | None = None) -> Path:
    """A local path holding the one file `uri` names: local files in place, remote ones copied
    afresh (a signature is small, and a cached copy could outlive a repaired store)."""
    if is_local(uri):
        path = local_path(uri)
        if not path.is_file():
            raise ModelLoadError(f"{uri}: no such file")
        return path
    import fsspec

    name = hashlib.sha256(uri.encode()).hexdigest()[:24] + ".file"
    dest = (cache_dir or Path("/tmp/modelops-models")) / name
    try:
        fs, remote = fsspec.core.url_to_fs(uri)
        if not fs.isfile(remote):
            raise ModelLoadError(f"{uri}: no such file")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(dest))
    except ModelLoadError:
        raise
    except Exception as exc:  # backends, network, credentials: all mean "cannot read it"
        raise ModelLoadError(f"{uri}: copying failed: {type(exc).__name__}: {exc}") from None
    return dest
