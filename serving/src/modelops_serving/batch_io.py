"""Batch scoring, reading: URLs and their templates, typed errors, streaming CSV and Parquet input in
Arrow chunks, the input's fingerprint, and which shard a row belongs to.

Inputs are local paths or any fsspec URL. A CSV is read in blocks of whole lines, each parsed by
Arrow with the declaration's types (numbers, text), or as text where a value is not a number (the
validator then judges each value, so a bad value becomes a verdict on its row instead of an error
that ends the file); a Parquet file one row group at a time, in row batches. Either way memory
holds one block or row group, whatever the file's size.
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
_MIN_BLOCK = 1 << 16  # bytes: the smallest CSV block read at once
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


@dataclass
class Source:
    """One input file, read in chunks of at most `chunk_rows` rows of the `columns` it needs."""

    url: str
    columns: tuple[str, ...]
    chunk_rows: int
    threads: int = 1
    numeric: tuple[str, ...] = ()  # columns declared numeric: a CSV parses them as numbers
    format: str = ""
    size: int = 0
    rows: int = 0  # data rows read so far
    malformed: list[Malformed] = field(default_factory=list)  # drained by the caller after each chunk
    _skipped_lines: list[int] = field(default_factory=list)
    _digest: Any = field(default_factory=hashlib.sha256)
    _bytes_read: int = 0
    _total_rows: int = 0
    _block_line: int = 0  # the file line of the current CSV block's first line

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
        return {"sha256": self._digest.hexdigest(), "bytes": self.size}

    @property
    def fraction_read(self) -> float:
        """How much of the input has been read, 0..1 (for progress)."""
        if self._total_rows:
            return self.rows / self._total_rows
        return self._bytes_read / self.size

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
    # Read in blocks that end at a line break, each parsed by Arrow on its own: exactly one block is
    # in memory (Arrow's own streaming reader reads ahead, and held ~0.4 GB of a 1.2 GB file), the
    # fingerprint hashes the bytes as they pass, and line numbers are counted, not guessed.

    def _header(self, fh: BinaryIO) -> tuple[list[str], int]:
        """The header's column names (checked), and a block size that holds about chunk_rows rows."""
        first = fh.readline()
        self._digest.update(first)
        self._bytes_read += len(first)
        try:
            text = first.decode("utf-8-sig").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise BadInput(
                f"{self.url}: the header is not UTF-8 text ({exc.reason}); save the CSV as UTF-8"
            ) from None
        if not text.strip():
            raise BadInput(f"{self.url}: the first line is empty; a CSV needs a header naming its columns")
        names = next(csv.reader([text]))
        if len(names) == 1:
            used = next((d for d in _OTHER_DELIMITERS if d in text), None)
            if used:
                raise BadInput(
                    f"{self.url}: the header is one column {text[:60]!r}: the file looks {used!r}-delimited; "
                    f"batch input must be comma-separated with columns {', '.join(self.columns)}"
                )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise BadInput(f"{self.url}: column(s) {dupes} appear more than once in the header")
        self._require(names)
        row_bytes = max(len(first), 16)  # a data row is about as long as the header, or longer
        return names, max(_MIN_BLOCK, min(row_bytes * self.chunk_rows, 1 << 28))

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
        line = self._block_line + int(row.number) - 1
        self._skipped_lines.append(line)
        self.malformed.append(Malformed(line, row.text, row.actual_columns, row.expected_columns))
        return "skip"

    def _csv(self) -> Iterator[Chunk]:
        try:
            fh = self.fs.open(self.path, "rb")
        except Exception as exc:
            raise storage_error(self.url, exc) from None
        with fh:
            names, block = self._header(fh)
            line, rest = 2, b""
            while data := fh.read(block):
                self._digest.update(data)
                self._bytes_read += len(data)
                data = rest + data
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                if cut:
                    yield from self._parse(memoryview(data)[:cut], names, line)
                    line += data.count(b"\n", 0, cut)
            if rest:  # the last line, without a line break
                yield from self._parse(memoryview(rest), names, line)

    def _parse(self, data: memoryview, names: list[str], line: int) -> Iterator[Chunk]:
        """One block of whole lines, the first of them line `line` of the file: numeric columns
        parsed as numbers; a block where one is not a number is parsed again as text, for the
        validator to name the value (with the declared types every block would cost a cast)."""
        self._block_line = line
        marks = len(self.malformed), len(self._skipped_lines)
        try:
            table = self._read_block(data, names, typed=True)
        except pa.ArrowInvalid as exc:
            if "conversion error" not in str(exc):
                raise
            del self.malformed[marks[0] :], self._skipped_lines[marks[1] :]  # reported again below
            table = self._read_block(data, names, typed=False)
        for batch in table.to_batches():
            yield from self._split(batch)

    def _read_block(self, data: memoryview, names: list[str], typed: bool) -> pa.Table:
        import pyarrow.csv as pcsv

        types = dict.fromkeys(self.columns, pa.string())
        if typed:
            types |= dict.fromkeys(self.numeric, pa.float64())
        return pcsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)),
            read_options=pcsv.ReadOptions(
                column_names=names, use_threads=self.threads > 1, block_size=len(data) + 1
            ),
            # Blank lines stay rows (of missing values): line numbers in messages stay exact.
            parse_options=pcsv.ParseOptions(invalid_row_handler=self._invalid_row, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(
                column_types=types, include_columns=list(self.columns), strings_can_be_null=True
            ),
        )

    # ---- Parquet ---------------------------------------------------------------------------------

    def _parquet(self) -> Iterator[Chunk]:
        import pyarrow.parquet as pq

        try:
            # A local file through Arrow's own file: through fsspec's, every read Arrow makes is a call
            # back into Python, which takes the GIL from the thread that predicts.
            fh = pa.OSFile(self.path) if is_local(self.url) else self.fs.open(self.path, "rb")
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
            # One row group at a time: over all of them at once, Arrow buffered the whole file.
            for group in range(pf.num_row_groups):
                for batch in pf.iter_batches(
                    batch_size=self.chunk_rows,
                    row_groups=[group],
                    columns=list(self.columns),
                    use_threads=self.threads > 1,
                ):
                    yield from self._split(batch)
        self._hash_file()

    def _hash_file(self) -> None:
        """The fingerprint of a Parquet file: its bytes, read once more after its row groups (the
        first chunk does not wait for it, and the reader thread hashes while the last are predicted)."""
        try:
            with self.fs.open(self.path, "rb") as fh:
                while block := fh.read(1 << 22):
                    self._digest.update(block)
        except Exception as exc:
            raise storage_error(self.url, exc) from None

    def _split(self, batch: pa.RecordBatch) -> Iterator[Chunk]:
        for start in range(0, batch.num_rows, self.chunk_rows):
            part, first = batch.slice(start, self.chunk_rows), self.rows
            self.rows += part.num_rows
            yield Chunk(part, first)


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
