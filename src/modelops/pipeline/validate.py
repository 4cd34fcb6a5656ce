"""Stage 2, validate: check the raw CSV against the Great Expectations suite before anything trains.

The suite is a reviewed JSON file beside the dataset's declaration (data/<dataset>/expectations.json,
derived from the declaration by `modelops suite`). The stage always writes a small,
deterministic summary (a DVC output: no timestamps, no run ids) and raises `ValidationFailed` with a
message naming each failing expectation, column, count and example rows. Rows are 1-based data
rows as in the file, header excluded: row N is line N + 1 of the CSV.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from modelops.declarations import Dataset
from modelops.errors import DataError, ValidationFailed
from modelops.pipeline import dataset
from modelops.pipeline import suite as derived

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.core import ExpectationValidationResult

# Must be set before great_expectations is imported; GX is imported lazily (it takes seconds), so
# verbs that never validate do not pay for it.
os.environ["GX_ANALYTICS_ENABLED"] = "false"
logging.getLogger("great_expectations").setLevel(logging.CRITICAL)

EXAMPLES = 5
_WHAT = {  # how a column-map expectation's unexpected values read in a sentence
    "expect_column_values_to_not_be_null": "null value{s}",
    "expect_column_values_to_be_unique": "duplicated value{s}",
    "expect_column_values_to_be_in_set": "value{s} not in set [{value_set}]",
    "expect_column_values_to_be_between": "value{s} outside [{min_value}, {max_value}]",
}


def load_suite(path: Path, ds: Dataset | None = None) -> ExpectationSuite:
    """Build the ExpectationSuite from its JSON file; any defect names the file and the entry."""
    with warnings.catch_warnings(action="ignore"):
        import great_expectations as gx
        from great_expectations.expectations import expectation_configuration as gxc
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: expectation suite not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    entries = spec.get("expectations") if isinstance(spec, dict) else None
    if not isinstance(entries, list) or not entries or not isinstance(spec.get("name"), str):
        raise DataError(f"{path}: a suite needs a 'name' and a non-empty 'expectations' list")
    if ds is not None:
        derived.check_matches(ds, spec, path)
    expectations = []
    for i, entry in enumerate(entries):
        try:  # one by one: ExpectationSuite(expectations=...) logs and drops a bad entry silently
            expectations.append(gxc.ExpectationConfiguration(**entry).to_domain_obj())
        except Exception as exc:
            kind = entry.get("type") if isinstance(entry, dict) else None
            raise DataError(f"{path}: expectation #{i} ({kind}) is invalid: {exc}") from None
    return gx.ExpectationSuite(name=spec["name"], expectations=expectations, meta=spec.get("meta"))


def _run(frame: pd.DataFrame, suite: ExpectationSuite) -> list[ExpectationValidationResult]:
    """Validate the whole frame in an ephemeral context; results in the suite's order."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    with warnings.catch_warnings(action="ignore"):
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("raw").add_dataframe_asset("rows")
        batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
            batch_parameters={"dataframe": frame}
        )
        fmt = {"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES}
        results = batch.validate(suite, result_format=fmt).results
    order = {_key(e.configuration): i for i, e in enumerate(suite.expectations)}
    return sorted(results, key=lambda r: order.get(_key(r.expectation_config), len(order)))


def _key(config: Any) -> tuple[str, str]:
    """(expectation type, column or '') — unique within a suite that checks each thing once."""
    return config.type, config.kwargs.get("column") or ""


def _plain(value: Any) -> Any:
    """A JSON-safe scalar: numpy numbers as Python numbers, NaN as None."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None if value is None or value != value else value


def _examples(values: list[Any], rows: list[int], more: bool) -> str:
    """ "; e.g. 'x' at rows 3, 9; 7 at row 12" (nulls: "; at rows 3, 9"), grouped by value."""
    groups: dict[str, list[int]] = {}
    for value, row in zip(values, rows, strict=False):
        groups.setdefault("" if value is None else f"{value!r} ", []).append(row)
    parts = [f"{v}at row{'s' * (len(r) > 1)} {', '.join(map(str, r))}" for v, r in groups.items()]
    if not parts:
        return ""
    return ("; " if list(groups) == [""] else "; e.g. ") + "; ".join(parts) + ", ..." * more


def _failure(res: ExpectationValidationResult, frame: pd.DataFrame) -> dict[str, Any]:
    """One failed expectation as data, with a readable `message` line."""
    kind, column = _key(res.expectation_config)
    kwargs, out, info = res.expectation_config.kwargs, res.result or {}, res.exception_info or {}
    item: dict[str, Any] = {"expectation": kind, "column": column or None, "evaluated": False}
    head = f"{column or 'table'} ({kind})"
    errors = [info] if "raised_exception" in info else list(info.values())
    errors = [str(e.get("exception_message")) for e in errors if e.get("raised_exception")]
    if column and column not in frame.columns:
        item["message"] = f"{head}: not evaluated, the column is missing"
    elif errors:
        error = errors[0].splitlines()[0]
        item["message"] = f"{head}: not evaluated on a {frame[column].dtype} column: {error}"
    elif "unexpected_count" in out:  # a column-map expectation: counts, examples and rows
        count, pct = int(out["unexpected_count"]), round(float(out["unexpected_percent"]), 4)
        values = [_plain(v) for v in out.get("partial_unexpected_list") or []]
        rows = [int(i) + 1 for i in out.get("partial_unexpected_index_list") or []]
        item |= {"unexpected_count": count, "unexpected_percent": pct, "evaluated": True}
        item |= {"examples": values, "rows": rows}
        bounds = {k: _plain(kwargs.get(k)) for k in ("min_value", "max_value")}
        sets = ", ".join(map(str, kwargs.get("value_set") or []))
        what = _WHAT.get(kind, "unexpected value{s}").format(s="s" * (count != 1), value_set=sets, **bounds)
        shown = _examples(values, rows, count > len(rows))
        item["message"] = f"{head}: {count} {what} ({pct:.3g}%){shown}"
    elif kind == "expect_table_columns_to_match_set":
        mismatch = (out.get("details") or {}).get("mismatched") or {}
        item |= {k: mismatch.get(k, []) for k in ("missing", "unexpected")} | {"evaluated": True}
        missing, extra = item["missing"], item["unexpected"]
        item["message"] = f"{head}: missing columns {missing}, unexpected columns {extra}"
    else:
        item |= {"observed": (observed := _plain(out.get("observed_value"))), "evaluated": True}
        detail = f"observed {observed!r}"
        if kind == "expect_table_row_count_to_be_between":
            detail = f"{observed} rows, expected at least {kwargs.get('min_value')}"
        elif kind == "expect_column_values_to_be_in_type_list":
            col = frame[column]  # GX names only the type; the suite types numbers, so find text
            bad = col[col.notna() & pd.to_numeric(col, errors="coerce").isna()].head(EXAMPLES)
            values, rows = bad.tolist(), [int(i) + 1 for i in bad.index]
            item |= {"examples": values, "rows": rows}
            shown = _examples(values, rows, len(rows) == EXAMPLES)
            detail = f"observed type {observed!r}, expected one of {kwargs.get('type_list')}{shown}"
        item["message"] = f"{head}: {detail}"
    return item


def _write(summary: dict[str, Any], path: Path) -> None:
    """Write the summary deterministically and atomically (tmp file + replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    tmp.replace(path)


def validate(
    ds: Dataset, raw: Path | None = None, suite_path: Path | None = None, result_path: Path | None = None
) -> dict[str, Any]:
    """Validate a dataset's raw CSV and write the summary JSON; raise ValidationFailed if anything fails."""
    raw, suite_path = raw or ds.raw_file, suite_path or ds.suite_file
    result_path = result_path or ds.validation_file
    suite = load_suite(suite_path, ds)
    summary: dict[str, Any] = {"data": str(raw), "suite": str(suite_path), "md5": None}
    summary |= {"success": False, "rows": None, "failures": []}
    summary["counts"] = dict.fromkeys(("evaluated", "passed", "failed"), 0)
    if raw.is_file():
        with raw.open("rb") as fh:
            summary["md5"] = hashlib.file_digest(fh, "md5").hexdigest()
    try:
        frame = dataset.read_raw(ds, raw)
    except DataError as exc:  # still leave a summary behind for the PR report
        _write(summary | {"error": str(exc)}, result_path)
        raise
    results = _run(frame, suite)
    failures = [_failure(r, frame) for r in results if not r.success]
    n, failed = len(results), len(failures)
    summary["counts"] = {"evaluated": n, "passed": n - failed, "failed": failed}
    summary |= {"success": not failures, "rows": len(frame), "failures": failures}
    _write(summary, result_path)
    if failures:
        # A check that could not run on a missing or mistyped column repeats the failure that says
        # so (the column set or the column's type), so it is counted but not listed.
        covered = {f["column"] for f in failures if f["evaluated"]}
        covered |= {c for f in failures if f["evaluated"] for c in f.get("missing", [])}
        shown = [f["message"] for f in failures if f["evaluated"] or f["column"] not in covered]
        hidden = len(failures) - len(shown)
        raise ValidationFailed(
            f"{raw} failed {len(failures)} of {len(results)} expectations in {suite_path}"
            + (f" ({hidden} not evaluated on a missing or mistyped column)" if hidden else "")
            + "; rows are 1-based data rows (file line = row + 1):\n"
            + "\n".join(f"  - {m}" for m in shown)
        )
    return summary
