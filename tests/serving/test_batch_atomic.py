"""modelops-batch as a process: a kill leaves nothing at the output path and the next run succeeds; a
tampered model is refused before anything is unpickled; a failed rerun leaves the last output and
its manifest as they were."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from modelops_serving.batch_io import BadInput
from modelops_serving.integrity import tree_hash

from tests.processes import wait_for
from tests.serving.batch_inputs import BATCH, environment, read, rows, score, write
from tests.serving.conftest import Packaged

ROWS = 400_000
CHUNK = 10_000


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough rows that a run takes many chunks: a kill after the first lands mid-run."""
    return write(rows(ROWS, seed=2), tmp_path_factory.mktemp("big") / "in.csv")


def start(processes, packaged: Packaged, tmp_path: Path, source: Path, output: Path):
    log = tmp_path / "batch.log"
    args = [str(BATCH), "--input", str(source), "--output", str(output), "--chunk-rows", str(CHUNK)]
    proc = processes.start(args, log, env=environment(packaged, tmp_path))
    # One JSON line per chunk: after the first, the run is writing its temporary file.
    wait_for("the first chunk", lambda: '"event": "chunk"' in log.read_text(), log=log)
    return proc, log


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGKILL, -9), (signal.SIGTERM, 143)])
def test_a_killed_run_leaves_nothing_at_the_output_and_the_next_run_succeeds(
    processes, packaged: Packaged, tmp_path: Path, big_input: Path, sig: int, code: int
) -> None:
    output = tmp_path / "scores" / "out.csv"
    proc, log = start(processes, packaged, tmp_path, big_input, output)
    os.kill(proc.pid, sig)
    assert proc.wait(60) == code, log.read_text()[-2000:]  # killed mid-run, not finished
    assert not output.exists() and not Path(f"{output}.success.json").exists()
    partial = output.parent / ".out.csv.partial"
    if sig == signal.SIGKILL:  # no chance to clean up: the half-written file is beside, hidden
        assert partial.exists()
    else:  # SIGTERM (a Job deleted or past its deadline): the engine removes it
        assert not partial.exists()
        assert json.loads(log.read_text().splitlines()[-1])["error"].startswith("terminated by SIGTERM")
    again = subprocess.run(
        [str(BATCH), "--input", str(big_input), "--output", str(output)],
        env=environment(packaged, tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(Path(f"{output}.success.json").read_text())["rows"] == ROWS
    assert len(read(output)) == ROWS and not partial.exists()


class Marker:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def run_model(
    model_dir: Path, packaged: Packaged, tmp_path: Path, expected: str
) -> subprocess.CompletedProcess:
    source = write(rows(20), tmp_path / "in.csv")
    env = environment(packaged, tmp_path, MODELOPS_MODEL_URI=str(model_dir), MODELOPS_EXPECTED_HASH=expected)
    args = [str(BATCH), "--input", str(source), "--output", str(tmp_path / "out.csv")]
    return subprocess.run(args, env=env, capture_output=True, text=True, check=False)


def test_a_tampered_model_is_refused_before_unpickling(packaged: Packaged, tmp_path: Path) -> None:
    tampered = Path(shutil.copytree(packaged.path, tmp_path / "tampered"))
    pickled = bytearray((tampered / "model.pkl").read_bytes())
    pickled[len(pickled) // 2] ^= 1  # one byte
    (tampered / "model.pkl").write_bytes(bytes(pickled))
    proc = run_model(tampered, packaged, tmp_path, packaged.content_hash)
    assert proc.returncode == 4, proc.stderr
    error = json.loads(proc.stderr.strip().splitlines()[-1])["error"]
    assert f"content hash mismatch: expected {packaged.content_hash}, found {tree_hash(tampered)}" in error
    assert not (tmp_path / "out.csv").exists()

    # A pickle that would leave a marker if loaded: refused with the manifest's hash, nothing loaded...
    marker = tmp_path / "unpickled"
    (tampered / "model.pkl").write_bytes(pickle.dumps(Marker(marker)))
    proc = run_model(tampered, packaged, tmp_path, packaged.content_hash)
    assert proc.returncode == 4 and "content hash mismatch" in proc.stderr
    assert not marker.exists()
    # ...while the same directory trusted by its own hash is unpickled (so the marker does work)
    proc = run_model(tampered, packaged, tmp_path, tree_hash(tampered))
    assert proc.returncode == 4 and marker.exists()


def test_a_failed_rerun_leaves_the_last_output_and_manifest_as_they_were(
    packaged: Packaged, tmp_path: Path
) -> None:
    """Until a rerun publishes, the last output and the manifest that vouches for it stay a pair."""
    output = tmp_path / "out.parquet"
    score(packaged, tmp_path, write(rows(30), tmp_path / "good.csv"), output)
    before = output.read_bytes(), Path(f"{output}.success.json").read_bytes()
    bad = rows(30)
    bad["age"] = bad["age"].astype(object)
    bad.loc[3, "age"] = "old"
    with pytest.raises(BadInput):
        score(packaged, tmp_path, write(bad, tmp_path / "bad.csv"), output)
    assert (output.read_bytes(), Path(f"{output}.success.json").read_bytes()) == before
    manifest = score(packaged, tmp_path, write(rows(12), tmp_path / "next.csv"), output)
    assert manifest["rows"] == 12 and len(read(output)) == 12
    assert json.loads(Path(f"{output}.success.json").read_text())["rows"] == 12
