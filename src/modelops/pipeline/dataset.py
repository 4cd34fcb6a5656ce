"""The data contract: the columns a raw file has, their kinds, and how to read one safely.

Ingest writes files that follow it, the Great Expectations suite checks it, and training takes its
feature lists from it, so a column is named in exactly one place in code.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from modelops.errors import DataError

RAW_FILE = Path("data/raw/credit.csv")
TRAIN_FILE = Path("data/prepared/train.parquet")
TEST_FILE = Path("data/prepared/test.parquet")

ID = "id"
TARGET = "status"
POSITIVE = "bad"  # the class a credit model exists to catch
LABELS = ("good", "bad")

NUMERIC = ("seniority", "time", "age", "expenses", "income", "assets", "debt", "amount", "price")
CATEGORICAL = ("home", "marital", "records", "job")
FEATURES = NUMERIC + CATEGORICAL
COLUMNS = (ID, TARGET, *FEATURES)

CATEGORIES = {
    "home": ("owner", "rent", "parents", "other", "priv", "ignore"),
    "marital": ("married", "single", "separated", "widow", "divorced"),
    "records": ("no", "yes"),
    "job": ("fixed", "freelance", "partime", "others"),
}

# Columns that may be missing in a real application (the source data has gaps there).
NULLABLE = frozenset({"income", "assets", "debt", "home", "marital", "job"})

DTYPES: dict[str, str] = {ID: "int64", TARGET: "string"}
DTYPES |= {c: "float64" for c in NUMERIC}
DTYPES |= {c: "string" for c in CATEGORICAL}


def _sniff_delimiter(path: Path) -> str | None:
    with path.open(newline="") as fh:
        sample = fh.read(4096)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return None


def read_raw(path: Path = RAW_FILE) -> pd.DataFrame:
    """Read a raw CSV as text-and-number columns, refusing files that are not comma-separated tables.

    Types are not forced here: a changed dtype must reach the validation suite, which names it.
    """
    if not path.exists():
        raise DataError(f"{path}: not found (run `modelops ingest` or `dvc repro ingest`)")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes): no header, no rows")
    try:
        delimiter = _sniff_delimiter(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save the CSV as UTF-8") from None
    if delimiter not in (None, ","):
        raise DataError(
            f"{path}: the file is {delimiter!r}-delimited; the data contract is comma-separated "
            f"with columns {', '.join(COLUMNS)}"
        )
    try:
        frame = pd.read_csv(path, keep_default_na=True, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file has no header and no rows") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a well-formed CSV: {exc}") from None
    except UnicodeDecodeError as exc:  # past the part the delimiter sniffer read
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save the CSV as UTF-8") from None
    if len(frame.columns) == 1 and len(COLUMNS) > 1:
        raise DataError(
            f"{path}: only one column ({frame.columns[0]!r}); expected comma-separated columns "
            f"{', '.join(COLUMNS)}"
        )
    return frame


def to_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input: the feature columns with contract dtypes (categoricals as strings)."""
    out = frame.loc[:, list(FEATURES)].copy()
    for col in NUMERIC:
        out[col] = out[col].astype("float64")
    for col in CATEGORICAL:
        out[col] = out[col].astype(object).where(out[col].notna(), np.nan)
    return out


def to_target(frame: pd.DataFrame) -> pd.Series:
    """1 for the positive class, 0 otherwise."""
    return (frame[TARGET] == POSITIVE).astype("int64")
