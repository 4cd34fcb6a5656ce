"""Batch scoring, one run: resolve the files, load the model (hash first), then for each chunk of
the input shard, check, predict and write; commit the outputs, then the success manifest, then the
metrics. Nothing is visible at the output path until the whole output is.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import numpy as np
import pyarrow as pa

from modelops_serving import signature
from modelops_serving.batch_io import (
    BadInput,
    Chunk,
    ModelRefused,
    Source,
    UsageError,
    expand,
    file_format,
    shard_mask,
)
from modelops_serving.batch_output import (
    TableWriter,
    default_rejects,
    manifest_url,
    metrics_text,
    rejects_batch,
    rejects_schema,
    remove,
    scores,
    scores_schema,
    write_manifest,
    write_whole,
)
from modelops_serving.batch_schema import Declaration, check, needed_columns, read_declaration
from modelops_serving.model import ModelLoadError, ServedModel, load_model, pin_threads
from modelops_serving.settings import Settings

# Big enough that per-chunk Python work is noise next to the model's; small enough that a chunk's
# text, features and outputs stay a few tens of MB (memory does not grow with the input).
DEFAULT_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class Options:
    """One run's command line."""

    input: str
    output: str
    shard: int = 0
    shards: int = 1
    on_bad: str = "fail"
    rejects: str | None = None
    metrics_file: str | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS


class Progress:
    """A progress line on a terminal; otherwise one JSON line per chunk (both on stderr)."""

    def __init__(self, stream: TextIO = sys.stderr, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.started = time.perf_counter()

    def chunk(self, number: int, rows: int, rejects: int, input_rows: int, fraction: float) -> None:
        seconds = time.perf_counter() - self.started
        rate = rows / seconds if seconds > 0 else 0.0
        if self.tty:
            self.stream.write(
                f"\r{rows:,} rows scored, {rejects:,} rejected, {rate:,.0f} rows/s, {fraction:.0%} read  "
            )
        else:
            event = {
                "event": "chunk",
                "chunk": number,
                "input_rows": input_rows,
                "rows": rows,
                "rejects": rejects,
                "seconds": round(seconds, 3),
                "rows_per_s": round(rate, 1),
                "fraction_read": round(fraction, 4),
            }
            self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()

    def done(self, manifest: dict[str, Any]) -> None:
        if self.tty:
            rejects = (
                f", {manifest['rejects']:,} rejected into {manifest['rejects_file']}"
                if manifest["rejects_file"]
                else ""
            )
            done = f"{manifest['rows']:,} rows scored in {manifest['seconds']:.1f} s"
            self.stream.write(f"\r{done} -> {manifest['output']}{rejects}\n")
        else:
            self.stream.write(json.dumps({"event": "done", **manifest}) + "\n")
        self.stream.flush()


def load(settings: Settings) -> tuple[ServedModel, Declaration]:
    """The model as the server loads it (hash first), and its declaration."""
    try:
        model = load_model(
            settings.model_uri,
            expected_hash=settings.expected_hash,
            name=settings.model_name,
            version=settings.model_version,
            cache_dir=settings.cache_dir,
            signer=signature.required(settings),
        )
        return model, read_declaration(model, settings.model_uri)
    except ModelLoadError as exc:
        raise ModelRefused(str(exc)) from None


@dataclass(frozen=True)
class Plan:
    """A run's files, templates filled in: {date} is the run's UTC date, {shard} its zero-padded index."""

    input: str
    output: str
    output_format: str
    rejects: str | None  # only with --on-bad reject
    rejects_format: str
    metrics: str | None
    date: str
    index: int
    count: int


def plan(options: Options, now: datetime) -> Plan:
    """Check the options and resolve every URL (UsageError naming the flag if one is wrong)."""
    index, count = options.shard, options.shards
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"shard {index} of {count}: the index must be 0..{count - 1}")
    if options.on_bad not in ("fail", "reject"):
        raise UsageError(f"--on-bad {options.on_bad}: choose fail or reject")
    if options.chunk_rows < 1:
        raise UsageError(f"--chunk-rows {options.chunk_rows}: must be at least 1")
    for flag, url in (("--output", options.output), ("--rejects", options.rejects)):
        if count > 1 and url is not None and "{shard}" not in url:
            raise UsageError(
                f"{flag} {url}: with {count} shards it must contain {{shard}}, or shards overwrite each other"
            )
    date, shard = now.strftime("%Y-%m-%d"), str(index).zfill(len(str(count - 1)))
    output = expand(options.output, date, shard)
    rejects = None
    if options.on_bad == "reject":
        rejects = expand(options.rejects, date, shard) if options.rejects else default_rejects(output)
    metrics = expand(options.metrics_file, date, shard) if options.metrics_file else None
    return Plan(
        expand(options.input, date, shard),
        output,
        file_format(output, "--output"),
        rejects,
        file_format(rejects, "--rejects") if rejects else "",
        metrics,
        date,
        index,
        count,
    )


class _Scoring:
    """The per-chunk work of one run: shard, check, reject or fail, predict, write."""

    def __init__(self, plan: Plan, model: ServedModel, decl: Declaration, source: Source) -> None:
        self.plan, self.model, self.decl, self.source = plan, model, decl, source
        self.writer: TableWriter | None = None
        self.rejecter: TableWriter | None = None
        self.rows = self.rejects = self.chunks = 0
        if plan.rejects is not None:
            self.rejecter = TableWriter(plan.rejects, plan.rejects_format, rejects_schema(decl.id))

    def chunk(self, chunk: Chunk) -> None:
        decl, model, source = self.decl, self.model, self.source
        if self.writer is None:  # the id's type is the input's: text from a CSV, typed from Parquet
            id_type = _plain(chunk.batch.schema.field(decl.id).type)
            self.writer = TableWriter(
                self.plan.output, self.plan.output_format, scores_schema(decl.id, id_type, model.classes)
            )
        batch, positions = chunk.batch, None
        mask = shard_mask(batch.column(decl.id), self.plan.index, self.plan.count)
        if mask is not None:
            positions = np.flatnonzero(mask)
            batch = batch.filter(pa.array(mask))

        def at(i: int) -> int:  # a row of `batch` as an index among the input's data rows
            return chunk.first + (int(positions[i]) if positions is not None else i)

        verdict = check(batch, decl, model)
        bad = []
        for r in verdict.rejects:
            ident = batch.column(decl.id)[r.index].as_py()
            ident = None if ident is None else str(ident)
            bad.append((source.number(at(r.index)), ident, r.column, r.reason, r.value, r.message))
        # Lines Arrow could not split have no trustworthy id: with --on-bad reject shard 0 reports
        # them, once; with fail every shard fails (the file is broken, whichever rows it holds).
        if self.rejecter is None or self.plan.index == 0:
            bad += [
                (m.line, None, "", "malformed", m.text, f"{m.fields} fields; the header has {m.expected}")
                for m in source.malformed
            ]
        source.malformed.clear()
        bad.sort(key=lambda b: b[0])
        if bad and self.rejecter is None:
            number, ident, column, reason, value, message = bad[0]
            place = source.place(number) + ("" if ident is None else f" (id {ident!r})")
            place += f", column {column!r}" if column else f": {value[:80]!r}" if value else ""
            raise BadInput(
                f"{self.plan.input}: {place}: {message} "
                f"[reason {reason}; --on-bad reject writes such rows to a rejects file instead]"
            )
        if bad and self.rejecter is not None:
            self.rejecter.write(rejects_batch(self.rejecter.schema, bad))
        self.rejects += len(bad)
        if len(verdict.ids):
            out = model.predict(verdict.rows)
            finite = np.isfinite(out).all(axis=1)
            if not finite.all():  # declared ranges keep outputs finite; a model that still overflows stops
                k = int(np.argmin(finite))
                row = at(k if verdict.kept is None else int(verdict.kept[k]))
                answer = out[k].tolist()
                raise BadInput(
                    f"{self.plan.input}: {source.place(source.number(row))}: the model's output {answer} "
                    "is not finite"
                )
            self.writer.write(
                scores(
                    self.writer.schema,
                    verdict.ids,
                    out,
                    model.task,
                    model.classes,
                    model.version,
                    model.content_hash,
                )
            )
            self.rows += len(verdict.ids)
        self.chunks += 1

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


def run(
    options: Options, settings: Settings | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Score options.input into options.output; return the success manifest (BatchError if not)."""
    settings = settings or Settings()
    started, clock = datetime.now(UTC), time.perf_counter()
    where = plan(options, started)
    progress = progress or Progress()
    pa.set_cpu_count(settings.threads)
    model, decl = load(settings)
    loaded = time.perf_counter() - clock
    # After loading: threadpoolctl limits only the pools already loaded, and scikit-learn's OpenMP
    # is loaded with the model (unlimited, it spin-waits for busy cores: measured 5x slower).
    with pin_threads(settings.threads):
        needed = needed_columns(decl, model)
        numeric = tuple(c.name for c in decl.columns if c.kind == "numeric" and c.name in needed)
        source = Source(where.input, needed, options.chunk_rows, settings.threads, numeric)
        scoring = _Scoring(where, model, decl, source)
        try:
            for chunk in source:
                scoring.chunk(chunk)
                progress.chunk(
                    scoring.chunks, scoring.rows, scoring.rejects, source.rows, source.fraction_read
                )
            scoring.commit()
        except BaseException:
            scoring.abort()
            raise
    finished = datetime.now(UTC)
    seconds = time.perf_counter() - clock
    manifest = {
        "output": where.output,
        "format": where.output_format,
        "columns": scoring.writer.schema.names if scoring.writer else [],
        "rows": scoring.rows,
        "rejects": scoring.rejects,
        "rejects_file": where.rejects,
        "on_bad": options.on_bad,
        "input": {"url": where.input, "format": source.format, "rows": source.rows, **source.fingerprint},
        "model": {
            "name": model.name,
            "version": model.version,
            "content_hash": model.content_hash,
            "uri": settings.model_uri,
            "fast_path": model.fast_path,
        },
        "shard": {"index": where.index, "count": where.count},
        "date": where.date,
        "started_at": started.isoformat(timespec="milliseconds"),
        "finished_at": finished.isoformat(timespec="milliseconds"),
        "seconds": round(seconds, 3),
        "load_seconds": round(loaded, 3),  # of which loading (and verifying) the model
        "rows_per_s": round(scoring.rows / seconds, 1) if seconds > 0 else None,
    }
    write_manifest(where.output, manifest)
    if where.metrics:
        labels = {"model": model.name, "version": model.version, "shard": str(where.index)}
        write_whole(
            where.metrics, metrics_text(labels, scoring.rows, scoring.rejects, seconds, finished.timestamp())
        )
    progress.done(manifest)
    return manifest


def _plain(kind: pa.DataType) -> pa.DataType:
    """The id's output type: a dictionary's values, large text as text."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.string() if pa.types.is_large_string(kind) else kind
