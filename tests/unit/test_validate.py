"""The validate stage on real Great Expectations: good data passes, each corruption is named."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from modelops.errors import DataError, ValidationFailed
from modelops.pipeline import ingest, validate
from tests.conftest import shipped_dataset

DS = shipped_dataset()

BETWEEN = "expect_column_values_to_be_between"
SUITE = Path(__file__).resolve().parents[2] / "data" / "credit" / "expectations.json"


@pytest.fixture(scope="module")
def good() -> pd.DataFrame:
    """A valid raw frame following the contract (500 synthetic rows)."""
    return ingest.synthesize(DS, 500, 0)


def write(frame: pd.DataFrame, path: Path) -> Path:
    """Write a frame the way ingest does."""
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


def run(raw: Path) -> dict:
    """Validate raw with the repo's suite; return the summary JSON written next to it."""
    result = raw.with_name("result.json")
    validate.validate(DS, raw, suite_path=SUITE, result_path=result)
    return json.loads(result.read_text())


def failing(frame: pd.DataFrame, tmp_path: Path) -> tuple[str, dict]:
    """Validate a corrupted frame; return the ValidationFailed message and the summary JSON."""
    raw = write(frame, tmp_path / "credit.csv")
    with pytest.raises(ValidationFailed) as info:
        run(raw)
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["success"] is False
    assert summary["counts"]["failed"] >= 1
    return str(info.value), summary


def test_synthetic_data_passes_quietly(good, tmp_path, capfd):
    summary = run(write(good, tmp_path / "credit.csv"))
    assert summary["success"] is True
    assert summary["rows"] == 500
    assert summary["failures"] == []
    counts = summary["counts"]
    assert counts["failed"] == 0
    assert counts["passed"] == counts["evaluated"] == len(validate.load_suite(SUITE).expectations)
    assert len(summary["md5"]) == 32
    out, err = capfd.readouterr()
    assert out == err == "", "GX printed to the console"


def test_real_credit_data_passes(tmp_path):
    summary = run(write(ingest.load_packaged(DS), tmp_path / "credit.csv"))
    assert summary["success"] is True
    assert summary["rows"] == 4454


def test_nulls_in_a_required_column(good, tmp_path):
    frame = good.astype({"age": "float64"})
    frame.loc[[4, 16, 89], "age"] = None
    message, summary = failing(frame, tmp_path)
    assert "failed 1 of" in message
    assert "age (expect_column_values_to_not_be_null): 3 null values (0.6%); at rows 5, 17, 90" in (message)
    [failure] = summary["failures"]
    assert failure["column"] == "age"
    assert failure["unexpected_count"] == 3
    assert failure["rows"] == [5, 17, 90]


def test_out_of_range_values(good, tmp_path):
    frame = good.copy()
    frame.loc[2, "age"] = 150
    frame.loc[[9, 11], "amount"] = -5
    message, summary = failing(frame, tmp_path)
    assert "age (expect_column_values_to_be_between): 1 value outside [18, 100]" in message
    assert "e.g. 150 at row 3" in message
    assert "amount (expect_column_values_to_be_between): 2 values outside [0, 50000]" in message
    assert "e.g. -5 at rows 10, 12" in message
    assert [(f["column"], f["rows"]) for f in summary["failures"]] == [
        ("age", [3]),
        ("amount", [10, 12]),
    ]


@pytest.mark.parametrize(("column", "value"), [("job", "astronaut"), ("status", "maybe")])
def test_an_unseen_category(good, tmp_path, column, value):
    frame = good.copy()
    frame.loc[[16, 300], column] = value
    message, summary = failing(frame, tmp_path)
    assert f"{column} (expect_column_values_to_be_in_set): 2 values not in set [" in message
    assert f"e.g. '{value}' at rows 17, 301" in message
    [failure] = summary["failures"]
    assert failure["examples"] == [value, value]


@pytest.mark.parametrize(
    ("change", "missing", "unexpected"),
    [
        (lambda f: f.rename(columns={"age": "agee"}), ["age"], ["agee"]),
        (lambda f: f.drop(columns=["price"]), ["price"], []),
        (lambda f: f.assign(extra=1), [], ["extra"]),
    ],
    ids=["renamed", "dropped", "extra"],
)
def test_a_changed_column_set(good, tmp_path, change, missing, unexpected):
    message, summary = failing(change(good), tmp_path)
    line = f"missing columns {missing}, unexpected columns {unexpected}"
    assert f"table (expect_table_columns_to_match_set): {line}" in message
    assert summary["failures"][0]["missing"] == missing
    assert summary["failures"][0]["unexpected"] == unexpected
    # checks on a dropped column are counted, but only the column-set failure is listed
    assert message.count("\n  - ") == 1


def test_a_numeric_column_that_became_text(good, tmp_path):
    frame = good.astype({"amount": object})
    frame.loc[16, "amount"] = "1,000"
    message, summary = failing(frame, tmp_path)
    assert "amount (expect_column_values_to_be_in_type_list): observed type 'str'" in message
    assert "e.g. '1,000' at row 17" in message
    assert summary["failures"][0]["observed"] == "str"
    assert summary["failures"][0]["rows"] == [17]


def test_duplicated_rows(good, tmp_path):
    frame = pd.concat([good, good.iloc[[0, 5]]], ignore_index=True)
    message, summary = failing(frame, tmp_path)
    assert "id (expect_column_values_to_be_unique): 4 duplicated values" in message
    assert "e.g. 1 at rows 1, 501; 6 at rows 6, 502" in message
    assert summary["rows"] == 502


def test_a_header_only_file(good, tmp_path):
    message, summary = failing(good.iloc[:0], tmp_path)
    assert "table (expect_table_row_count_to_be_between): 0 rows, expected at least 100" in message
    assert summary["rows"] == 0


def test_an_empty_file(tmp_path):
    raw = tmp_path / "credit.csv"
    raw.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        run(raw)
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["success"] is False
    assert "empty" in summary["error"]


def test_a_semicolon_delimited_file(good, tmp_path):
    raw = tmp_path / "credit.csv"
    good.to_csv(raw, index=False, sep=";")
    with pytest.raises(DataError, match="';'-delimited"):
        run(raw)
    assert json.loads((tmp_path / "result.json").read_text())["success"] is False


def test_the_result_is_byte_identical_across_runs(good, tmp_path):
    frame = good.copy()
    frame.loc[[3, 7], "job"] = "astronaut"
    raw = write(frame, tmp_path / "credit.csv")
    outputs = []
    for _ in range(2):
        with pytest.raises(ValidationFailed):
            run(raw)
        outputs.append((tmp_path / "result.json").read_bytes())
    assert outputs[0] == outputs[1]
    assert b"astronaut" in outputs[0]
    assert not list(tmp_path.glob("*.tmp")), "the temporary file was left behind"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"name": "x", "expectations": []}', "non-empty 'expectations'"),
        ('{"name": "x", "expectations": [{"type": "expect_nope", "kwargs": {}}]}', "#0"),
        (
            json.dumps({"name": "x", "expectations": [{"type": BETWEEN, "kwargs": {"colum": 1}}]}),
            "#0",
        ),
    ],
    ids=["syntax", "empty", "unknown-type", "bad-kwargs"],
)
def test_a_malformed_suite_names_the_file(tmp_path, text, match):
    suite = tmp_path / "suite.json"
    suite.write_text(text)
    with pytest.raises(DataError, match=match) as info:
        validate.load_suite(suite)
    assert str(suite) in str(info.value)


def test_the_suite_covers_the_contract():
    suite = validate.load_suite(SUITE)
    checked = {(e.expectation_type, getattr(e, "column", None)) for e in suite.expectations}
    for column in set(DS.columns) - frozenset(c for c, f in DS.features.items() if f.nullable):
        assert ("expect_column_values_to_not_be_null", column) in checked
    for column in (*DS.categorical, DS.target):
        assert ("expect_column_values_to_be_in_set", column) in checked
    for column in DS.numeric:
        assert ("expect_column_values_to_be_between", column) in checked
        assert ("expect_column_values_to_be_in_type_list", column) in checked


@pytest.mark.parametrize("name", ["hpc", "concrete"])
def test_every_shipped_dataset_passes_its_derived_suite(name: str, tmp_path: Path) -> None:
    ds = shipped_dataset(name)
    raw = write(ingest.load_packaged(ds), tmp_path / "raw.csv")
    suite = Path(__file__).resolve().parents[2] / ds.suite_file
    summary = validate.validate(ds, raw, suite_path=suite, result_path=tmp_path / "v.json")
    assert summary["success"] and summary["rows"] > 1000


def test_a_hand_edit_of_the_suite_survives_and_is_run(good, tmp_path: Path) -> None:
    """The suite file is what runs: a reviewer's tighter bound applies until someone regenerates."""
    spec = json.loads(SUITE.read_text())
    for e in spec["expectations"]:
        if e["type"] == BETWEEN and e["kwargs"].get("column") == "age":
            e["kwargs"]["max_value"] = 30
    edited = tmp_path / "expectations.json"
    edited.write_text(json.dumps(spec))
    raw = write(good, tmp_path / "credit.csv")
    with pytest.raises(
        ValidationFailed, match=r"age \(expect_column_values_to_be_between\): \d+ values outside"
    ):
        validate.validate(DS, raw, suite_path=edited, result_path=tmp_path / "v.json")


def test_a_suite_that_no_longer_matches_the_declaration_is_refused(good, tmp_path: Path) -> None:
    from modelops.pipeline import suite

    ds = shipped_dataset(
        features={k: v for k, v in shipped_dataset().model_dump()["features"].items() if k != "age"}
    )
    stale = tmp_path / "expectations.json"
    stale.write_text(SUITE.read_text())  # still checks 'age'
    with pytest.raises(
        DataError, match=r"column set does not match data/credit/dataset\.yaml.*extra \['age'\]"
    ):
        validate.validate(ds, write(good.drop(columns="age"), tmp_path / "c.csv"), stale, tmp_path / "v.json")
    suite.write(ds, stale)  # `modelops suite credit` regenerates it from the declaration
    assert validate.validate(ds, tmp_path / "c.csv", stale, tmp_path / "v.json")["success"]
