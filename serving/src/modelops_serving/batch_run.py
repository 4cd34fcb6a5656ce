"""Batch scoring, one run: resolve the files, load the model (hash first), then predict each chunk of
the input shard in this thread while a reader thread reads and checks the next ones and a writer
thread writes the last ones (batch_threads); commit the outputs, then the success manifest, then the
metrics. Nothing is visible at the output path until the whole output is.
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import numpy as np
import pyarrow as pa

from modelops_serving import signature
from modelops_serving.batch_io import BadInput, ModelRefused, UsageError, expand, file_format
from modelops_serving.batch_output import default_rejects, metrics_text, write_manifest, write_whole
from modelops_serving.batch_schema import Declaration, read_declaration
from modelops_serving.batch_stages import Checked, Reading, Writing
from modelops_serving.batch_threads import Ahead, Behind
from modelops_serving.model import ModelLoadError, ServedModel, load_model, pin_threads
from modelops_serving.settings import Settings

# Big enough that per-chunk Python work is noise next to the model's; small enough that a chunk's
# text, features and outputs stay a few tens of MB (memory does not grow with the input).
DEFAULT_CHUNK_ROWS = 100_000
# Chunks waiting between the threads, each side: enough that the prediction never waits for a
# chunk once the first is read (reading one takes a tenth of predicting it); few enough that memory
# stays a few chunks.
QUEUED_CHUNKS = 2


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


def run(
    options: Options, settings: Settings | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Score options.input into options.output; return the success manifest (BatchError if not)."""
    settings = settings or Settings()
    started, clock = datetime.now(UTC), time.perf_counter()
    where = plan(options, started)
    progress = progress or Progress()
    pa.set_cpu_count(settings.threads)
    with collector_paused():
        model, decl = load(settings)
    loaded = time.perf_counter() - clock
    # The reader starts now, not during the load: importing and unpickling hold the GIL, and a reader
    # beside them stretched the load by ~0.5 s (measured), more than the first chunk then takes (~0.2 s).
    reading = Reading(where, model, decl, options.chunk_rows, settings.threads)
    chunks = Ahead(iter(reading), QUEUED_CHUNKS, "modelops-batch-read")
    try:
        writing = score(chunks, reading, model, decl, where, progress, settings.threads)
    finally:
        chunks.close()
    source = reading.source
    assert source is not None  # every chunk was read
    finished = datetime.now(UTC)
    seconds = time.perf_counter() - clock
    manifest = {
        "output": where.output,
        "format": where.output_format,
        "columns": writing.columns,
        "rows": writing.rows,
        "rejects": writing.rejects,
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
        "rows_per_s": round(writing.rows / seconds, 1) if seconds > 0 else None,
    }
    write_manifest(where.output, manifest)
    if where.metrics:
        labels = {"model": model.name, "version": model.version, "shard": str(where.index)}
        write_whole(
            where.metrics, metrics_text(labels, writing.rows, writing.rejects, seconds, finished.timestamp())
        )
    progress.done(manifest)
    return manifest


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection while the model loads (the previous state is restored after).

    Importing scikit-learn, SciPy and pandas and unpickling create over 100,000 objects that live
    as long as the run; the collector's passes over them as they were created (2 full ones, ~30
    middle ones) took 0.1-0.3 s of a run (measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def score(
    chunks: Iterable[Checked],
    reading: Reading,
    model: ServedModel,
    decl: Declaration,
    where: Plan,
    progress: Progress,
    threads: int,
) -> Writing:
    """Predict each checked chunk here while the writer thread writes the one before; commit the
    outputs, or remove every temporary file if anything fails."""
    # After loading: threadpoolctl limits only the pools already loaded, and scikit-learn's OpenMP
    # is loaded with the model (unlimited, it spin-waits for busy cores: measured 5x slower). The
    # limit is the calling thread's: this one, which predicts.
    with pin_threads(threads):
        writing = Writing(where, model, decl, progress)
        written = Behind(writing, QUEUED_CHUNKS, "modelops-batch-write")
        try:
            for checked in chunks:
                written.put((checked, predict(model, checked, reading)))
            written.close()
            writing.commit()
        except BaseException:
            written.stop()  # the chunk in hand is finished before its files are removed
            writing.abort()
            raise
    return writing


def predict(model: ServedModel, checked: Checked, reading: Reading) -> np.ndarray | None:
    """The model's outputs for the chunk's good rows (None: there are none); BadInput if not finite."""
    if not len(checked.verdict.ids):
        return None
    out = model.predict(checked.verdict.rows)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():  # declared ranges keep outputs finite; a model that still overflows stops
        k = int(np.argmin(finite))
        raise BadInput(
            f"{reading.plan.input}: {reading.place(checked.row(k))}: the model's output {out[k].tolist()} "
            "is not finite"
        )
    return out
