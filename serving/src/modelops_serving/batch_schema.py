"""Batch scoring, validating: the dataset declaration a packaged model carries (declaration.json) and
the verdict on every input row against it and the model's signature.

declaration.json is written by the training side's package stage inside the hashed model directory,
so it is verified with the model. This is its reader (the serving package does not import
`modelops`): `{dataset, id, target, task, classes, features: {name: {kind, nullable, min, max,
integer} | {kind, nullable, values}}}`.

Checks run column by column with Arrow compute and numpy; a row is rejected for the first problem
found (the id, then the features in declaration order), with one of the reasons in REASONS.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelops_serving.model import FeatureRows, ModelLoadError, ServedModel

DECLARATION_FILE = "declaration.json"
# reason -> what it means (docs/batch.md lists the same)
REASONS = {
    "missing": "no value (empty, NA, null, NaN) where the declaration does not allow one, or no id",
    "dtype": "not a value of the declared kind: text in a numeric column, a number in a text column",
    "category": "a text value that is not one of the declared categories",
    "range": "a number outside the declared [min, max], or infinite",
    "integer": "a fractional number in a column declared integer",
    "malformed": "a CSV line with another number of fields than the header",
}
# What Arrow's cast from text to float64 accepts; used only to find the values it refused.
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?i:inf|infinity|nan)$"


@dataclass(frozen=True)
class Column:
    """One declared feature."""

    name: str
    kind: str  # numeric | categorical
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    integer: bool = False
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Declaration:
    """The dataset a model was trained on, as far as checking its input needs."""

    dataset: str
    id: str
    target: str
    task: str
    classes: tuple[str, ...]
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def read_declaration(model: ServedModel, where: str) -> Declaration:
    """declaration.json of a loaded (hash-verified) model, checked against its signature and task."""
    path = Path(model.path) / DECLARATION_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{where}: {DECLARATION_FILE} not found in the model directory; batch scoring checks input "
            "against the dataset declaration the package stage writes there (re-package the model)"
        )
    try:
        doc = json.loads(path.read_text())
        columns = tuple(_column(name, spec) for name, spec in doc["features"].items())
        decl = Declaration(
            str(doc["dataset"]),
            str(doc["id"]),
            str(doc["target"]),
            str(doc["task"]),
            tuple(str(c) for c in doc.get("classes") or ()),
            columns,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{where}: {DECLARATION_FILE} is not a dataset declaration: {exc!r}") from None
    _check_model(decl, model, where)
    return decl


def _column(name: str, spec: dict[str, Any]) -> Column:
    kind = spec["kind"]
    if kind == "numeric":
        low, high = spec.get("min"), spec.get("max")
        return Column(
            name,
            kind,
            bool(spec.get("nullable", False)),
            None if low is None else float(low),
            None if high is None else float(high),
            bool(spec.get("integer", False)),
        )
    if kind == "categorical":
        return Column(name, kind, bool(spec.get("nullable", False)), values=tuple(map(str, spec["values"])))
    raise ValueError(f"feature {name!r}: unknown kind {kind!r}")


def _check_model(decl: Declaration, model: ServedModel, where: str) -> None:
    """The declaration and the signature must describe the same inputs and outputs."""
    declared = {c.name: c.kind for c in decl.columns}
    problems = []
    for f in model.features:
        want = "categorical" if f.kind == "string" else "numeric"
        if f.name not in declared:
            problems.append(f"signature input {f.name!r} is not a declared feature")
        elif declared[f.name] != want:
            problems.append(
                f"{f.name!r} is {f.kind} in the signature but {declared[f.name]} in the declaration"
            )
    if decl.task != model.task:
        problems.append(f"the declaration's task is {decl.task}, the model's {model.task}")
    elif model.is_classifier and decl.classes != model.classes:
        problems.append(
            f"the declaration's classes {list(decl.classes)} differ from the model's {list(model.classes)}"
        )
    if problems:
        raise ModelLoadError(f"{where}: {DECLARATION_FILE} does not match the model: " + "; ".join(problems))


def needed_columns(decl: Declaration, model: ServedModel) -> tuple[str, ...]:
    """What an input file must have: the id, then the model's features in signature order."""
    return (decl.id, *(f.name for f in model.features))


@dataclass
class Reject:
    """One bad row: its position in the chunk, the column and reason of its first problem."""

    index: int
    column: str
    reason: str
    value: str | None
    message: str


@dataclass
class Verdict:
    """A chunk checked: the good rows ready to predict, their ids, and the rejected rows."""

    rows: FeatureRows
    ids: pa.Array
    kept: np.ndarray | None  # positions in the chunk of the good rows (None: all of them)
    rejects: list[Reject] = field(default_factory=list)


class _Flags:
    """The first problem of each row, collected column by column."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.found: list[tuple[np.ndarray, str, str, Any]] = []

    def add(self, mask: np.ndarray, column: str, reason: str, explain: Any) -> None:
        new = mask & ~self.bad
        if new.any():
            self.bad |= new
            self.found.append((np.flatnonzero(new), column, reason, explain))


def check(batch: pa.RecordBatch, decl: Declaration, model: ServedModel) -> Verdict:
    """Judge every row of `batch` (the needed columns as read: text from CSV, typed from Parquet)."""
    n = batch.num_rows
    flags = _Flags(n)
    ids = batch.column(decl.id)
    flags.add(_null(ids), decl.id, "missing", lambda v: "no id (an empty value, or a blank line)")
    numeric: dict[str, np.ndarray] = {}
    strings: dict[str, pa.Array] = {}
    for f in model.features:
        col = decl.column(f.name)
        arr = batch.column(f.name)
        if col.kind == "numeric":
            numeric[f.name] = _check_numeric(arr, col, flags)
        else:
            strings[f.name] = _check_categorical(arr, col, flags)
    rejects = [
        Reject(int(i), column, reason, value, explain(value))
        for idx, column, reason, explain in flags.found
        for i, value in zip(idx, _texts(batch.column(column).take(pa.array(idx))), strict=True)
    ]
    rejects.sort(key=lambda r: r.index)
    kept = None
    if rejects:
        kept = np.flatnonzero(~flags.bad)
        take = pa.array(kept)
        ids = ids.take(take)
        numeric = {k: v[kept] for k, v in numeric.items()}
        strings = {k: v.take(take) for k, v in strings.items()}
    m = len(ids)
    matrix = np.empty((m, len(model.numeric_names)), dtype=np.float64)
    for j, name in enumerate(model.numeric_names):
        matrix[:, j] = numeric[name]
    text = np.empty((m, len(model.string_names)), dtype=object)
    for j, name in enumerate(model.string_names):
        text[:, j] = strings[name].to_numpy(zero_copy_only=False)
    return Verdict(FeatureRows(matrix, text), ids, kept, rejects)


def _null(arr: pa.Array) -> np.ndarray:
    return arr.is_null().to_numpy(zero_copy_only=False)


def _texts(arr: pa.Array) -> list[str | None]:
    return [None if v is None else str(v) for v in arr.to_pylist()]


def _as_float(arr: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    """float64 (null where no value), and which values are not numbers at all (None: none)."""
    kind = arr.type
    if pa.types.is_dictionary(kind):
        arr, kind = arr.dictionary_decode(), arr.type.value_type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return pc.cast(arr, pa.float64(), safe=False), None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            return pc.cast(arr, pa.float64()), None
        except pa.ArrowInvalid:  # some value is not a number: find which, cast the others
            ok = pc.match_substring_regex(arr, _NUMBER)
            bad = pc.fill_null(pc.invert(ok), False).to_numpy(zero_copy_only=False)
            return pc.cast(pc.if_else(ok, arr, None), pa.float64()), bad
    # booleans, dates, binary: every value there is one of the wrong kind
    return pa.nulls(len(arr), pa.float64()), ~_null(arr)


def _check_numeric(arr: pa.Array, col: Column, flags: _Flags) -> np.ndarray:
    """The column's values as float64 (NaN = missing), problems flagged."""
    floats, wrong = _as_float(arr)
    values = pc.fill_null(floats, math.nan).to_numpy(zero_copy_only=False)
    if wrong is not None:
        flags.add(wrong, col.name, "dtype", lambda v: f"{v!r} is not a number")
    empty = np.isnan(values)
    if wrong is not None:
        empty &= ~wrong
    if not col.nullable:
        flags.add(
            empty, col.name, "missing", lambda v: "no value; the declaration does not allow missing values"
        )
    with np.errstate(invalid="ignore"):
        flags.add(np.isinf(values), col.name, "range", lambda v: f"{v} is not a finite number")
        if col.min is not None:
            flags.add(
                values < col.min, col.name, "range", lambda v: f"{v} is below the declared min {col.min:g}"
            )
        if col.max is not None:
            flags.add(
                values > col.max, col.name, "range", lambda v: f"{v} is above the declared max {col.max:g}"
            )
        if col.integer:
            fractional = np.isfinite(values) & (values != np.floor(values))
            flags.add(
                fractional, col.name, "integer", lambda v: f"{v} is not a whole number (declared integer)"
            )
    return values


def _check_categorical(arr: pa.Array, col: Column, flags: _Flags) -> pa.Array:
    """The column as text (null = missing), problems flagged."""
    kind = arr.type
    if pa.types.is_dictionary(kind):
        arr, kind = arr.dictionary_decode(), kind.value_type
    if pa.types.is_large_string(kind):
        arr, kind = arr.cast(pa.string()), pa.string()
    if not pa.types.is_string(kind):
        flags.add(~_null(arr), col.name, "dtype", lambda v: f"{v!r} is not text (the column is {kind})")
        return pa.nulls(len(arr), pa.string())
    empty = _null(arr)
    if not col.nullable:
        flags.add(
            empty, col.name, "missing", lambda v: "no value; the declaration does not allow missing values"
        )
    known = pc.is_in(arr, value_set=pa.array(col.values, pa.string())).to_numpy(zero_copy_only=False)
    shown = ", ".join(col.values[:12]) + (", ..." if len(col.values) > 12 else "")
    flags.add(~known & ~empty, col.name, "category", lambda v: f"{v!r} is not a declared category ({shown})")
    return arr
