"""The data contract: read_raw refuses what is not a comma-separated table; features get contract dtypes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelops.errors import DataError
from modelops.pipeline import dataset, ingest
from tests.conftest import shipped_dataset

DS = shipped_dataset()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return ingest.synthesize(DS, 200, 0)


def test_the_declaration_is_consistent() -> None:
    assert DS.columns[:2] == (DS.id, DS.target)
    assert set(DS.features) == set(DS.numeric) | set(DS.categorical)
    assert DS.positive == DS.classes[1]
    assert DS.raw_file == Path("data/credit/raw.csv")


def test_read_raw_round_trips_a_contract_file(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "credit.csv"
    frame.to_csv(path, index=False)
    back = dataset.read_raw(DS, path)
    assert list(back.columns) == list(DS.columns)
    assert len(back) == len(frame)
    assert back[DS.id].tolist() == frame[DS.id].tolist()


def test_a_header_only_file_is_read_as_zero_rows(frame: pd.DataFrame, tmp_path: Path) -> None:
    """Not a read error: the validation suite reports the row count, naming the expectation."""
    path = tmp_path / "credit.csv"
    frame.iloc[:0].to_csv(path, index=False)
    back = dataset.read_raw(DS, path)
    assert len(back) == 0
    assert list(back.columns) == list(DS.columns)


def write_semicolons(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, sep=";")


def write_tabs(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, sep="\t")


def write_empty(frame: pd.DataFrame, path: Path) -> None:
    path.write_bytes(b"")


def write_blank_lines(frame: pd.DataFrame, path: Path) -> None:
    path.write_text("\n\n")


def write_one_column(frame: pd.DataFrame, path: Path) -> None:
    frame[[DS.id]].to_csv(path, index=False)


def write_ragged(frame: pd.DataFrame, path: Path) -> None:
    path.write_text("id,status,age\n1,good,30\n2,bad,40,5,6\n")


def write_latin1(frame: pd.DataFrame, path: Path) -> None:
    bad = frame.copy()
    bad.loc[3, "job"] = "fréelance"
    bad.to_csv(path, index=False, encoding="latin-1")


def write_latin1_late(frame: pd.DataFrame, path: Path) -> None:
    """A non-UTF-8 byte past the sample the delimiter sniffer reads."""
    bad = frame.copy()
    bad.loc[len(bad) - 1, "job"] = "fréelance"
    bad.to_csv(path, index=False, encoding="latin-1")
    assert path.stat().st_size > 8192


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (write_empty, "empty"),
        (write_blank_lines, "no header and no rows"),
        (write_semicolons, "';'-delimited"),
        (write_tabs, "'\\\\t'-delimited"),
        (write_one_column, "only one column"),
        (write_ragged, "not a well-formed CSV"),
        (write_latin1, "not UTF-8"),
        (write_latin1_late, "not UTF-8"),
    ],
    ids=["empty", "blank-lines", "semicolons", "tabs", "one-column", "ragged", "latin1", "latin1-late"],
)
def test_unreadable_files_raise_data_error_naming_the_file(frame, tmp_path, write, match) -> None:
    path = tmp_path / "applications.csv"
    write(frame, path)
    with pytest.raises(DataError, match=match) as info:
        dataset.read_raw(DS, path)
    assert str(info.value).startswith(str(path))
    assert info.value.exit_code == 3


def test_a_missing_file_names_the_command_that_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "credit.csv"
    with pytest.raises(DataError, match="modelops ingest") as info:
        dataset.read_raw(DS, path)
    assert str(path) in str(info.value)


def test_the_contract_names_the_columns_when_the_delimiter_is_wrong(frame, tmp_path) -> None:
    path = tmp_path / "credit.csv"
    write_semicolons(frame, path)
    with pytest.raises(DataError, match=", ".join(DS.columns)):
        dataset.read_raw(DS, path)


def test_to_features_selects_features_with_contract_dtypes(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "credit.csv"
    frame.to_csv(path, index=False)
    raw = dataset.read_raw(DS, path)  # what a stage sees: pandas' own inferred dtypes
    raw.loc[0, "home"] = None
    features = dataset.to_features(DS, raw)
    assert list(features.columns) == list(tuple(DS.features))
    assert all(features[c].dtype == np.float64 for c in DS.numeric)
    assert all(features[c].dtype == object for c in DS.categorical)
    # missing categories are NaN, the value scikit-learn's imputers look for (not pd.NA or None)
    assert isinstance(features.loc[0, "home"], float) and np.isnan(features.loc[0, "home"])
    assert features.loc[1, "home"] == raw.loc[1, "home"]
    assert DS.target not in features and DS.id not in features


def test_to_features_does_not_change_its_input(frame: pd.DataFrame) -> None:
    before = frame.dtypes.copy()
    dataset.to_features(DS, frame)
    assert frame.dtypes.equals(before)


def test_to_target_marks_the_positive_class_and_refuses_undeclared_labels() -> None:
    frame = pd.DataFrame({DS.target: ["good", "bad", "bad", "good"]})
    target = dataset.to_target(DS, frame)
    assert target.dtype == np.int64
    assert target.tolist() == [0, 1, 1, 0]
    with pytest.raises(
        DataError, match=r"status: labels \['\(missing\)', 'maybe'\] are not declared classes"
    ):
        dataset.to_target(DS, pd.DataFrame({DS.target: ["good", "maybe", None]}))


def test_to_target_per_task() -> None:
    hpc, concrete = shipped_dataset("hpc"), shipped_dataset("concrete")
    assert dataset.to_target(hpc, pd.DataFrame({"class": ["L", "VF", "M", "F"]})).tolist() == [3, 0, 2, 1]
    values = dataset.to_target(concrete, pd.DataFrame({"compressive_strength": [1, 2.5]}))
    assert values.dtype == np.float64
    assert values.tolist() == [1.0, 2.5]
