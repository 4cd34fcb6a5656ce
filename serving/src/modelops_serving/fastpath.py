"""The numpy fast path: the fitted pipeline's arithmetic on float64 matrices, used only once verified.

The fitted `Pipeline(ColumnTransformer[impute | impute + one-hot], estimator)` costs 5-7 ms per call
through pandas even for one row; the same arithmetic on a float64 matrix is a few hundred
microseconds. The numpy path is built from the fitted statistics at load time and installed only
after it reproduced the pipeline's output (probabilities of every class, or regression values) on
the input example and generated rows, through both its large- and small-batch branches; anything
unrecognised, failing or disagreeing uses the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from modelops_serving.model import FeatureRows, ServedModel, pin_threads

__all__ = [
    "CHECK_ROWS",
    "FACTORIZE_ROWS",
    "SMALL_BATCH_ROWS",
    "build_fast_path",
    "generate_rows",
    "install_fast_path",
]

log = logging.getLogger(__name__)

Fast = Callable[[FeatureRows], np.ndarray]
CHECK_ROWS = 400
# Up to this many rows (the default batch size) all trees are walked at once in numpy: 4x sklearn's
# per-tree Cython calls at 64 rows, 2x at 256 (benchmarks/tree_walk.py). At 24, batches of 25-64
# rows went to sklearn in the thread: single rows at c=64 measured 8,507 -> 9,273 req/s with 64.
SMALL_BATCH_ROWS = 64
_CHUNK = 7  # the verification's small batches (<= SMALL_BATCH_ROWS: the all-trees walk)
# From this many rows, categorical columns are factorized before the lookup (below CHECK_ROWS, so
# the verification's whole-batch call takes this branch and its small batches the other).
FACTORIZE_ROWS = 256


def install_fast_path(model: ServedModel, example: FeatureRows | None) -> None:
    """Build the fast path and set it on `model` only if it equals the pipeline on every check row.

    This is the only place that sets `model._fast`: an unverified fast path is never used.
    """
    fast = build_fast_path(model)
    if fast is None:
        return
    rows = FeatureRows.concat([r for r in (example, generate_rows(model, CHECK_ROWS)) if r is not None])
    try:
        with pin_threads(1):
            expected = model.predict_pipeline(rows)
            got = fast(rows)
            small = np.concatenate([fast(_take(rows, i, i + _CHUNK)) for i in range(0, len(rows), _CHUNK)])
    except Exception as exc:  # a pipeline that refuses generated rows, or a fast path that breaks
        log.warning(
            "model %s: fast path not verified (%s: %s); using the pipeline",
            model.path,
            type(exc).__name__,
            exc,
        )
        return
    want = (len(rows), len(model.outputs))
    if expected.shape == want and all(
        g.shape == want
        and g.dtype == np.float64
        and g.flags.c_contiguous
        and np.allclose(g, expected, rtol=1e-9, atol=0, equal_nan=True)
        for g in (got, small)
    ):
        model._fast, model.fast_path = fast, True
    else:
        log.warning(
            "model %s: the numpy fast path disagrees with the pipeline; using the pipeline", model.path
        )


def _take(rows: FeatureRows, start: int, stop: int) -> FeatureRows:
    return FeatureRows(rows.numeric[start:stop], rows.strings[start:stop])


def _steps(obj: Any) -> list[Any]:
    from sklearn.pipeline import Pipeline

    return [s for _, s in obj.steps if s not in (None, "passthrough")] if isinstance(obj, Pipeline) else [obj]


def build_fast_path(model: ServedModel) -> Fast | None:
    """A function FeatureRows -> the model's output, or None if the pipeline is not recognised
    (unverified: `install_fast_path` checks it before use)."""
    try:
        return _build_fast_path(model)
    except _Unrecognised as exc:
        log.warning("model %s: no numpy fast path (%s); predicting through the pipeline", model.path, exc)
        return None


class _Unrecognised(Exception):
    pass


def _build_fast_path(model: ServedModel) -> Fast:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    pipeline = model.pipeline
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise _Unrecognised("not a two-step Pipeline(ColumnTransformer, estimator)")
    ct, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(ct, ColumnTransformer) or getattr(ct, "sparse_output_", False):
        raise _Unrecognised("the first step is not a dense ColumnTransformer")
    blocks, width = _blocks(ct, model)
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in != width:
        raise _Unrecognised(f"the estimator expects {n_in} inputs, the transformers give {width}")
    final = _final(estimator, model)
    small = _small_batch_trees(estimator, model)

    def fast(x: FeatureRows) -> np.ndarray:
        n = len(x)
        out = np.zeros((n, width), dtype=np.float64)
        for kind, spec in blocks:
            if kind == "num":
                idx, fill, mean, scale, start = spec
                block = x.numeric[:, idx]
                missing = np.isnan(block)
                if missing.any():
                    block = np.where(missing, fill, block)
                out[:, start : start + len(idx)] = (block - mean) / scale
            else:
                col, lookup, start = spec
                codes = _codes(x.strings[:, col], lookup)
                hit = codes >= 0
                out[np.nonzero(hit)[0], start + codes[hit]] = 1.0
        if small is not None and n <= SMALL_BATCH_ROWS:
            return small(out)
        return final(out)

    return fast


def _codes(column: np.ndarray, lookup: dict[Any, int]) -> np.ndarray:
    """Each value's one-hot position (-1: none), through `lookup` (None: the missing value's).

    Small batches ask the dict once per value; large ones (batch scoring: 100,000 rows a call)
    once per distinct value, after pandas' C hash table has factorized the column.
    """
    get = lookup.get
    if len(column) < FACTORIZE_ROWS:
        return np.fromiter((get(v, -1) for v in column), dtype=np.intp, count=len(column))
    import pandas as pd

    found, distinct = pd.factorize(column)  # a missing value (None) is code -1
    table = np.fromiter((get(v, -1) for v in distinct), dtype=np.intp, count=len(distinct))
    return np.append(table, get(None, -1))[found]


def _final(estimator: Any, model: ServedModel) -> Fast:
    """The estimator's own predict_proba (classifiers) or predict as a column (regression)."""
    if model.is_classifier:
        if not hasattr(estimator, "predict_proba"):
            raise _Unrecognised(f"{type(estimator).__name__} has no predict_proba")
        predict_proba = estimator.predict_proba
        return lambda out: np.ascontiguousarray(predict_proba(out), dtype=np.float64)
    if not hasattr(estimator, "predict"):
        raise _Unrecognised(f"{type(estimator).__name__} has no predict")
    predict = estimator.predict
    return lambda out: np.ascontiguousarray(predict(out), dtype=np.float64).reshape(len(out), 1)


def _blocks(ct: Any, model: ServedModel) -> tuple[list[tuple[str, Any]], int]:
    """The ColumnTransformer as numeric blocks (fill, mean, scale) and one-hot lookups, and its width."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num_index = {n: i for i, n in enumerate(model.numeric_names)}
    str_index = {n: i for i, n in enumerate(model.string_names)}
    blocks: list[
        tuple[str, Any]
    ] = []  # ("num", (cols, fill, mean, scale, start)) | ("str", (col, lookup, start))
    width = 0
    for tname, trans, cols in ct.transformers_:
        if tname == "remainder":
            if trans == "drop" or len(cols) == 0:
                continue
            raise _Unrecognised("a remainder that is not dropped")
        if trans == "drop" or (isinstance(cols, list) and not cols):
            continue  # an empty branch (e.g. no categorical features) was never fitted and adds nothing
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise _Unrecognised(f"transformer {tname!r} selects columns by something other than names")
        steps = _steps(trans)
        if all(c in num_index for c in cols):
            fill = np.full(len(cols), np.nan)
            mean, scale = np.zeros(len(cols)), np.ones(len(cols))
            for step in steps:
                if (
                    isinstance(step, SimpleImputer)
                    and _is_nan(step.missing_values)
                    and not step.add_indicator
                ):
                    if not np.all(np.isnan(fill)):
                        raise _Unrecognised("two imputers on one column")
                    fill = np.asarray(step.statistics_, dtype=np.float64)
                    if fill.shape != (len(cols),) or not np.all(np.isfinite(fill)):
                        raise _Unrecognised("an imputer that drops or cannot fill columns")
                elif isinstance(step, StandardScaler) and step is steps[-1]:
                    if step.with_mean:
                        mean = np.asarray(step.mean_, dtype=np.float64)
                    if step.with_std:
                        scale = np.asarray(step.scale_, dtype=np.float64)
                else:
                    raise _Unrecognised(f"numeric step {type(step).__name__}")
            idx = np.array([num_index[c] for c in cols], dtype=np.intp)
            blocks.append(("num", (idx, fill, mean, scale, width)))
            width += len(cols)
        elif all(c in str_index for c in cols):
            fill_values: list[Any] = [None] * len(cols)
            encoder = None
            for step in steps:
                if (
                    isinstance(step, SimpleImputer)
                    and _is_nan(step.missing_values)
                    and not step.add_indicator
                ):
                    fill_values = list(step.statistics_)
                    if len(fill_values) != len(cols):
                        raise _Unrecognised("a string imputer that drops columns")
                elif isinstance(step, OneHotEncoder) and encoder is None:
                    encoder = step
                else:
                    raise _Unrecognised(f"string step {type(step).__name__}")
            if (
                encoder is None
                or encoder.handle_unknown != "ignore"
                or encoder.drop_idx_ is not None
                or (
                    getattr(encoder, "infrequent_categories_", None) is not None
                    and any(c is not None for c in encoder.infrequent_categories_)
                )
                or getattr(encoder, "sparse_output", False)
            ):
                raise _Unrecognised("a one-hot encoder other than dense, handle_unknown='ignore', no drop")
            for j, c in enumerate(cols):
                cats = list(encoder.categories_[j])
                if not all(isinstance(v, str) for v in cats):
                    raise _Unrecognised(f"non-string categories in {c!r}")
                lookup: dict[Any, int] = {v: k for k, v in enumerate(cats)}
                # missing -> the imputed category (or, without an imputer, an unknown -> all zeros)
                lookup[None] = lookup.get(fill_values[j], -1) if fill_values[j] is not None else -1
                blocks.append(("str", (str_index[c], lookup, width)))
                width += len(cats)
        else:
            raise _Unrecognised(f"transformer {tname!r} mixes or names unknown columns")
    return blocks, width


def _small_batch_trees(estimator: Any, model: ServedModel) -> Fast | None:
    """For HistGradientBoosting (classifier, binary or multiclass, or regressor): walk every tree at
    once with numpy, level by level.

    sklearn calls one Cython predictor per tree (200 Python-level calls, ~1.2 ms whatever the rows;
    a multiclass model has one tree per class per iteration); for a few dozen rows one vectorised
    walk over all trees is several times cheaper. Three things keep the walk small (16 rows: 411 ->
    158 µs against the plain fancy-indexed walk, benchmarks/tree_walk.py): missing values are settled
    before the walk (each row is given twice, NaN as -inf where a node sends missing values left and
    as NaN, never <= anything, where it sends them right), so a level is one comparison; node i's
    children sit at 2i and 2i+1 so the comparison's outcome is added to the index; and trees are
    sorted by depth, so a level walks only the trees that are that deep. It relies on fitted private
    attributes, so it is only used after `install_fast_path` checked it against the pipeline.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    wanted = HistGradientBoostingClassifier if model.is_classifier else HistGradientBoostingRegressor
    try:
        if not isinstance(estimator, wanted):
            return None
        per_iter = estimator.n_trees_per_iteration_
        trees = [p for iteration in estimator._predictors for p in iteration]
        nodes = [t.nodes for t in trees]
        if (
            any(nd["is_categorical"].any() for nd in nodes)
            or len(trees) != len(estimator._predictors) * per_iter
        ):
            return None
        width = int(estimator.n_features_in_)
        sizes = [len(nd) for nd in nodes]
        offsets = np.cumsum([0, *sizes[:-1]]).astype(np.intp)
        allnodes = np.concatenate(nodes)
        leaf = allnodes["is_leaf"].astype(bool)
        here = np.arange(len(allnodes))
        shift = np.repeat(offsets, sizes)
        left = np.where(leaf, here, allnodes["left"].astype(np.intp) + shift)
        right = np.where(leaf, here, allnodes["right"].astype(np.intp) + shift)
        # the column a node reads: the row's first copy (NaN -> -inf, goes left) or its second (NaN)
        column = np.where(leaf, 0, allnodes["feature_idx"]).astype(np.intp)
        column += np.where(allnodes["missing_go_to_left"].astype(bool), 0, width)
        threshold = np.where(leaf, np.inf, allnodes["num_threshold"].astype(np.float64))
        # doubled node space: slot 2i is node i's "right", 2i+1 its "left" (x <= threshold adds 1)
        column2, threshold2 = np.repeat(column, 2), np.repeat(threshold, 2)
        child2 = np.empty(2 * len(allnodes), dtype=np.intp)
        child2[0::2], child2[1::2] = 2 * right, 2 * left
        value2 = np.repeat(allnodes["value"].astype(np.float64), 2)
        depths = np.array([int(nd["depth"].max()) for nd in nodes])
        order = np.argsort(-depths, kind="stable")
        roots2 = (2 * offsets)[order][:, None]
        levels = [int((depths > level).sum()) for level in range(int(depths.max()))]
        # which class each (sorted) tree adds to: trees go iteration by iteration, one per class
        classes = np.zeros((len(trees), per_iter))
        classes[np.arange(len(trees)), order % per_iter] = 1.0
        baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(1, per_iter)
        loss = estimator._loss
        if model.is_classifier:
            finish = lambda raw: np.ascontiguousarray(loss.predict_proba(raw), dtype=np.float64)  # noqa: E731
        else:
            inverse = loss.link.inverse
            finish = lambda raw: np.ascontiguousarray(inverse(raw.ravel()), dtype=np.float64).reshape(-1, 1)  # noqa: E731
    except (AttributeError, KeyError, TypeError, ValueError):
        return None

    def predict(x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        twice = np.empty((n, 2 * width), dtype=np.float64)
        twice[:, :width] = np.where(np.isnan(x), -np.inf, x)
        twice[:, width:] = x
        flat = twice.ravel()
        start = np.arange(n, dtype=np.intp) * (2 * width)
        idx = np.repeat(roots2, n, axis=1)  # (trees, rows): the deepest trees first
        for deep in levels:
            walk = idx[:deep]  # a view: the trees at least this deep
            walk += threshold2.take(walk) >= flat.take(column2.take(walk) + start)
            idx[:deep] = child2.take(walk)
        raw = value2.take(idx).T @ classes + baseline
        return finish(raw)

    return predict


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def generate_rows(model: ServedModel, n: int, seed: int = 0) -> FeatureRows:
    """Rows that exercise every branch: typical values, missing values, unseen and missing strings."""
    rng = np.random.default_rng(seed)
    numeric = rng.lognormal(3.0, 1.5, size=(n, len(model.numeric_names))).round(1)
    numeric[rng.random(numeric.shape) < 0.1] = np.nan
    numeric[rng.random(numeric.shape) < 0.05] = 0.0
    known = _known_strings(model)
    strings = np.empty((n, len(model.string_names)), dtype=object)
    for j, name in enumerate(model.string_names):
        choices = [*known.get(name, []), "never-seen-in-training", None]
        strings[:, j] = [choices[k] for k in rng.integers(0, len(choices), n)]
    return FeatureRows(numeric, strings)


def _known_strings(model: ServedModel) -> dict[str, list[str]]:
    from sklearn.preprocessing import OneHotEncoder

    known: dict[str, list[str]] = {}
    ct = model.pipeline.steps[0][1] if hasattr(model.pipeline, "steps") else None
    for _, trans, cols in getattr(ct, "transformers_", []):
        if isinstance(cols, list) and not cols:  # an empty branch was never fitted
            continue
        for step in _steps(trans) if trans not in ("drop", "passthrough") else []:
            if isinstance(step, OneHotEncoder):
                for c, cats in zip(cols, step.categories_, strict=False):
                    known[c] = [str(v) for v in cats]
    return known
