"""Batch scoring, reading: URLs and their templates, typed errors, streaming CSV and Parquet input in
Arrow chunks, the input's fingerprint, and which shard a row belongs to.

Inputs are local paths or any fsspec URL. A CSV is read by Arrow's streaming reader with every
needed column typed as text (the validator casts and judges each value, so a bad value becomes a
verdict on its row instead of an error that ends the stream); a Parquet file by row batches. Either
way only one chunk is in memory at a time.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from modelops_serving.storage import is_local, local_path

FORMATS = {".csv": "csv", ".parquet": "parquet"}
_HEADER_SAMPLE = 1 << 16  # bytes read to find the header and the typical row length
_OTHER_DELIMITERS = (";", "\t", "|")


class BatchError(Exception):
    """A batch run that cannot finish; the message names the file, row, column or variable."""

    exit_code = 1


class UsageError(BatchError):
    """The command line or the environment is wrong (a flag, a template, the shard index)."""

    exit_code = 2


class BadInput(BatchError):
    """The input file is not what the model's declaration says (or, with --on-bad fail, a row)."""

    exit_code = 3


class ModelRefused(BatchError):
    """The model cannot be used: its hash differs from the expected one, or it does not load."""

    exit_code = 4


class StorageError(BatchError):
    """A file or URL cannot be read or written (missing, permissions, network, backend)."""

    exit_code = 5


def expand(template: str, date: str, shard: str) -> str:
    """`{date}` and `{shard}` filled in (plain replacement: other braces are left alone)."""
    return template.replace("{date}", date).replace("{shard}", shard)


def file_format(url: str, flag: str) -> str:
    """csv or parquet, by the path's suffix."""
    suffix = PurePosixPath(url.split("?", 1)[0]).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{flag} {url}: unknown format {suffix or '(no suffix)'!r}; use .csv or .parquet")
    return FORMATS[suffix]


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path) for a local path, file:// or any URL fsspec knows."""
    import fsspec

    if is_local(url):
        return fsspec.filesystem("file"), str(local_path(url))
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:  # s3://, gs://, ... without their backend
        raise StorageError(f"{url}: cannot open this kind of URL: {exc}") from None
    except ValueError as exc:  # an unknown protocol
        raise StorageError(f"{url}: {exc}") from None


def storage_error(url: str, exc: BaseException) -> StorageError:
    """An OSError (or a backend's own error) as a StorageError naming the URL."""
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"{url}: not found")
    return StorageError(f"{url}: {type(exc).__name__}: {exc}")


@dataclass
class Chunk:
    """Rows of the input, with the 0-based index of the first one among all the file's data rows."""

    batch: pa.RecordBatch
    first: int


@dataclass
class Malformed:
    """A CSV line Arrow could not split into the header's columns."""

    line: int
    text: str
    fields: int
    expected: int


class _Hashing:
    """A read-only binary stream that hashes and counts what its reader consumed."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.digest, self.bytes, self.closed = raw, hashlib.sha256(), 0, False

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        self.bytes += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True
        self.raw.close()


@dataclass
class Source:
    """One input file, read in chunks of at most `chunk_rows` rows of the `columns` it needs."""

    url: str
    columns: tuple[str, ...]
    chunk_rows: int
    threads: int = 1
    format: str = ""
    size: int = 0
    rows: int = 0  # data rows read so far
    malformed: list[Malformed] = field(default_factory=list)  # drained by the caller after each chunk
    _skipped_lines: list[int] = field(default_factory=list)
    _sha256: str = ""
    _consumed: Any = None
    _total_rows: int = 0
    _row_bytes: float = 0.0

    def __post_init__(self) -> None:
        self.format = file_format(self.url, "--input")
        self.fs, self.path = filesystem(self.url)
        try:
            self.size = int(self.fs.size(self.path))
        except Exception as exc:  # OSError or a backend's own, all "cannot read"
            raise storage_error(self.url, exc) from None
        if self.size == 0:
            raise BadInput(f"{self.url}: the file is empty (0 bytes): no header, no rows")

    @property
    def fingerprint(self) -> dict[str, Any]:
        """The input's content: sha256 of its bytes (complete once every chunk was read) and size."""
        sha = self._sha256 or (self._consumed.digest.hexdigest() if self._consumed else "")
        return {"sha256": sha, "bytes": self.size}

    @property
    def fraction_read(self) -> float:
        """About how much of the input has been read, 0..1 (for progress: Arrow reads CSV ahead, so
        a CSV's share is its rows so far times the header sample's bytes per row)."""
        if self._total_rows:
            return self.rows / self._total_rows
        return min(1.0, self.rows * self._row_bytes / self.size)

    def place(self, number: int) -> str:
        """A row as an editor shows it: `line N` of a CSV (header = 1), `row N` of Parquet (1-based)."""
        return f"row {number}" if self.format == "parquet" else f"line {number}"

    def line(self, index: int) -> int:
        """The CSV line of the data row at 0-based `index`, counting the lines Arrow skipped."""
        line = index + 2
        skipped = np.asarray(self._skipped_lines)
        while (moved := index + 2 + int(np.count_nonzero(skipped <= line))) != line:
            line = moved
        return line

    def number(self, index: int) -> int:
        """What the rejects file's `row` column holds: the CSV line, or the 1-based Parquet row."""
        return index + 1 if self.format == "parquet" else self.line(index)

    def __iter__(self) -> Iterator[Chunk]:
        try:
            yield from self._parquet() if self.format == "parquet" else self._csv()
        except pa.ArrowInvalid as exc:
            raise BadInput(f"{self.url}: {str(exc).strip()}") from None
        except (OSError, pa.ArrowIOError) as exc:
            raise storage_error(self.url, exc) from None
        if self.rows == 0 and not self._skipped_lines:
            raise BadInput(f"{self.url}: no rows (a header and nothing else)")

    # ---- CSV -------------------------------------------------------------------------------------

    def _header(self) -> tuple[list[str], int]:
        """The header's column names and a block size that holds about chunk_rows rows."""
        try:
            with self.fs.open(self.path, "rb") as fh:
                sample = fh.read(_HEADER_SAMPLE)
        except Exception as exc:
            raise storage_error(self.url, exc) from None
        first, newline, rest = sample.partition(b"\n")
        try:
            text = first.decode("utf-8-sig").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise BadInput(
                f"{self.url}: the header is not UTF-8 text ({exc.reason}); save the CSV as UTF-8"
            ) from None
        if not text.strip():
            raise BadInput(f"{self.url}: the first line is empty; a CSV needs a header naming its columns")
        names = next(csv.reader([text]))
        expected = ", ".join(self.columns)
        if len(names) == 1:
            used = next((d for d in _OTHER_DELIMITERS if d in text), None)
            if used:
                raise BadInput(
                    f"{self.url}: the header is one column {text[:60]!r}: the file looks {used!r}-delimited; "
                    f"batch input must be comma-separated with columns {expected}"
                )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise BadInput(f"{self.url}: column(s) {dupes} appear more than once in the header")
        self._require(names)
        lines = rest.count(b"\n")
        self._row_bytes = len(rest) / lines if newline and lines else len(first) + 1
        # Arrow's blocks a little smaller than a chunk: a block of 1.02 chunks would be split in two.
        return names, max(1 << 16, min(int(self._row_bytes * self.chunk_rows * 0.98), 1 << 30))

    def _require(self, names: list[str]) -> None:
        missing = [c for c in self.columns if c not in names]
        if missing:
            which = "column" if len(missing) == 1 else "columns"
            found = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
            raise BadInput(
                f"{self.url}: missing {which} {', '.join(repr(c) for c in missing)}; the model needs "
                f"{', '.join(self.columns)} (found {found})"
            )

    def _invalid_row(self, row: Any) -> str:
        """Arrow's callback for a line with another number of fields: kept for the caller's verdict."""
        self._skipped_lines.append(int(row.number))
        self.malformed.append(Malformed(int(row.number), row.text, row.actual_columns, row.expected_columns))
        return "skip"

    def _csv(self) -> Iterator[Chunk]:
        import pyarrow.csv as pcsv

        _, block = self._header()
        read = pcsv.ReadOptions(use_threads=self.threads > 1, block_size=block)
        # Blank lines stay rows (of missing values): line numbers in messages stay exact.
        parse = pcsv.ParseOptions(invalid_row_handler=self._invalid_row, ignore_empty_lines=False)
        convert = pcsv.ConvertOptions(
            column_types=dict.fromkeys(self.columns, pa.string()),
            include_columns=list(self.columns),
            strings_can_be_null=True,
        )
        try:
            raw = self.fs.open(self.path, "rb")
        except Exception as exc:
            raise storage_error(self.url, exc) from None
        self._consumed = stream = _Hashing(raw)
        try:
            reader = pcsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
            for batch in reader:
                yield from self._split(batch)
            stream.digest.update(stream.raw.read())  # anything after Arrow's last block (none, normally)
        finally:
            stream.close()

    # ---- Parquet ---------------------------------------------------------------------------------

    def _parquet(self) -> Iterator[Chunk]:
        import pyarrow.parquet as pq

        self._sha256 = self._hash_file()
        try:
            fh = self.fs.open(self.path, "rb")
        except Exception as exc:
            raise storage_error(self.url, exc) from None
        with fh:
            try:
                pf = pq.ParquetFile(fh)
            except pa.ArrowInvalid as exc:
                raise BadInput(f"{self.url}: not a Parquet file ({exc})") from None
            self._require(pf.schema_arrow.names)
            if pf.metadata.num_rows == 0:
                raise BadInput(f"{self.url}: no rows (a schema and nothing else)")
            self._total_rows = pf.metadata.num_rows
            for batch in pf.iter_batches(
                batch_size=self.chunk_rows, columns=list(self.columns), use_threads=self.threads > 1
            ):
                yield from self._split(batch)

    def _hash_file(self) -> str:
        digest = hashlib.sha256()
        try:
            with self.fs.open(self.path, "rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
        except Exception as exc:
            raise storage_error(self.url, exc) from None
        return digest.hexdigest()

    def _split(self, batch: pa.RecordBatch) -> Iterator[Chunk]:
        for start in range(0, batch.num_rows, self.chunk_rows):
            part = batch.slice(start, self.chunk_rows)
            yield Chunk(part, self.rows)
            self.rows += part.num_rows


def shard_mask(ids: pa.Array, index: int, count: int) -> np.ndarray | None:
    """Which rows belong to shard `index` of `count` (None: all of them).

    The shard of a row is pandas.util.hash_array(its id as text, categorize=False) % count: a
    stable hash of the value (siphash with pandas' fixed key), so every worker, run or machine puts
    an id in the same shard, and an integer id read from Parquet lands where its text from a CSV
    does. Rows without an id are shard 0's, so the one reject they make is reported once.
    """
    if count == 1:
        return None
    import pandas as pd

    text = ids if pa.types.is_string(ids.type) else ids.cast(pa.string())
    missing = text.is_null().to_numpy(zero_copy_only=False)
    values = text.fill_null("").to_numpy(zero_copy_only=False)
    mask = (pd.util.hash_array(values, categorize=False) % np.uint64(count)) == np.uint64(index)
    if missing.any():
        mask[missing] = index == 0
    return mask
