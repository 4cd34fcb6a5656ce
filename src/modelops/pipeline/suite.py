"""A dataset's Great Expectations suite, derived from its declaration and reviewed beside it.

`modelops suite DATASET` writes `data/<dataset>/expectations.json`. The file is what validation
runs, so a hand edit (a tighter bound, an extra check) survives; it must still check exactly the
declared columns, or validation refuses it and says how to regenerate it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from modelops.declarations import Categorical, Dataset, Numeric
from modelops.errors import DataError

NUMBER_TYPES = ["int64", "float64"]


def _e(kind: str, notes: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {"notes": notes}}


def _required(ds: Dataset, column: str, nullable: bool) -> list[dict[str, Any]]:
    if nullable:
        return []
    return [_e("expect_column_values_to_not_be_null", "required: declared not nullable", column=column)]


def _numeric(ds: Dataset, column: str, spec: Numeric) -> list[dict[str, Any]]:
    types = ["int64"] if spec.integer else NUMBER_TYPES
    out = [
        _e(
            "expect_column_values_to_be_in_type_list",
            "numeric: pandas must read it as a number; text such as '1,000' makes it text",
            column=column,
            type_list=types,
        )
    ]
    out += _required(ds, column, spec.nullable)
    if spec.min is not None or spec.max is not None:
        out.append(
            _e(
                "expect_column_values_to_be_between",
                spec.description or "the declared range",
                column=column,
                min_value=_num(spec.min),
                max_value=_num(spec.max),
            )
        )
    return out


def _num(value: float | None) -> float | int | None:
    return int(value) if value is not None and float(value).is_integer() else value


def _label(label: str) -> str | int:
    """A class as pandas reads it from the CSV: labels such as 0/1 arrive as numbers, not text."""
    return int(label) if re.fullmatch(r"-?[0-9]+", label) else label


def _categorical(ds: Dataset, column: str, spec: Categorical) -> list[dict[str, Any]]:
    return [
        *_required(ds, column, spec.nullable),
        _e(
            "expect_column_values_to_be_in_set",
            "declared values; an unseen category would reach the encoder unnoticed",
            column=column,
            value_set=list(spec.values),
        ),
    ]


def build(ds: Dataset) -> dict[str, Any]:
    """The suite of a declaration: columns, row count, id, target, then each feature."""
    expectations = [
        _e(
            "expect_table_columns_to_match_set",
            "exactly the declared columns: a renamed, dropped or extra column fails",
            column_set=list(ds.columns),
            exact_match=True,
        ),
        _e(
            "expect_table_row_count_to_be_between",
            "too few rows to train or evaluate on; catches empty and header-only files",
            min_value=ds.min_rows,
            max_value=None,
        ),
        _e(
            "expect_column_values_to_be_in_type_list",
            "row ids are whole numbers",
            column=ds.id,
            type_list=["int64"],
        ),
        *_required(ds, ds.id, False),
        _e(
            "expect_column_values_to_be_unique",
            "one row per id: a repeated id means duplicated rows",
            column=ds.id,
        ),
        *_required(ds, ds.target, False),
    ]
    if ds.task == "regression":
        expectations.append(
            _e(
                "expect_column_values_to_be_in_type_list",
                "the target is a number",
                column=ds.target,
                type_list=NUMBER_TYPES,
            )
        )
    else:
        expectations.append(
            _e(
                "expect_column_values_to_be_in_set",
                "the label: one of the declared classes; anything else is an unknown class",
                column=ds.target,
                value_set=[_label(c) for c in ds.classes or ()],
            )
        )
    for column, spec in ds.features.items():
        expectations += (
            _numeric(ds, column, spec) if isinstance(spec, Numeric) else _categorical(ds, column, spec)
        )
    notes = (
        f"Derived from {ds.declaration_file} by `modelops suite {ds.name}`; hand edits survive "
        "(validation runs this file) as long as the column set matches the declaration."
    )
    return {"name": ds.name, "meta": {"notes": notes}, "expectations": expectations}


def render(suite: dict[str, Any]) -> str:
    """Stable JSON for review: one expectation per block, sorted keys."""
    return json.dumps(suite, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(ds: Dataset, path: Path | None = None) -> Path:
    """Write the derived suite beside the declaration (atomically)."""
    out = path or ds.suite_file
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render(build(ds)))
    tmp.replace(out)
    return out


def check_matches(ds: Dataset, spec: dict[str, Any], path: Path) -> None:
    """A suite (hand-edited or not) must check exactly the declared columns."""
    sets = [
        e.get("kwargs", {}).get("column_set")
        for e in spec.get("expectations", [])
        if isinstance(e, dict) and e.get("type") == "expect_table_columns_to_match_set"
    ]
    if not sets:
        raise DataError(
            f"{path}: no expect_table_columns_to_match_set: the suite must check the declared columns "
            f"(regenerate it with `modelops suite {ds.name}`)"
        )
    got, want = set(sets[0] or []), set(ds.columns)
    if got != want:
        raise DataError(
            f"{path}: its column set does not match {ds.declaration_file} (missing "
            f"{sorted(want - got)}, extra {sorted(got - want)}); regenerate: `modelops suite {ds.name}`"
        )
