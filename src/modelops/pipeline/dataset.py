"""Reading a declared dataset's files safely, and turning rows into model inputs and targets.

Every column name comes from the declaration (`modelops.declarations`), so one function serves
every dataset.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from modelops.declarations import Dataset
from modelops.errors import DataError


def _sniff_delimiter(path: Path) -> str | None:
    with path.open(newline="") as fh:
        sample = fh.read(4096)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return None


def read_csv(path: Path, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV as text-and-number columns, refusing files that are not comma-separated tables.

    Types are not forced here: a changed dtype must reach the validation suite, which names it.
    `columns` (the expected ones) only make the messages more helpful.
    """
    expected = f" with columns {', '.join(columns)}" if columns else ""
    if not path.exists():
        raise DataError(f"{path}: not found (run `modelops ingest` or `dvc repro`)")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes): no header, no rows")
    try:
        delimiter = _sniff_delimiter(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save the CSV as UTF-8") from None
    if delimiter not in (None, ","):
        raise DataError(
            f"{path}: the file is {delimiter!r}-delimited; the data contract is comma-separated{expected}"
        )
    try:
        frame = pd.read_csv(path, keep_default_na=True, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file has no header and no rows") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a well-formed CSV: {exc}") from None
    except UnicodeDecodeError as exc:  # past the part the delimiter sniffer read
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save the CSV as UTF-8") from None
    if len(frame.columns) == 1 and len(columns) > 1:
        raise DataError(
            f"{path}: only one column ({frame.columns[0]!r}); expected comma-separated columns{expected}"
        )
    return frame


def read_raw(ds: Dataset, path: Path | None = None) -> pd.DataFrame:
    """Read a dataset's raw CSV (its declared location unless `path` is given)."""
    return read_csv(path or ds.raw_file, ds.columns)


def to_features(ds: Dataset, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input: the declared features with their dtypes (categoricals as strings)."""
    out = frame.loc[:, list(ds.features)].copy()
    for col in ds.numeric:
        out[col] = out[col].astype("float64")
    for col in ds.categorical:
        out[col] = out[col].astype(object).where(out[col].notna(), np.nan)
    return out


def to_target(ds: Dataset, frame: pd.DataFrame) -> pd.Series:
    """What a model learns: the class index in `classes` (binary: 1 = positive), or the value."""
    if ds.task == "regression":
        return frame[ds.target].astype("float64")
    index = {label: i for i, label in enumerate(ds.classes or ())}
    raw = frame[ds.target]
    labels = raw.astype(object).where(raw.notna(), "(missing)").astype(str)
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise DataError(f"{ds.raw_file}: {ds.target}: labels {unknown} are not declared classes {ds.classes}")
    return labels.map(index).astype("int64")
