"""`modelops monitor --batch-input IN --batch-output OUT`: a batch job's input judged against the
reference of the model content that scored it (the work tree's packaged models, scored by the real
`modelops-batch`; the model found through the output's success manifest or its columns)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from modelops_serving.integrity import tree_hash

from modelops.monitoring.logs import MonitorError
from modelops.monitoring.verdict import DriftDetected
from modelops.workspace import PROJECT_ROOT
from tests import inprocess
from tests.conftest import run

MODEL, DATASET = "concrete-hgb", "concrete"
ROOT = PROJECT_ROOT  # the shared reproduced pipeline, set by `_trained`: a clean clone has no DVC outputs


@pytest.fixture(autouse=True, scope="module")
def _trained(trained_repo: Path) -> None:
    global ROOT
    ROOT = trained_repo


def raw() -> Path:
    return ROOT / "data" / DATASET / "raw.csv"


def score(tmp: Path, frame: pd.DataFrame, name: str, model: str = MODEL) -> tuple[Path, Path]:
    """Write the input, score it with the real engine, return (input, output)."""
    directory = ROOT / "models" / model / "model"
    source, output = tmp / f"{name}.csv", tmp / f"{name}-scores.parquet"
    frame.to_csv(source, index=False)
    env = {
        "MODELOPS_MODEL_URI": str(directory),
        "MODELOPS_EXPECTED_HASH": tree_hash(directory),
        "MODELOPS_MODEL_NAME": model,
        "MODELOPS_MODEL_VERSION": "v3",
        "MODELOPS_CACHE_DIR": str(tmp / "cache"),
    }
    run(["modelops-batch", "--input", str(source), "--output", str(output)], tmp, env=env)
    return source, output


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The whole dataset scored once: (input, output); tests copy the output before changing it."""
    return score(tmp_path_factory.mktemp("healthy"), pd.read_csv(raw()), "healthy")


def monitor(tmp: Path, source: Path, output: Path, *extra: str) -> tuple[int, str, dict]:
    out = tmp / "report"
    proc = inprocess.run(
        [
            "modelops",
            "monitor",
            "--batch-input",
            str(source),
            "--batch-output",
            str(output),
            "--out",
            str(out),
            *extra,
        ],
        ROOT,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads((out / "monitor.json").read_text()) if (out / "monitor.json").exists() else {}
    return proc.returncode, proc.stdout + proc.stderr, report


def test_a_healthy_input_is_judged_against_the_version_that_scored_it(
    tmp_path: Path, healthy: tuple[Path, Path]
) -> None:
    source, output = healthy
    code, out, report = monitor(tmp_path, source, output)
    assert code == 0, out
    assert f"{MODEL} in batch: no drift in {len(pd.read_csv(raw())):,} rows" in out
    text = json.dumps(report)
    assert tree_hash(ROOT / "models" / MODEL / "model") in text and '"v3"' in text


def test_a_drifted_input_is_found_through_the_output_columns_alone(tmp_path: Path) -> None:
    frame = pd.read_csv(raw())
    frame = frame[frame.cement > frame.cement.median()]  # in the declared range, but the upper half only
    source, output = score(tmp_path, frame, "drifted")
    Path(f"{output}.success.json").unlink()  # the version and hash columns name the model too
    code, out, _ = monitor(tmp_path, source, output, "--model", MODEL)
    assert code == DriftDetected.exit_code, out
    assert "drift detected (v3: " in out and "cement" in out


def test_what_cannot_be_judged_is_named(tmp_path: Path, healthy: tuple[Path, Path]) -> None:
    source, output = healthy
    code, out, _ = monitor(tmp_path, source, output, "--model", "hpc-forest")
    assert code == MonitorError.exit_code and f"was scored by {MODEL}, not hpc-forest" in out
    pd.read_parquet(output).drop(columns=["content_hash"]).to_csv(tmp_path / "bare.csv", index=False)
    code, out, _ = monitor(tmp_path, source, tmp_path / "bare.csv")
    assert code == MonitorError.exit_code and "cannot tell which model scored it" in out
    for suffix in (".json", ".txt"):
        bad = tmp_path / f"in{suffix}"
        bad.write_text("{}")
        code, out, _ = monitor(tmp_path, bad, output)
        assert code == MonitorError.exit_code and f"{bad}: expected a .csv or .parquet file" in out
    proc = inprocess.run(["modelops", "monitor", "--batch-input", str(source)], ROOT, check=False)
    assert proc.returncode == MonitorError.exit_code and "go together" in proc.stderr


def test_too_few_rows_is_insufficient_data(tmp_path: Path) -> None:
    source, output = score(tmp_path, pd.read_csv(raw()).head(50), "few")
    code, out, _ = monitor(tmp_path, source, output)
    assert code == 15 and "has 50 rows" in out  # neither drift nor a clean bill of health
