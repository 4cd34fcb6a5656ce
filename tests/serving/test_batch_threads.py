"""modelops-batch's reader and writer threads: a failure on either side of the prediction still
gives its documented exit code and leaves nothing at the output path and no thread behind."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
from modelops_serving import batch_output
from modelops_serving.batch_io import BadInput, ModelRefused, StorageError
from modelops_serving.batch_threads import Ahead, Behind

from tests.serving.batch_inputs import BATCH, environment, rows, score, with_declaration, write
from tests.serving.conftest import Packaged
from tests.serving.test_batch_bad_input import at, nothing_at


def batch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("modelops-batch-")]


def test_ahead_yields_in_order_then_raises_where_the_thread_failed() -> None:
    def items():
        yield from range(5)
        raise BadInput("row 6")

    ahead = Ahead(items(), 2, "modelops-batch-test")
    got = []
    with pytest.raises(BadInput, match="row 6"):
        got.extend(ahead)
    assert got == [0, 1, 2, 3, 4]
    ahead.close()
    assert not batch_threads()


def test_ahead_stays_depth_ahead_and_close_stops_it() -> None:
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    ahead = Ahead(items(), 2, "modelops-batch-test")
    first = next(iter(ahead))
    time.sleep(0.3)
    assert first == 0 and len(produced) <= 4  # one taken, two queued, one waiting to be queued
    ahead.close()
    assert not batch_threads() and len(produced) <= 4


def test_behind_works_in_order_and_raises_its_error_in_the_caller() -> None:
    done = []

    def work(i: int) -> None:
        if i == 3:
            raise StorageError("disk full")
        done.append(i)

    behind = Behind(work, 2, "modelops-batch-test")
    with pytest.raises(StorageError, match="disk full"):
        for i in range(100):
            behind.put(i)
        behind.close()
    assert done == [0, 1, 2]  # nothing after the failure
    behind.stop()
    assert not batch_threads()


def test_a_bad_row_in_a_late_chunk_fails_the_process_and_leaves_nothing(
    packaged: Packaged, tmp_path: Path
) -> None:
    """The reader thread finds the bad row while earlier chunks are being predicted and written."""
    frame = rows(5000)
    at("age", "abc", row=4900)(frame)
    source = write(frame, tmp_path / "in.csv")
    output = tmp_path / "out" / "scores.parquet"
    proc = subprocess.run(
        [str(BATCH), "--input", str(source), "--output", str(output), "--chunk-rows", "500"],
        env=environment(packaged, tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert sum(e["event"] == "chunk" for e in lines) >= 1  # earlier chunks were written...
    assert lines[-1]["error"].startswith(f"{source}: line 4902 (id '4901'), column 'age': 'abc'")
    nothing_at(output)  # ...and removed


def test_a_failure_in_the_writer_thread_removes_every_temporary_file(
    packaged: Packaged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = []
    real = batch_output.TableWriter.write

    def failing(self, batch):
        if len(written) == 3:
            raise StorageError(f"{self.url}: OSError: [Errno 28] No space left on device")
        written.append(batch.num_rows)
        real(self, batch)

    monkeypatch.setattr(batch_output.TableWriter, "write", failing)
    source = write(rows(3000), tmp_path / "in.parquet")
    output = tmp_path / "out.csv"
    with pytest.raises(StorageError, match="No space left"):
        score(packaged, tmp_path, source, output, chunk_rows=300, on_bad="reject")
    nothing_at(output)
    assert not (tmp_path / "out.rejects.csv").exists() and not batch_threads()


def test_a_refused_model_is_refused_before_the_input_is_read(packaged: Packaged, tmp_path: Path) -> None:
    """Exit 4 whatever is wrong with the input too (the reader starts after the model is loaded)."""
    declaration = json.loads((packaged.path / "declaration.json").read_text())
    declaration["task"] = "regression"
    contradicted = with_declaration(packaged, tmp_path / "contradicted", declaration)
    renamed = write(rows(20), tmp_path / "in.csv")
    renamed.write_text(renamed.read_text().replace("age", "agee", 1))
    for source in (tmp_path / "missing.csv", renamed):
        with pytest.raises(ModelRefused, match="the declaration's task is regression"):
            score(contradicted, tmp_path, source, tmp_path / "out.csv")
        nothing_at(tmp_path / "out.csv")
        assert not batch_threads()
