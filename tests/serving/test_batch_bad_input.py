"""modelops-batch on bad input: each case gives its documented error (--on-bad fail, exit code 3,
naming file, line or row, and column) or its rejects-file row (--on-bad reject), and never leaves a
file at the output path."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from modelops_serving.batch_io import BadInput, StorageError, UsageError

from tests.serving.batch_inputs import BATCH, environment, read, rows, score, with_declaration, write
from tests.serving.conftest import MULTICLASS, Packaged
from tests.serving.tasks import generate
from tests.serving.test_batch import task_declaration

Edit = Callable[[pd.DataFrame], None]


def at(column: str, value: object, row: int = 4) -> Edit:
    def edit(frame: pd.DataFrame) -> None:
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value

    return edit


# name -> (the edit of data row 4, i.e. CSV line 6; the column; the reason; the message)
ROW_CASES = {
    "wrong dtype": (at("age", "abc"), "age", "dtype", "'abc' is not a number"),
    "unknown category": (at("home", "castle"), "home", "category", "'castle' is not a declared category"),
    "above max": (at("age", 250), "age", "range", "250 is above the declared max 100"),
    "below min": (at("expenses", -3), "expenses", "range", "-3 is below the declared min 0"),
    "null where not nullable": (
        at("age", None),
        "age",
        "missing",
        "no value; the declaration does not allow",
    ),
    "null category where not nullable": (
        at("records", None),
        "records",
        "missing",
        "no value; the declaration does not allow",
    ),
    "no id": (at("id", None), "id", "missing", "no id"),
}


def nothing_at(output: Path) -> None:
    assert not output.exists() and not Path(f"{output}.success.json").exists()
    assert not list(output.parent.glob(".*.partial")), "the temporary file was not removed"


@pytest.mark.parametrize("case", ROW_CASES)
def test_a_bad_row_fails_the_run_naming_file_line_and_column(
    packaged: Packaged, tmp_path: Path, case: str
) -> None:
    edit, column, reason, message = ROW_CASES[case]
    frame = rows(50)
    edit(frame)
    source = write(frame, tmp_path / "in.csv")
    with pytest.raises(BadInput) as caught:
        score(packaged, tmp_path, source, tmp_path / "out.csv")
    text = str(caught.value)
    assert text.startswith(f"{source}: line 6") and f"column {column!r}: {message}" in text
    assert f"[reason {reason};" in text
    nothing_at(tmp_path / "out.csv")


@pytest.mark.parametrize("case", ROW_CASES)
def test_a_bad_row_goes_to_the_rejects_file_with_its_reason(
    packaged: Packaged, tmp_path: Path, case: str
) -> None:
    edit, column, reason, message = ROW_CASES[case]
    frame = rows(50)
    edit(frame)
    manifest = score(
        packaged, tmp_path, write(frame, tmp_path / "in.csv"), tmp_path / "out.parquet", on_bad="reject"
    )
    rejected = read(tmp_path / "out.rejects.csv")
    assert list(rejected.columns) == ["row", "id", "column", "reason", "value", "message"]
    assert rejected[["row", "column", "reason"]].values.tolist() == [[6, column, reason]]
    assert rejected["message"][0].startswith(message)
    assert manifest["rejects"] == 1 and manifest["rows"] == 49
    assert manifest["rejects_file"] == str(tmp_path / "out.rejects.csv")
    assert "5" not in read(tmp_path / "out.parquet")["id"].tolist()  # the bad row is not scored


def test_missing_values_where_the_declaration_allows_them_are_scored(
    packaged: Packaged, tmp_path: Path
) -> None:
    frame = rows(20)
    frame.loc[3, ["income", "home"]] = [np.nan, None]  # both nullable
    manifest = score(packaged, tmp_path, write(frame, tmp_path / "in.csv"), tmp_path / "out.csv")
    assert manifest["rows"] == 20


def test_the_first_bad_row_is_the_one_named_and_rejects_list_every_bad_row(
    packaged: Packaged, tmp_path: Path
) -> None:
    frame = rows(300)
    for edit in (at("age", 250, row=250), at("age", "abc", row=40), at("id", None, row=120)):
        edit(frame)
    source = write(frame, tmp_path / "in.csv")
    with pytest.raises(BadInput, match=r": line 42 \(id '41'\), column 'age': 'abc' is not a number"):
        score(packaged, tmp_path, source, tmp_path / "out.csv", chunk_rows=64)
    score(packaged, tmp_path, source, tmp_path / "out.csv", chunk_rows=64, on_bad="reject")
    rejected = read(tmp_path / "out.rejects.csv")
    assert rejected[["row", "id", "reason"]].fillna("").values.tolist() == [
        [42, "41", "dtype"],
        [122, "", "missing"],
        [252, "251", "range"],
    ]


def test_a_whole_number_column_rejects_fractions(task_models, tmp_path: Path) -> None:
    base = task_models(MULTICLASS)
    model = with_declaration(base, tmp_path / "model", task_declaration(base))
    frame, _, _ = generate(30, seed=3)
    frame.insert(0, "id", range(30))
    frame.loc[2, "age"] = 28.5
    with pytest.raises(BadInput, match=r"line 4 \(id '2'\), column 'age': 28.5 is not a whole number"):
        score(model, tmp_path, write(frame, tmp_path / "in.csv"), tmp_path / "out.csv")


def test_a_missing_column_fails_both_policies_naming_it(packaged: Packaged, tmp_path: Path) -> None:
    source = write(rows(20).drop(columns=["age", "job"]), tmp_path / "in.csv")
    for policy in ("fail", "reject"):
        with pytest.raises(BadInput, match=rf"^{source}: missing columns 'age', 'job'; the model needs id, "):
            score(packaged, tmp_path, source, tmp_path / "out.csv", on_bad=policy)
    parquet = write(rows(20).drop(columns=["age"]), tmp_path / "in.parquet")
    with pytest.raises(BadInput, match=rf"^{parquet}: missing column 'age'"):
        score(packaged, tmp_path, parquet, tmp_path / "out.csv")
    nothing_at(tmp_path / "out.csv")


def test_a_wrong_delimiter_is_named(packaged: Packaged, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    rows(20).to_csv(source, index=False, sep=";")
    with pytest.raises(BadInput, match=r"the file looks ';'-delimited; batch input must be comma-separated"):
        score(packaged, tmp_path, source, tmp_path / "out.csv", on_bad="reject")
    nothing_at(tmp_path / "out.csv")


def test_empty_files(packaged: Packaged, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(BadInput, match=r"empty.csv: the file is empty \(0 bytes\)"):
        score(packaged, tmp_path, empty, tmp_path / "out.csv")
    header = write(rows(5).head(0), tmp_path / "header.csv")
    with pytest.raises(BadInput, match=r"header.csv: no rows \(a header and nothing else\)"):
        score(packaged, tmp_path, header, tmp_path / "out.csv")
    schema_only = write(rows(5).head(0), tmp_path / "schema.parquet")
    with pytest.raises(BadInput, match=r"schema.parquet: no rows"):
        score(packaged, tmp_path, schema_only, tmp_path / "out.csv")
    nothing_at(tmp_path / "out.csv")


def test_a_line_with_another_number_of_fields(packaged: Packaged, tmp_path: Path) -> None:
    source = write(rows(10), tmp_path / "in.csv")
    lines = source.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0]  # line 4 loses its last field
    lines.insert(7, "")  # and line 8 is blank: a row with no id
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput, match=r"line 4: '3,.*': 14 fields; the header has 15 \[reason malformed"):
        score(packaged, tmp_path, source, tmp_path / "out.csv")
    manifest = score(packaged, tmp_path, source, tmp_path / "out.csv", on_bad="reject")
    rejected = read(tmp_path / "out.rejects.csv")
    assert rejected[["row", "column", "reason"]].fillna("").values.tolist() == [
        [4, "", "malformed"],
        [8, "id", "missing"],
    ]
    assert manifest["rows"] == 9  # every other line scored; line numbers after the bad ones stay exact


def test_parquet_columns_of_the_wrong_type(packaged: Packaged, tmp_path: Path) -> None:
    frame = rows(20)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    ages = pa.array([str(v) if i != 3 else "abc" for i, v in enumerate(frame["age"])])
    table = table.set_column(table.schema.get_field_index("age"), "age", ages)  # numbers as text
    jobs = pa.array([i % 2 == 0 for i in range(20)])
    table = table.set_column(table.schema.get_field_index("job"), "job", jobs)  # a bool column
    pq.write_table(table, tmp_path / "in.parquet")
    score(packaged, tmp_path, tmp_path / "in.parquet", tmp_path / "out.csv", on_bad="reject")
    rejected = read(tmp_path / "out.rejects.csv")
    assert rejected["reason"].unique().tolist() == ["dtype"] and len(rejected) == 20
    assert rejected.loc[rejected["row"] == 4, ["column", "value"]].values.tolist() == [["age", "abc"]]
    assert "is not text (the column is bool)" in rejected["message"].iloc[0]


def test_infinity_is_out_of_range(packaged: Packaged, tmp_path: Path) -> None:
    frame = rows(10)
    frame.loc[2, "income"] = np.inf
    with pytest.raises(
        BadInput, match=r"in.parquet: row 3 \(id '3'\), column 'income': inf is not a finite number"
    ):
        score(packaged, tmp_path, write(frame, tmp_path / "in.parquet"), tmp_path / "out.csv")


def test_files_that_are_not_what_their_name_says(packaged: Packaged, tmp_path: Path) -> None:
    fake = tmp_path / "in.parquet"
    fake.write_text("id,age\n1,2\n")
    with pytest.raises(BadInput, match=r"in.parquet: not a Parquet file"):
        score(packaged, tmp_path, fake, tmp_path / "out.csv")
    with pytest.raises(UsageError, match=r"--input .*in.json: unknown format '.json'; use .csv or .parquet"):
        score(packaged, tmp_path, tmp_path / "in.json", tmp_path / "out.csv")
    with pytest.raises(StorageError, match=r"nowhere.csv: not found"):
        score(packaged, tmp_path, tmp_path / "nowhere.csv", tmp_path / "out.csv")


def test_exit_codes_of_the_command(packaged: Packaged, tmp_path: Path) -> None:
    """The real console script: 3 bad input, 2 usage, 5 storage; one JSON error line on stderr."""
    frame = rows(30)
    ROW_CASES["wrong dtype"][0](frame)
    source = write(frame, tmp_path / "in.csv")
    env = environment(packaged, tmp_path)
    cases = {
        3: ["--input", str(source), "--output", str(tmp_path / "out.csv")],
        2: ["--input", str(source), "--output", str(tmp_path / "out.csv"), "--shards", "3"],
        5: ["--input", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "out.csv")],
    }
    errors = {}
    for code, args in cases.items():
        proc = subprocess.run([str(BATCH), *args], env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == code, proc.stderr
        errors[code] = json.loads(proc.stderr.strip().splitlines()[-1])
        assert errors[code]["event"] == "error" and errors[code]["exit_code"] == code
    assert errors[3]["error"].startswith(f"{source}: line 6 (id '5'), column 'age': 'abc' is not a number")
    assert "JOB_COMPLETION_INDEX" in errors[2]["error"] and "missing.csv: not found" in errors[5]["error"]
    nothing_at(tmp_path / "out.csv")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_line_numbers_stay_exact_across_blocks(packaged: Packaged, tmp_path: Path, newline: str) -> None:
    """A CSV is read in blocks of whole lines (64 KiB here): lines that straddle two reads, a
    malformed line, CRLF endings and a last line without a line break keep their numbers."""
    frame = rows(5000)
    for edit in (at("age", "old", row=1234), at("home", "castle", row=4321)):
        edit(frame)
    lines = frame.to_csv(index=False).splitlines()
    lines[2999] = lines[2999] + ",extra"  # line 3000
    source = tmp_path / "in.csv"
    source.write_bytes(newline.join(lines).encode())  # no line break after the last line
    manifest = score(packaged, tmp_path, source, tmp_path / "out.csv", on_bad="reject", chunk_rows=64)
    rejected = read(tmp_path / "out.rejects.csv")
    assert rejected[["row", "reason"]].values.tolist() == [
        [1236, "dtype"],
        [3000, "malformed"],
        [4323, "category"],
    ]
    assert (
        manifest["rows"] == 4997
        and manifest["input"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    )
    assert read(tmp_path / "out.csv")["id"].iloc[-1] == "5000"
