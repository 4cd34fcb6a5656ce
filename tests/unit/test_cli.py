"""The CLI: one subcommand per stage, typed errors as one stderr line and the error's exit code."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from modelops import cli
from modelops.pipeline import dataset, ingest, validate

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("params", "ingest", "validate", "prepare", "train", "evaluate", "package", "run", "show")
TINY = {"estimator": "hist_gradient_boosting", "threads": 1, "hyperparams": {"max_iter": 10}}
PARAMS = {"data": {"source": "synthetic", "rows": 600, "seed": 0}, "models": {"tiny": TINY}}


def invoke(*args: str):
    """Run `modelops <args>` in this process; stdout and stderr are kept apart."""
    return CliRunner().invoke(cli.app, list(args))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a small synthetic params.yaml and the repository's suite."""
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump(PARAMS))
    validate.SUITE_FILE.parent.mkdir(parents=True)
    shutil.copyfile(ROOT / validate.SUITE_FILE, validate.SUITE_FILE)
    return tmp_path


def test_help_lists_every_stage() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for stage in STAGES:
        assert f" {stage} " in result.stdout, stage
    assert invoke().exit_code != 0  # no arguments: help, not a silent success


def test_params_prints_the_validated_params_with_defaults(repo: Path) -> None:
    result = invoke("params")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["data"]["rows"] == 600
    assert shown["split"] == {"test_fraction": 0.2, "seed": 0}
    assert shown["models"]["tiny"]["seed"] == 0


def test_bad_params_exit_2_naming_the_key(repo: Path) -> None:
    bad = PARAMS | {"split": {"test_fraction": 2}}
    Path("bad.yaml").write_text(yaml.safe_dump(bad))
    result = invoke("ingest", "--params", "bad.yaml")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: bad.yaml: invalid params")
    assert "split.test_fraction" in result.stderr
    assert "Traceback" not in result.output
    assert not dataset.RAW_FILE.exists(), "ingest ran despite bad params"


def test_a_missing_params_file_exits_2(repo: Path) -> None:
    result = invoke("prepare", "--params", "nope.yaml")
    assert result.exit_code == 2
    assert "nope.yaml: not found" in result.stderr


def test_an_unknown_model_exits_2_listing_the_known_ones(repo: Path) -> None:
    result = invoke("train", "nope")
    assert result.exit_code == 2
    assert "no model 'nope'" in result.stderr and "known: tiny" in result.stderr


def test_stages_in_order_and_missing_inputs(repo: Path) -> None:
    missing = invoke("prepare")
    assert missing.exit_code == 3  # DataError: there is no raw file yet
    assert "data/raw/credit.csv: not found (run `modelops ingest`" in missing.stderr

    ingested = invoke("ingest")
    assert ingested.exit_code == 0, ingested.output
    assert ingested.stdout == "data/raw/credit.csv: 600 rows\n"
    assert "ingest (synthetic)" in ingested.stderr  # progress goes to stderr, results to stdout

    prepared = invoke("prepare")
    assert prepared.exit_code == 0, prepared.output
    n_train, n_test = (len(pd.read_parquet(f)) for f in (dataset.TRAIN_FILE, dataset.TEST_FILE))
    assert n_train + n_test == 600
    assert prepared.stdout == f"train {n_train:,} rows, test {n_test:,} rows\n"

    untrained = invoke("evaluate", "tiny")
    assert untrained.exit_code == 5  # PipelineError: an earlier stage has not run
    assert "run `modelops train tiny`" in untrained.stderr


def test_validate_on_corrupted_data_exits_4_naming_the_problem(repo: Path) -> None:
    frame = ingest.synthesize(300, 0)
    frame.loc[[4, 9], "job"] = "astronaut"
    dataset.RAW_FILE.parent.mkdir(parents=True)
    frame.to_csv(dataset.RAW_FILE, index=False)
    result = invoke("validate")
    assert result.exit_code == 4
    assert "job (expect_column_values_to_be_in_set)" in result.stderr
    assert "'astronaut' at rows 5, 10" in result.stderr
    assert json.loads(validate.RESULT_FILE.read_text())["success"] is False


def test_each_directory_gets_its_own_params(tmp_path: Path, monkeypatch) -> None:
    """Same relative path, same mtime, different content: no stale params from another directory."""
    small, large = tmp_path / "small", tmp_path / "large"
    for where, rows in ((small, 600), (large, 900)):
        where.mkdir()
        data = {"source": "synthetic", "rows": rows}
        (where / "params.yaml").write_text(yaml.safe_dump(PARAMS | {"data": data}))
    stat = (small / "params.yaml").stat()
    os.utime(large / "params.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    for where, rows in ((small, 600), (large, 900)):
        monkeypatch.chdir(where)
        assert json.loads(invoke("params").stdout)["data"]["rows"] == rows
