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
from modelops.pipeline import ingest
from tests.conftest import declaration, shipped_dataset, synthetic

ROOT = Path(__file__).resolve().parents[2]
STAGES = (
    "params",
    "ingest",
    "validate",
    "suite",
    "prepare",
    "train",
    "evaluate",
    "package",
    "run",
    "show",
    "new",
)
TINY = {
    "dataset": "credit",
    "estimator": "hist_gradient_boosting",
    "threads": 1,
    "hyperparams": {"max_iter": 10},
}
PARAMS = {"datasets": {"credit": {}}, "models": {"tiny": TINY}}
DS = shipped_dataset(source=synthetic(600))


def invoke(*args: str):
    """Run `modelops <args>` in this process; stdout and stderr are kept apart."""
    return CliRunner().invoke(cli.app, list(args))


def write_repo(where: Path, rows: int = 600, params: dict = PARAMS) -> None:
    """params.yaml, a credit declaration on `rows` synthetic rows, and its suite."""
    (where / "params.yaml").write_text(yaml.safe_dump(params))
    folder = where / "data" / "credit"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.yaml").write_text(yaml.safe_dump(declaration(source=synthetic(rows))))
    shutil.copyfile(ROOT / "data/credit/expectations.json", folder / "expectations.json")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a small synthetic credit dataset and one tiny model."""
    monkeypatch.chdir(tmp_path)
    write_repo(tmp_path)
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
    assert shown["datasets"]["credit"]["split"] == {"test_fraction": 0.2, "seed": 0}
    assert shown["models"]["tiny"]["seed"] == 0


def test_bad_params_exit_2_naming_the_key(repo: Path) -> None:
    bad = PARAMS | {"datasets": {"credit": {"split": {"test_fraction": 2}}}}
    Path("bad.yaml").write_text(yaml.safe_dump(bad))
    result = invoke("ingest", "credit", "--params", "bad.yaml")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: bad.yaml: invalid params")
    assert "datasets.credit.split.test_fraction" in result.stderr
    assert "Traceback" not in result.output
    assert not DS.raw_file.exists(), "ingest ran despite bad params"


def test_a_missing_params_file_exits_2(repo: Path) -> None:
    result = invoke("prepare", "credit", "--params", "nope.yaml")
    assert result.exit_code == 2
    assert "nope.yaml: not found" in result.stderr


def test_an_unknown_model_or_dataset_exits_2_listing_the_known_ones(repo: Path) -> None:
    result = invoke("train", "nope")
    assert result.exit_code == 2
    assert "no model 'nope'" in result.stderr and "known: tiny" in result.stderr
    result = invoke("ingest", "nope")
    assert result.exit_code == 2
    assert "no dataset 'nope'" in result.stderr and "known: credit" in result.stderr


def test_stages_in_order_and_missing_inputs(repo: Path) -> None:
    missing = invoke("prepare", "credit")
    assert missing.exit_code == 3  # DataError: there is no raw file yet
    assert "data/credit/raw.csv: not found (run `modelops ingest`" in missing.stderr

    ingested = invoke("ingest", "credit")
    assert ingested.exit_code == 0, ingested.output
    assert ingested.stdout == "data/credit/raw.csv: 600 rows\n"
    assert "ingest credit (synthetic)" in ingested.stderr  # progress goes to stderr, results to stdout

    prepared = invoke("prepare", "credit")
    assert prepared.exit_code == 0, prepared.output
    n_train, n_test = (len(pd.read_parquet(f)) for f in (DS.train_file, DS.test_file))
    assert n_train + n_test == 600
    assert prepared.stdout == f"credit: train {n_train:,} rows, test {n_test:,} rows\n"

    untrained = invoke("evaluate", "tiny")
    assert untrained.exit_code == 5  # PipelineError: an earlier stage has not run
    assert "run `modelops train tiny`" in untrained.stderr


def test_validate_on_corrupted_data_exits_4_naming_the_problem(repo: Path) -> None:
    frame = ingest.synthesize(DS, 300, 0)
    frame.loc[[4, 9], "job"] = "astronaut"
    frame.to_csv(DS.raw_file, index=False)
    result = invoke("validate", "credit")
    assert result.exit_code == 4
    assert "job (expect_column_values_to_be_in_set)" in result.stderr
    assert "'astronaut' at rows 5, 10" in result.stderr
    assert json.loads(DS.validation_file.read_text())["success"] is False


def test_each_directory_gets_its_own_params(tmp_path: Path, monkeypatch) -> None:
    """Same relative path, same mtime, different content: no stale params from another directory."""
    small, large = tmp_path / "small", tmp_path / "large"
    for where, fraction in ((small, 0.2), (large, 0.3)):
        where.mkdir()
        write_repo(where, params=PARAMS | {"datasets": {"credit": {"split": {"test_fraction": fraction}}}})
    stat = (small / "params.yaml").stat()
    os.utime(large / "params.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    for where, fraction in ((small, 0.2), (large, 0.3)):
        monkeypatch.chdir(where)
        assert json.loads(invoke("params").stdout)["datasets"]["credit"]["split"]["test_fraction"] == fraction
