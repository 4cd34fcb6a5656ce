"""Turn request values into a FeatureRows batch, or a RequestError naming the feature, row or column.

The common case (every value plainly valid) is a few C-level passes over all values at once, rows
(Seldon's ndarray) or columns (V2's tensors) alike; any doubt goes to the column-wise checks
(`set(map(type, col))` per feature), and the row-by-row search for *which* value is wrong runs only
once a column is known to be bad.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelops_serving.model import NUMERIC_KINDS, FeatureRows, ServedModel
from modelops_serving.settings import Settings

_NONE = type(None)
_DOUBLE_TYPES = frozenset({int, float, _NONE})
_STRING_TYPES = frozenset({str, _NONE})


class RequestError(Exception):
    """Bad input: a 4xx with a message the caller can act on."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_row_count(n: int, settings: Settings) -> None:
    """Refuse empty requests and requests above the configured row limit."""
    if n == 0:
        raise RequestError("no rows: send at least one row of features")
    if n > settings.max_rows_per_request:
        raise RequestError(
            f"{n} rows in one request; the limit is {settings.max_rows_per_request} "
            "(MODELOPS_MAX_ROWS_PER_REQUEST): split the request",
            413,
        )


def column_order(names: Sequence[Any] | None, model: ServedModel) -> list[int] | None:
    """Index of each signature feature among the given names (None: the signature order)."""
    expected = [f.name for f in model.features]
    if names is None:
        return None
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise RequestError("names must be a list of feature-name strings")
    if list(names) == expected:
        return None
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise RequestError(f"feature name {n!r} appears twice in names (positions {seen[n]} and {i})")
        seen[n] = i
    unknown = [n for n in names if n not in set(expected)]
    missing = [n for n in expected if n not in seen]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown feature(s) {unknown}")
        if missing:
            parts.append(f"missing feature(s) {missing}")
        raise RequestError(f"{'; '.join(parts)}; the model expects {expected}")
    return [seen[n] for n in expected]


def rows_from_values(
    values: list[list[Any]], names: list[str] | None, model: ServedModel, settings: Settings
) -> FeatureRows:
    """Validate a row-major table (rows of feature values, columns in `names` order or the signature's)."""
    if not isinstance(values, list):
        raise RequestError("the data must be a 2-D array: a list of rows, each a list of feature values")
    check_row_count(len(values), settings)
    width = len(model.features)
    if set(map(type, values)) != {list}:
        bad = next(i for i, r in enumerate(values) if type(r) is not list)
        raise RequestError(
            f"row {bad} is {type(values[bad]).__name__}, not a list of {width} feature values "
            "(the data must be 2-D: [[...], [...]])"
        )
    lengths = set(map(len, values))
    if lengths != {width}:
        bad = next(i for i, r in enumerate(values) if len(r) != width)
        raise RequestError(f"row {bad} has {len(values[bad])} values; the model expects {width} features")
    if names is not None and len(names) != width:
        column_order(names, model)  # names the unknown/missing ones
        raise RequestError(f"{len(names)} names for {width} columns")
    order = column_order(names, model)
    fast = _rows_fast(values, order, model, settings)
    if fast is not None:
        return fast
    columns = list(zip(*values, strict=True))
    if order is not None:
        columns = [columns[i] for i in order]
    return _columns_checked(columns, model, settings)


def _getter(positions: list[int]) -> Any:
    if not positions:
        return lambda row: ()
    if len(positions) == 1:
        (only,) = positions
        return lambda row: (row[only],)
    return operator.itemgetter(*positions)


def _rows_fast(
    values: list[list[Any]], order: list[int] | None, model: ServedModel, settings: Settings
) -> FeatureRows | None:
    """The common row-major case in a few C-level passes over all values; None sends any doubt (a
    wrong type, a long feature) to the column-wise path, which names the offending value."""
    groups = model.layout.groups
    if groups is None:
        return None
    num_pos, str_pos = groups
    if order is not None:
        num_pos, str_pos = [order[i] for i in num_pos], [order[i] for i in str_pos]
    nums = list(itertools.chain.from_iterable(map(_getter(num_pos), values)))
    strs = list(itertools.chain.from_iterable(map(_getter(str_pos), values)))
    return _typed(nums, strs, len(values), len(num_pos), len(str_pos), settings, columns=False)


def _columns_fast(
    columns: Sequence[Sequence[Any]], model: ServedModel, settings: Settings
) -> FeatureRows | None:
    """`rows_from_columns`' common case (V2's one tensor per feature) the same way: the columns
    chained into one list per kind, checked and converted in one pass each (a column at a time
    costs ~5 µs per feature in numpy calls, most of a single-row request)."""
    groups = model.layout.groups
    if groups is None or not columns:
        return None
    n = len(columns[0])
    if any(len(col) != n for col in columns):
        return None
    num_pos, str_pos = groups
    nums = list(itertools.chain.from_iterable(columns[i] for i in num_pos))
    strs = list(itertools.chain.from_iterable(columns[i] for i in str_pos))
    return _typed(nums, strs, n, len(num_pos), len(str_pos), settings, columns=True)


def _typed(
    nums: list[Any], strs: list[Any], n: int, n_num: int, n_str: int, settings: Settings, *, columns: bool
) -> FeatureRows | None:
    """Numbers and strings in row-major (or, `columns`, column-major) order as a FeatureRows, or None
    if any value is not plainly valid."""
    types = set(map(type, nums))
    if not types <= _DOUBLE_TYPES or not set(map(type, strs)) <= _STRING_TYPES:
        return None
    missing = None
    if _NONE in types:
        missing = np.fromiter((v is None for v in nums), dtype=bool, count=len(nums))
        nums = [math.nan if v is None else v for v in nums]
    try:
        flat = np.array(nums, dtype=np.float64)
    except OverflowError:
        return None
    if float in types and not settings.allow_nan:
        finite = np.isfinite(flat)
        if not finite.all() and not (missing is not None and (finite | missing).all()):
            return None
    strings = np.array(strs, dtype=object)
    if columns and n > 1:  # C order either way (the fast path and the batcher slice rows); one row is both
        return FeatureRows(
            np.ascontiguousarray(flat.reshape(n_num, n).T), np.ascontiguousarray(strings.reshape(n_str, n).T)
        )
    return FeatureRows(flat.reshape(n, n_num), strings.reshape(n, n_str))


def rows_from_columns(
    columns: Sequence[Sequence[Any]], model: ServedModel, settings: Settings
) -> FeatureRows:
    """Validate one sequence of values per signature feature, in signature order, all the same length."""
    fast = _columns_fast(columns, model, settings)
    return fast if fast is not None else _columns_checked(columns, model, settings)


def _columns_checked(columns: Sequence[Sequence[Any]], model: ServedModel, settings: Settings) -> FeatureRows:
    """Column by column, naming the first bad value's feature and row."""
    n = len(columns[0]) if columns else 0
    numeric = np.empty((n, sum(f.kind in NUMERIC_KINDS for f in model.features)), dtype=np.float64)
    strings = np.empty((n, len(model.features) - numeric.shape[1]), dtype=object)
    i_num = i_str = 0
    for feature, col in zip(model.features, columns, strict=True):
        if len(col) != n:
            raise RequestError(f"feature {feature.name!r} has {len(col)} values; the others have {n}")
        types = set(map(type, col))
        if feature.kind in NUMERIC_KINDS:
            numeric[:, i_num] = _numeric(feature.name, feature.kind, col, types, settings)
            i_num += 1
        else:
            if not types <= {str, _NONE}:
                _fail(feature.name, "a string", col, lambda v: isinstance(v, str) or v is None)
            strings[:, i_str] = col
            i_str += 1
    return FeatureRows(numeric, strings)


def _numeric(name: str, kind: str, col: Sequence[Any], types: set[type], settings: Settings) -> np.ndarray:
    allowed = {int, _NONE} if kind == "long" else {int, float, _NONE}
    if not types <= allowed:
        _fail(name, "an integer" if kind == "long" else "a number", col, lambda v: type(v) in allowed)
    try:
        if _NONE in types:
            arr = np.array([math.nan if v is None else v for v in col], dtype=np.float64)
        else:
            arr = np.fromiter(col, dtype=np.float64, count=len(col))
    except OverflowError:
        _fail(
            name, "a number within float64 range", col, lambda v: not isinstance(v, int) or abs(v) < 2**1023
        )
    if not settings.allow_nan and float in types:
        bad = ~np.isfinite(arr)
        if _NONE in types:
            bad &= np.fromiter((v is not None for v in col), dtype=bool, count=len(col))
        if bad.any():
            row = int(np.argmax(bad))
            raise RequestError(
                f"feature {name!r}, row {row}: {col[row]!r} is not a finite number (NaN and infinity are "
                "refused; send null for a missing value)"
            )
    return arr


def _fail(name: str, want: str, col: Sequence[Any], ok: Any) -> None:
    row = next(i for i, v in enumerate(col) if not ok(v))
    value = col[row]
    shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
    raise RequestError(
        f"feature {name!r}, row {row}: expected {want}, got {type(value).__name__} {shown}"
        + (" (booleans are not numbers)" if isinstance(value, bool) else "")
    )


def check_predictions(out: np.ndarray, model: ServedModel) -> None:
    """Refuse an answer with NaN or infinity (400, naming the row).

    Valid but extreme inputs can overflow a linear model (1e308 times a coefficient); JSON has no
    NaN, so the answer would silently become null, and the metrics and log would count garbage.
    """
    finite = np.isfinite(out)
    if finite.all():
        return
    row = int(np.argmin(finite.all(axis=1)))
    what = "class probabilities" if model.is_classifier else "prediction"
    raise RequestError(
        f"row {row}: the model's {what} {out[row].tolist()} is not finite; the inputs are beyond what "
        "the model can compute (extreme magnitudes?)"
    )
