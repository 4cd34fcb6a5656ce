"""Batch scoring, one chunk's work on either side of the prediction: Reading (the reader thread)
takes the input's shard and checks every row; Writing (the writer thread) writes the rejects and the
scores and reports progress. batch_run predicts between them, in the main thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from modelops_serving.batch_io import BadInput, Chunk, Source, shard_mask
from modelops_serving.batch_output import (
    TableWriter,
    manifest_url,
    rejects_batch,
    rejects_schema,
    remove,
    scores,
    scores_schema,
)
from modelops_serving.batch_schema import Declaration, Verdict, check, needed_columns
from modelops_serving.model import ServedModel

if TYPE_CHECKING:
    from modelops_serving.batch_run import Plan, Progress

# A rejected row: (row or line, id, column, reason, value, message), as the rejects file has it.
Bad = tuple[int, str | None, str, str, str | None, str]


@dataclass
class Checked:
    """A chunk of the shard, checked: its good rows ready to predict, its bad ones, and where it is."""

    verdict: Verdict
    bad: list[Bad]  # in input order
    id_type: pa.DataType  # the input's id type: text from a CSV, typed from Parquet
    first: int  # the chunk's first row among the input's data rows
    positions: np.ndarray | None  # the shard's rows within the chunk (None: all of them)
    input_rows: int  # data rows read so far (for progress)
    fraction: float

    def row(self, k: int) -> int:
        """The input row (0-based among its data rows) of the k-th good row."""
        kept = self.verdict.kept
        i = k if kept is None else int(kept[k])
        return self.first + (i if self.positions is None else int(self.positions[i]))


class Reading:
    """The input's chunks of this shard, each checked against the declaration and the signature.

    The Source is opened by the iterating thread; its errors (a missing file, a missing column)
    reach the run with the first chunk."""

    def __init__(
        self, plan: Plan, model: ServedModel, decl: Declaration, chunk_rows: int, threads: int
    ) -> None:
        self.plan, self.model, self.decl = plan, model, decl
        self.chunk_rows, self.threads = chunk_rows, threads
        self.source: Source | None = None

    def __iter__(self) -> Iterator[Checked]:
        needed = needed_columns(self.decl, self.model)
        numeric = tuple(c.name for c in self.decl.columns if c.kind == "numeric" and c.name in needed)
        self.source = Source(self.plan.input, needed, self.chunk_rows, self.threads, numeric)
        for chunk in self.source:
            yield self.check(chunk, self.source)

    def check(self, chunk: Chunk, source: Source) -> Checked:
        """The chunk's rows of this shard, judged; with --on-bad fail the first bad one raises."""
        decl, plan = self.decl, self.plan
        batch, positions = chunk.batch, None
        mask = shard_mask(batch.column(decl.id), plan.index, plan.count)
        if mask is not None:
            positions = np.flatnonzero(mask)
            batch = batch.filter(pa.array(mask))

        def at(i: int) -> int:  # a row of `batch` as an index among the input's data rows
            return chunk.first + (int(positions[i]) if positions is not None else i)

        verdict = check(batch, decl, self.model)
        bad: list[Bad] = []
        for r in verdict.rejects:
            ident = batch.column(decl.id)[r.index].as_py()
            ident = None if ident is None else str(ident)
            bad.append((source.number(at(r.index)), ident, r.column, r.reason, r.value, r.message))
        # Lines Arrow could not split have no trustworthy id: with --on-bad reject shard 0 reports
        # them, once; with fail every shard fails (the file is broken, whichever rows it holds).
        if plan.rejects is None or plan.index == 0:
            bad += [
                (m.line, None, "", "malformed", m.text, f"{m.fields} fields; the header has {m.expected}")
                for m in source.malformed
            ]
        source.malformed.clear()
        bad.sort(key=lambda b: b[0])
        if bad and plan.rejects is None:
            number, ident, column, reason, value, message = bad[0]
            place = source.place(number) + ("" if ident is None else f" (id {ident!r})")
            place += f", column {column!r}" if column else f": {value[:80]!r}" if value else ""
            raise BadInput(
                f"{plan.input}: {place}: {message} "
                f"[reason {reason}; --on-bad reject writes such rows to a rejects file instead]"
            )
        id_type = chunk.batch.schema.field(decl.id).type
        return Checked(verdict, bad, id_type, chunk.first, positions, source.rows, source.fraction_read)

    def place(self, row: int) -> str:
        """`line N` of a CSV or `row N` of Parquet, for the input row at 0-based `row`."""
        assert self.source is not None  # a row was read
        return self.source.place(self.source.number(row))


class Writing:
    """Each predicted chunk's rejects and scores, written in input order; then its progress line."""

    def __init__(self, plan: Plan, model: ServedModel, decl: Declaration, progress: Progress) -> None:
        self.plan, self.model, self.decl, self.progress = plan, model, decl, progress
        self.writer: TableWriter | None = None
        self.rejecter: TableWriter | None = None
        self.rows = self.rejects = self.chunks = 0
        if plan.rejects is not None:
            self.rejecter = TableWriter(plan.rejects, plan.rejects_format, rejects_schema(decl.id))

    def __call__(self, item: tuple[Checked, np.ndarray | None]) -> None:
        checked, out = item
        model = self.model
        if self.writer is None:
            schema = scores_schema(self.decl.id, _plain(checked.id_type), model.classes)
            self.writer = TableWriter(self.plan.output, self.plan.output_format, schema)
        if checked.bad and self.rejecter is not None:
            self.rejecter.write(rejects_batch(self.rejecter.schema, checked.bad))
        self.rejects += len(checked.bad)
        if out is not None:
            ids = checked.verdict.ids
            digest = model.content_hash
            self.writer.write(
                scores(self.writer.schema, ids, out, model.task, model.classes, model.version, digest)
            )
            self.rows += len(ids)
        self.chunks += 1
        self.progress.chunk(self.chunks, self.rows, self.rejects, checked.input_rows, checked.fraction)

    def commit(self) -> None:
        """Publish: the last run's manifest goes first (it must not vouch for the new output), then
        the output and rejects by rename; run() writes the new manifest last."""
        if self.writer is None:  # unreachable: a source without rows raises BadInput
            raise BadInput(f"{self.plan.input}: no rows")
        remove(manifest_url(self.plan.output))
        self.writer.commit()
        if self.rejecter is not None:
            self.rejecter.commit()

    def abort(self) -> None:
        for w in (self.writer, self.rejecter):
            if w is not None:
                w.abort()

    @property
    def columns(self) -> list[str]:
        return self.writer.schema.names if self.writer else []


def _plain(kind: pa.DataType) -> pa.DataType:
    """The id's output type: a dictionary's values, large text as text."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.string() if pa.types.is_large_string(kind) else kind
