"""`modelops new dataset`: profile a CSV into a declaration and its suite, for review.

What can be observed is written down (types, ranges, categories, nulls, the task); what cannot (the
real domain of a column, which class is positive) is flagged in comments for the reviewer. The
draft is checked before anything is written: it must parse, the suite must pass on the very CSV it
came from, and params.yaml must validate with the new dataset in it.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from modelops.changeset import Content, ScaffoldError, add_entry, write_all
from modelops.config import MODEL_NAME, PARAMS_FILE, load_params, parse_params
from modelops.declarations import COLUMN, DATA_DIR, DECLARATION, Dataset, declared, parse_text
from modelops.errors import ModelopsError
from modelops.pipeline import dataset as rows
from modelops.pipeline import suite

MAX_CLASSES = 20  # a numeric target with more distinct values is a regression target
MAX_CATEGORIES = 100  # a text column with more distinct values is not a categorical feature
MIN_ROWS = Dataset.model_fields["min_rows"].default
GITIGNORE = "/raw.csv\n/prepared\n"


def _scalar(value: Any) -> str:
    """One YAML scalar or flow list, quoted where YAML would misread it ('no', '1.0', 'null')."""
    return (
        yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
        .removesuffix("\n...\n")
        .strip()
    )


def _outward(low: float, high: float, whole: bool = False) -> tuple[float, float]:
    """Bounds just outside [low, high], on a step of a tenth of the span's order of magnitude
    (at least 1 for whole numbers): 6.2..959 gives 0..960, 0.123..0.987 gives 0.12..0.99."""
    span = (high - low) or max(abs(high), 1e-9)
    step = 10.0 ** (math.floor(math.log10(span)) - 1)
    step = max(step, 1.0) if whole else step
    digits = max(0, -math.floor(math.log10(step)))
    lo, hi = math.floor(low / step) * step, math.ceil(high / step) * step
    return round(lo, digits), round(hi, digits)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _is_number(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def infer_task(col: pd.Series, target: str) -> str:
    """regression for many distinct numbers, binary for two values, multiclass for 3..20."""
    distinct = col.dropna().nunique()
    whole = _is_number(col) and bool((col.dropna() % 1 == 0).all())
    if _is_number(col) and (distinct > MAX_CLASSES or not whole):
        return "regression"
    if distinct == 2:
        return "binary"
    if 3 <= distinct <= MAX_CLASSES:
        return "multiclass"
    raise ScaffoldError(
        f"target {target!r}: cannot infer the task from {distinct} distinct "
        f"{'numbers' if _is_number(col) else 'values'}; pass --task binary|multiclass|regression"
    )


def _check_task(task: str, col: pd.Series, target: str) -> None:
    distinct = col.dropna().nunique()
    if task == "regression" and not _is_number(col):
        raise ScaffoldError(f"--task regression: target {target!r} is not numeric ({col.dtype})")
    if task == "binary" and distinct != 2:
        raise ScaffoldError(f"--task binary: target {target!r} has {distinct} distinct values, not 2")
    if task == "multiclass" and distinct < 3:
        raise ScaffoldError(f"--task multiclass: target {target!r} has {distinct} distinct values, need 3+")


def _feature(name: str, col: pd.Series) -> list[str]:
    """The YAML lines of one feature, with what was observed said in a comment."""
    nulls = int(col.isna().sum())
    lines = [f"  {name}:"]
    if _is_number(col):
        values = col.dropna()
        if values.empty:
            raise ScaffoldError(f"column {name!r} has no values at all: drop it from the CSV")
        low, high = float(values.min()), float(values.max())
        lo, hi = _outward(low, high, pd.api.types.is_integer_dtype(col))
        lines[0] += f"  # observed {_number(low)}..{_number(high)}: widen to the real domain"
        lines += ["    kind: numeric", f"    min: {_number(lo)}", f"    max: {_number(hi)}"]
        if pd.api.types.is_integer_dtype(col):
            lines.append("    integer: true")
    else:
        values = sorted(col.dropna().astype(str).unique())
        if len(values) > MAX_CATEGORIES:
            raise ScaffoldError(
                f"column {name!r}: {len(values)} distinct text values, too many for a categorical "
                f"feature (at most {MAX_CATEGORIES}); drop it or encode it in the CSV"
            )
        lines[0] += f"  # {len(values)} values seen: add any valid one not in this sample"
        lines += ["    kind: categorical", f"    values: {_scalar(values)}"]
    if nulls:
        lines.append(f"    nullable: true  # {nulls} of {len(col)} rows empty")
    return lines


def _id_column(frame: pd.DataFrame, id_col: str | None, csv: Path) -> str:
    name = id_col or "id"
    if name not in frame.columns:
        if id_col is None:
            raise ScaffoldError(
                f"{csv}: no column named 'id'; say which column identifies a row with --id "
                f"(columns: {', '.join(map(str, frame.columns))})"
            )
        raise ScaffoldError(
            f"{csv}: --id {id_col!r} is not a column (columns: {', '.join(map(str, frame.columns))})"
        )
    col = frame[name]
    if not pd.api.types.is_integer_dtype(col):
        raise ScaffoldError(f"{csv}: id column {name!r} must hold whole numbers, read as {col.dtype}")
    dupes = col[col.duplicated()].unique()[:5]
    if len(dupes):
        raise ScaffoldError(
            f"{csv}: id column {name!r} repeats values {list(map(int, dupes))}: one row per id"
        )
    return name


def declaration_text(
    name: str, frame: pd.DataFrame, csv: Path, target: str, task: str | None = None, id_col: str | None = None
) -> str:
    """The declaration of a CSV, as reviewable YAML with comments; raises ScaffoldError on bad input."""
    columns = list(map(str, frame.columns))
    if target not in frame.columns:
        raise ScaffoldError(f"{csv}: --target {target!r} is not a column (columns: {', '.join(columns)})")
    key = _id_column(frame, id_col, csv)
    if key == target:
        raise ScaffoldError(f"{csv}: the id column {key!r} cannot be the target")
    bad = [c for c in columns if not COLUMN.match(c)]
    if bad:
        raise ScaffoldError(f"{csv}: column names {bad} must match {COLUMN.pattern}; rename them in the CSV")
    flags = [c for c in columns if pd.api.types.is_bool_dtype(frame[c])]
    if flags:
        raise ScaffoldError(
            f"{csv}: columns {flags} hold True/False, which the data contract cannot declare; "
            "write them as 0/1 (a number) or as words such as yes/no (a category)"
        )
    if len(frame) < MIN_ROWS:
        raise ScaffoldError(f"{csv}: {len(frame)} rows; at least {MIN_ROWS} are needed to train and evaluate")
    y = frame[target]
    if y.isna().any():
        row = int(np.flatnonzero(y.isna().to_numpy())[0]) + 1
        raise ScaffoldError(
            f"{csv}: target {target!r} is empty in {int(y.isna().sum())} rows (first: row {row})"
        )
    if task is None:
        task = infer_task(y, target)
    else:
        _check_task(task, y, target)
    features = [c for c in columns if c not in (key, target)]
    if not features:
        raise ScaffoldError(f"{csv}: no feature columns besides id {key!r} and target {target!r}")
    lines = [
        f"# {name}: profiled from {csv.name} by `modelops new dataset` ({len(frame):,} rows). A draft to",
        "# review: bounds and categories are what this sample holds, not the real domain. Widen them,",
        "# add descriptions, then `modelops suite " + name + "` rewrites expectations.json from this file.",
        f"description: {_scalar(f'{len(frame):,} rows from {csv.name}; {target} is the target')}",
        "licence: ''  # say where the data comes from and under which terms",
        "source:",
        "  kind: file",
        f"  path: {(DATA_DIR / 'sources' / f'{name}.csv').as_posix()}",
        f"id: {_scalar(key)}",
        f"target: {_scalar(target)}",
        f"task: {task}",
    ]
    if task != "regression":
        classes = sorted(y.astype(str).unique())
        if task == "binary":
            lines += [
                f"# [negative, positive], in sorted order: CHECK that {classes[1]!r} is the class a model",
                "# of this dataset exists to catch (metrics such as recall are about it); else swap them.",
                f"classes: {_scalar(classes)}",
            ]
        else:
            lines.append(f"classes: {_scalar(classes)}  # every label; order as you want them reported")
    lines.append("features:")
    for col in features:
        lines += _feature(col, frame[col])
    return "\n".join(lines) + "\n"


def plan_dataset(
    name: str,
    csv: Path,
    target: str,
    task: str | None = None,
    id_col: str | None = None,
    root: Path = Path(),
) -> dict[Path, Content]:
    """Every file `new dataset` writes, checked; raises ScaffoldError before anything is written."""
    if not MODEL_NAME.match(name):
        raise ScaffoldError(
            f"invalid dataset name {name!r}: use lowercase letters, digits and '-', starting with a "
            f"letter, at most 40 characters ({MODEL_NAME.pattern})"
        )
    params_path = root / PARAMS_FILE
    params = load_params(params_path)
    folder = root / DATA_DIR / name
    source = root / DATA_DIR / "sources" / f"{name}.csv"
    if name in params.datasets or name in declared(root):
        raise ScaffoldError(
            f"dataset name {name!r} is taken: {params_path}: datasets.{name} or {folder} exists"
        )
    if not csv.is_file():
        raise ScaffoldError(f"--from {csv}: no such file")
    in_place = source.exists() and source.samefile(csv)  # the CSV was put where it belongs already
    for path in (folder, source):
        if path.exists() and not (path == source and in_place):
            raise ScaffoldError(f"dataset name {name!r} is taken: {path} exists")
    try:
        frame = rows.read_csv(csv)
    except ModelopsError as exc:
        raise ScaffoldError(f"cannot read --from CSV: {exc}") from None
    text = declaration_text(name, frame, csv, target, task, id_col)
    ds = parse_text(name, str(folder / DECLARATION), text)
    entry = {"split": {"test_fraction": 0.2, "seed": 0}}
    new_params = add_entry(params_path.read_text(), "datasets", name, entry, str(params_path))
    given = {d: yaml.safe_load((root / DATA_DIR / d / DECLARATION).read_text()) for d in params.datasets}
    try:
        parse_params(yaml.safe_load(new_params), str(params_path), root, given | {name: yaml.safe_load(text)})
    except ModelopsError as exc:
        raise ScaffoldError(f"params.yaml would not validate; nothing was written:\n{exc}") from None
    suite_text = suite.render(suite.build(ds))
    _check_suite_passes(ds, csv, suite_text)
    copy: dict[Path, Content] = {} if in_place else {source: csv.read_bytes()}
    return copy | {
        folder / DECLARATION: text,
        folder / "expectations.json": suite_text,
        folder / ".gitignore": GITIGNORE,
        params_path: new_params,
    }


def _check_suite_passes(ds: Dataset, csv: Path, suite_text: str) -> None:
    """The derived suite must accept the CSV it was profiled from (the real validation stage)."""
    from modelops.pipeline import validate

    with tempfile.TemporaryDirectory(prefix="modelops-new-") as tmp:
        raw, spec = Path(tmp) / "raw.csv", Path(tmp) / "expectations.json"
        shutil.copyfile(csv, raw)
        spec.write_text(suite_text)
        try:
            validate.validate(ds, raw, spec, Path(tmp) / "validation.json")
        except ModelopsError as exc:
            raise ScaffoldError(
                f"the profiled declaration does not accept {csv}; nothing was written:\n{exc}"
            ) from None


def new_dataset(
    name: str,
    csv: Path,
    target: str,
    task: str | None = None,
    id_col: str | None = None,
    root: Path = Path(),
) -> list[Path]:
    """Profile a CSV into data/<name>/ (declaration, suite, .gitignore), copy it to data/sources/
    and list it in params.yaml: all or none."""
    return write_all(plan_dataset(name, csv, target, task, id_col, root))
