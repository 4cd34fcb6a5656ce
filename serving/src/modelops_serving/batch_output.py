"""Batch scoring, writing: every file written beside its target and renamed over it when complete
(so a reader never sees half a file), the scores, the rejects file, the success manifest and the
Prometheus textfile metrics.

A local file is flushed, fsynced and renamed (`os.replace`, then the directory fsynced); on an
object store, which has no rename, the finished temporary object is moved (copied, then deleted),
and the store makes the target appear whole. The temporary name is `.<name>.partial` in the same
directory: hidden from the usual globs, and the next run of the same target overwrites it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from modelops_serving.batch_io import filesystem, storage_error
from modelops_serving.storage import is_local

MANIFEST_SUFFIX = ".success.json"


class AtomicFile:
    """A binary file under a temporary name beside `url`, renamed to `url` by commit()."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.path = filesystem(url)
        self.local = is_local(url)
        target = PurePosixPath(self.path)
        self.tmp = str(target.with_name(f".{target.name}.partial"))
        try:
            if self.local:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                self.fh: Any = open(self.tmp, "wb")  # noqa: SIM115 (closed by commit or abort)
            else:
                self.fs.makedirs(self.fs._parent(self.path), exist_ok=True)
                self.fh = self.fs.open(self.tmp, "wb")
        except Exception as exc:  # OSError, or a backend's own
            raise storage_error(url, exc) from None

    def commit(self) -> None:
        """Make the file durable and visible at its target, whole."""
        try:
            if self.local:
                self.fh.flush()
                os.fsync(self.fh.fileno())
                self.fh.close()
                os.replace(self.tmp, self.path)
                _fsync_dir(os.path.dirname(self.path) or ".")
            else:
                self.fh.close()
                self.fs.mv(self.tmp, self.path)
        except Exception as exc:
            self.abort()
            raise storage_error(self.url, exc) from None

    def abort(self) -> None:
        """Drop the temporary file (whatever state it is in); the target is untouched."""
        with contextlib.suppress(Exception):  # already failing: removing the temporary file matters
            self.fh.close()
        try:
            if self.local:
                os.unlink(self.tmp)
            else:
                self.fs.rm(self.tmp)
        except (FileNotFoundError, OSError):
            pass


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_whole(url: str, data: bytes) -> None:
    """Write small contents (the manifest, metrics) atomically."""
    out = AtomicFile(url)
    try:
        out.fh.write(data)
    except Exception as exc:
        out.abort()
        raise storage_error(url, exc) from None
    out.commit()


def remove(url: str) -> None:
    """Delete a file if it is there (a previous run's manifest, before this run replaces its output)."""
    fs, path = filesystem(url)
    try:
        if fs.exists(path):
            fs.rm(path)
    except Exception as exc:
        raise storage_error(url, exc) from None


class TableWriter:
    """Arrow record batches streamed into a CSV or Parquet file, atomically."""

    def __init__(self, url: str, fmt: str, schema: pa.Schema) -> None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        self.url, self.rows, self.schema = url, 0, schema
        self.file = AtomicFile(url)
        try:
            if fmt == "csv":
                self.writer: Any = pcsv.CSVWriter(self.file.fh, schema)
            else:
                self.writer = pq.ParquetWriter(self.file.fh, schema)
        except Exception:
            self.file.abort()
            raise

    def write(self, batch: pa.RecordBatch) -> None:
        try:
            self.writer.write(batch)
        except OSError as exc:
            raise storage_error(self.url, exc) from None
        self.rows += batch.num_rows

    def commit(self) -> None:
        try:
            self.writer.close()
        except OSError as exc:
            self.file.abort()
            raise storage_error(self.url, exc) from None
        self.file.commit()

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # already failing: the temporary file goes anyway
            self.writer.close()
        self.file.abort()


def scores_schema(id_name: str, id_type: pa.DataType, classes: tuple[str, ...]) -> pa.Schema:
    """The output's columns: the id, the prediction, p_<class> per class, model version and hash."""
    prediction = pa.string() if classes else pa.float64()
    probabilities = [(f"p_{c}", pa.float64()) for c in classes]
    return pa.schema(
        [
            (id_name, id_type),
            ("prediction", prediction),
            *probabilities,
            ("model_version", pa.string()),
            ("content_hash", pa.string()),
        ]
    )


def scores(
    schema: pa.Schema,
    ids: pa.Array,
    out: np.ndarray,
    task: str,
    classes: tuple[str, ...],
    version: str,
    digest: str,
) -> pa.RecordBatch:
    """One output batch from the model's outputs (probabilities (n, classes), or values (n, 1)).

    A binary label is the positive class when its probability is at least 0.5 (the threshold the
    project's metrics use); a multiclass label is the most probable class.
    """
    n = len(ids)
    if classes:
        picked = (out[:, 1] >= 0.5).astype(np.int8) if task == "binary" else out.argmax(axis=1)
        columns = [pa.array(classes, pa.string()).take(pa.array(picked))]
        columns += [pa.array(out[:, j]) for j in range(len(classes))]
    else:
        columns = [pa.array(out[:, 0])]
    columns = [ids.cast(schema.field(0).type), *columns]
    columns += [pa.repeat(pa.scalar(version, pa.string()), n), pa.repeat(pa.scalar(digest, pa.string()), n)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def rejects_schema(id_name: str) -> pa.Schema:
    """The rejects file: the input row (CSV line or Parquet row number), the id, where and why."""
    return pa.schema(
        [
            ("row", pa.int64()),
            (id_name, pa.string()),
            ("column", pa.string()),
            ("reason", pa.string()),
            ("value", pa.string()),
            ("message", pa.string()),
        ]
    )


def rejects_batch(
    schema: pa.Schema, rows: list[tuple[int, str | None, str, str, str | None, str]]
) -> pa.RecordBatch:
    """Rejected rows as a batch of the rejects schema."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    return pa.RecordBatch.from_arrays(
        [pa.array(list(values), f.type) for values, f in zip(columns, schema, strict=True)], schema=schema
    )


def default_rejects(output: str) -> str:
    """`<output stem>.rejects.csv` beside the output."""
    base, _, name = output.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{base}/{stem}.rejects.csv" if "/" in output else f"{stem}.rejects.csv"


def manifest_url(output: str) -> str:
    return output + MANIFEST_SUFFIX


def write_manifest(output: str, manifest: dict[str, Any]) -> None:
    """`<output>.success.json`, written last: a consumer that waits for it reads a complete output."""
    write_whole(manifest_url(output), (json.dumps(manifest, indent=2) + "\n").encode())


def metrics_text(labels: dict[str, str], rows: int, rejects: int, seconds: float, finished: float) -> bytes:
    """Prometheus text exposition of one successful run (node_exporter's textfile collector reads it)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    names = list(labels)
    for metric, help_text, value in (
        ("modelops_batch_rows", "Rows scored and written by the last successful batch run.", rows),
        ("modelops_batch_rejected_rows", "Input rows the last successful batch run rejected.", rejects),
        ("modelops_batch_duration_seconds", "Wall time of the last successful batch run.", seconds),
        (
            "modelops_batch_last_success_timestamp_seconds",
            "Unix time the last successful batch run finished.",
            finished,
        ),
    ):
        Gauge(metric, help_text, names, registry=registry).labels(**labels).set(value)
    return generate_latest(registry)
