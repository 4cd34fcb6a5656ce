"""Load an MLflow-format scikit-learn model, verify its hash first, and predict on a fast numpy path.

The fitted `Pipeline(ColumnTransformer[impute | impute + one-hot], estimator)` costs 5-7 ms per call
through pandas even for one row; the same arithmetic on a float64 matrix is a few hundred
microseconds. The numpy path is built from the fitted statistics at load time and used only after it
reproduced the pipeline's probabilities on generated rows; anything unrecognised uses the pipeline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from modelops_serving.integrity import tree_hash
from modelops_serving.storage import ModelLoadError, resolve

__all__ = ["Feature", "FeatureRows", "ModelLoadError", "ServedModel", "load_model", "pin_threads"]

log = logging.getLogger(__name__)

Kind = Literal["double", "long", "string"]
NUMERIC_KINDS = ("double", "long")
# The project's binary convention (modelops.pipeline.dataset.LABELS): label 0 is "good", 1 the positive "bad".
DEFAULT_BINARY_CLASSES = ("good", "bad")
CHECK_ROWS = 400


@dataclass(frozen=True)
class Feature:
    """One input column of the model signature."""

    name: str
    kind: Kind


@dataclass
class FeatureRows:
    """A validated batch: numeric features as a float64 matrix (NaN = missing) and the string ones
    as an object matrix (None = missing), each in signature order."""

    numeric: np.ndarray  # (n, number of numeric features) float64
    strings: np.ndarray  # (n, number of string features) object

    def __len__(self) -> int:
        return self.numeric.shape[0]

    @staticmethod
    def concat(parts: Sequence[FeatureRows]) -> FeatureRows:
        """One batch from many (the batcher's merge)."""
        if len(parts) == 1:
            return parts[0]
        return FeatureRows(
            np.concatenate([p.numeric for p in parts]), np.concatenate([p.strings for p in parts])
        )


def pin_threads(threads: int) -> Any:
    """Limit BLAS/OpenMP pools of the calling thread (OpenMP limits are per thread: call it in the
    thread that predicts). Returns the threadpoolctl limiter."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


@dataclass
class ServedModel:
    """A loaded, verified model and its fastest correct predict function."""

    name: str
    version: str
    content_hash: str
    path: Path
    features: tuple[Feature, ...]
    classes: tuple[str, ...]
    pipeline: Any = field(repr=False)
    fast_path: bool = False
    _fast: Any = field(default=None, repr=False)

    @property
    def numeric_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.kind in NUMERIC_KINDS)

    @property
    def string_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.kind == "string")

    def predict(self, x: FeatureRows) -> np.ndarray:
        """Class probabilities, shape (n, len(classes)), float64."""
        if self._fast is not None:
            return self._fast(x)
        return self.predict_pipeline(x)

    def predict_pipeline(self, x: FeatureRows) -> np.ndarray:
        """The reference path: the fitted pipeline on a DataFrame, as MLflow's pyfunc would call it."""
        return np.asarray(self.pipeline.predict_proba(self.frame(x)), dtype=np.float64)

    def frame(self, x: FeatureRows) -> Any:
        """The DataFrame the pipeline was trained on (missing strings as NaN, like training data)."""
        import pandas as pd

        cols: dict[str, Any] = dict(zip(self.numeric_names, x.numeric.T, strict=True))
        for name, col in zip(self.string_names, x.strings.T, strict=True):
            cols[name] = pd.Series(col, dtype=object).where(pd.notna(col), np.nan)
        return pd.DataFrame(cols, columns=[f.name for f in self.features])


# ---- loading -----------------------------------------------------------------------------------


def load_model(
    uri: str,
    *,
    expected_hash: str | None,
    name: str,
    version: str,
    cache_dir: Path | None = None,
    class_names: Sequence[str] | None = None,
) -> ServedModel:
    """Resolve, hash-verify, then unpickle and prepare the model at `uri` (ModelLoadError if not)."""
    path = resolve(uri, cache_dir)
    try:
        content_hash = tree_hash(path)
    except (FileNotFoundError, OSError) as exc:
        raise ModelLoadError(f"{uri}: {exc}") from None
    if expected_hash is None:
        log.warning("model %s: no expected hash configured; serving unverified content %s", uri, content_hash)
    elif content_hash != expected_hash.strip().lower():
        log.error(
            "model %s REFUSED: content hash mismatch: expected %s (from the manifest), found %s",
            uri,
            expected_hash,
            content_hash,
        )
        raise ModelLoadError(
            f"{uri}: content hash mismatch: expected {expected_hash}, found {content_hash}; "
            "refusing to load a model that is not the one the manifest names"
        )
    # Only now is anything in the directory trusted enough to be unpickled.
    mlmodel = _read_mlmodel(uri, path)
    features = _signature(uri, mlmodel)
    pipeline = _unpickle(uri, path, mlmodel)
    if not hasattr(pipeline, "predict_proba"):
        raise ModelLoadError(f"{uri}: the model ({type(pipeline).__name__}) has no predict_proba")
    classes = _class_names(uri, pipeline, mlmodel, class_names)
    model = ServedModel(name, version, content_hash, path, features, classes, pipeline)
    example = _input_example(path, mlmodel, model)
    fast = build_fast_path(model)
    if fast is not None:
        rows = FeatureRows.concat([r for r in (example, generate_rows(model, CHECK_ROWS)) if r is not None])
        with pin_threads(1):
            expected = model.predict_pipeline(rows)
            # every code path: whole (large) batches and small batches (all trees walked in numpy)
            got = fast(rows)
            small = np.concatenate([fast(_take(rows, i, i + 7)) for i in range(0, len(rows), 7)])
        if all(
            g.shape == expected.shape and np.allclose(g, expected, rtol=1e-9, atol=0) for g in (got, small)
        ):
            model._fast, model.fast_path = fast, True
        else:
            log.warning("model %s: the numpy fast path disagrees with the pipeline; using the pipeline", uri)
    log.info(
        "model %s loaded: name=%s version=%s hash=%s features=%d classes=%s fast_path=%s",
        uri,
        name,
        version,
        content_hash,
        len(features),
        ",".join(classes),
        model.fast_path,
    )
    return model


def _take(rows: FeatureRows, start: int, stop: int) -> FeatureRows:
    return FeatureRows(rows.numeric[start:stop], rows.strings[start:stop])


def _read_mlmodel(uri: str, path: Path) -> dict[str, Any]:
    import yaml

    file = path / "MLmodel"
    if not file.is_file():
        raise ModelLoadError(f"{uri}: {file.name} not found; not an MLflow model directory")
    try:
        doc = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{uri}: MLmodel is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ModelLoadError(f"{uri}: MLmodel is not a mapping")
    return doc


def _signature(uri: str, mlmodel: dict[str, Any]) -> tuple[Feature, ...]:
    raw = (mlmodel.get("signature") or {}).get("inputs")
    if not raw:
        raise ModelLoadError(f"{uri}: MLmodel has no signature inputs; the server validates against them")
    try:
        cols = json.loads(raw)
        features = []
        for col in cols:
            kind = {"integer": "long", "float": "double"}.get(col["type"], col["type"])
            if kind not in ("double", "long", "string"):
                raise ModelLoadError(
                    f"{uri}: signature input {col.get('name')!r} has unsupported type {kind!r}"
                )
            features.append(Feature(str(col["name"]), kind))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{uri}: MLmodel signature inputs are not a column list: {exc}") from None
    if len({f.name for f in features}) != len(features):
        raise ModelLoadError(f"{uri}: signature has duplicate input names")
    return tuple(features)


def _unpickle(uri: str, path: Path, mlmodel: dict[str, Any]) -> Any:
    import cloudpickle

    flavors = mlmodel.get("flavors") or {}
    rel = (flavors.get("sklearn") or {}).get("pickled_model") or (flavors.get("python_function") or {}).get(
        "model_path", "model.pkl"
    )
    file = path / rel
    if not file.is_file():
        raise ModelLoadError(f"{uri}: {rel} not found")
    try:
        with file.open("rb") as fh:
            return cloudpickle.load(fh)
    except Exception as exc:  # a pickle can raise anything; all mean the model is unusable here
        raise ModelLoadError(f"{uri}: cannot unpickle {rel}: {type(exc).__name__}: {exc}") from None


def _class_names(
    uri: str, pipeline: Any, mlmodel: dict[str, Any], given: Sequence[str] | None
) -> tuple[str, ...]:
    classes = list(getattr(pipeline, "classes_", []))
    names = given or (mlmodel.get("metadata") or {}).get("class_names")
    if names is None:
        if all(isinstance(c, str) for c in classes) and classes:
            names = classes
        elif [int(c) for c in classes] == [0, 1]:
            names = DEFAULT_BINARY_CLASSES
        else:
            names = [str(c) for c in classes]
    names = tuple(str(n) for n in names)
    if classes and len(names) != len(classes):
        raise ModelLoadError(f"{uri}: {len(names)} class names {names} for {len(classes)} model classes")
    return names


def _input_example(path: Path, mlmodel: dict[str, Any], model: ServedModel) -> FeatureRows | None:
    info = mlmodel.get("saved_input_example_info") or {}
    file = path / info.get("artifact_path", "input_example.json")
    try:
        doc = json.loads(file.read_text())
        index = {c: i for i, c in enumerate(doc["columns"])}
        rows = doc["data"]
        numeric = np.array(
            [[np.nan if r[index[n]] is None else r[index[n]] for n in model.numeric_names] for r in rows],
            dtype=np.float64,
        ).reshape(len(rows), len(model.numeric_names))
        strings = np.array([[r[index[n]] for n in model.string_names] for r in rows], dtype=object).reshape(
            len(rows), len(model.string_names)
        )
        return FeatureRows(numeric, strings)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # the example is optional; the generated rows still check the fast path


# ---- the numpy fast path -----------------------------------------------------------------------


def _steps(obj: Any) -> list[Any]:
    from sklearn.pipeline import Pipeline

    return [s for _, s in obj.steps if s not in (None, "passthrough")] if isinstance(obj, Pipeline) else [obj]


def build_fast_path(model: ServedModel) -> Any:
    """A function FeatureRows -> probabilities equal to the pipeline's, or None if not recognised."""
    try:
        return _build_fast_path(model)
    except _Unrecognised as exc:
        log.warning("model %s: no numpy fast path (%s); predicting through the pipeline", model.path, exc)
        return None


class _Unrecognised(Exception):
    pass


def _build_fast_path(model: ServedModel) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pipeline = model.pipeline
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise _Unrecognised("not a two-step Pipeline(ColumnTransformer, estimator)")
    ct, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(ct, ColumnTransformer) or getattr(ct, "sparse_output_", False):
        raise _Unrecognised("the first step is not a dense ColumnTransformer")
    num_index = {n: i for i, n in enumerate(model.numeric_names)}
    str_index = {n: i for i, n in enumerate(model.string_names)}
    blocks: list[tuple[str, Any]] = []  # ("num", (cols, fill, mean, scale)) | ("str", (col, lookup, width))
    width = 0
    for tname, trans, cols in ct.transformers_:
        if tname == "remainder":
            if trans == "drop" or len(cols) == 0:
                continue
            raise _Unrecognised("a remainder that is not dropped")
        if trans == "drop":
            continue
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
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in != width or not hasattr(estimator, "predict_proba"):
        raise _Unrecognised(f"the estimator expects {n_in} inputs, the transformers give {width}")
    predict_proba = estimator.predict_proba
    small = _small_batch_trees(estimator)

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
                get = lookup.get
                codes = np.fromiter((get(v, -1) for v in x.strings[:, col]), dtype=np.intp, count=n)
                hit = codes >= 0
                out[np.nonzero(hit)[0], start + codes[hit]] = 1.0
        if small is not None and n <= SMALL_BATCH_ROWS:
            return small(out)
        return np.asarray(predict_proba(out), dtype=np.float64)

    return fast


# Below this many rows all trees are walked at once in numpy; above it sklearn's Cython loop is faster.
SMALL_BATCH_ROWS = 24


def _small_batch_trees(estimator: Any) -> Any:
    """For HistGradientBoostingClassifier: walk every tree at once with numpy fancy indexing.

    sklearn calls one Cython predictor per tree (200 Python-level calls, ~1 ms whatever the rows);
    for a handful of rows one vectorised walk over all trees is several times cheaper. It relies on
    fitted private attributes, so it is only used after load_model checked it against the pipeline.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    try:
        if not isinstance(estimator, HistGradientBoostingClassifier):
            return None
        per_iter = estimator.n_trees_per_iteration_
        trees = [p for iteration in estimator._predictors for p in iteration]
        nodes = [t.nodes for t in trees]
        if any(nd["is_categorical"].any() for nd in nodes):
            return None
        offsets = np.cumsum([0] + [len(nd) for nd in nodes[:-1]])
        allnodes = np.concatenate(nodes)
        leaf = allnodes["is_leaf"].astype(bool)
        here = np.arange(len(allnodes))
        left = np.where(
            leaf, here, allnodes["left"].astype(np.intp) + np.repeat(offsets, [len(nd) for nd in nodes])
        )
        right = np.where(
            leaf, here, allnodes["right"].astype(np.intp) + np.repeat(offsets, [len(nd) for nd in nodes])
        )
        feature = np.where(leaf, 0, allnodes["feature_idx"]).astype(np.intp)
        threshold = allnodes["num_threshold"].astype(np.float64)
        missing_left = allnodes["missing_go_to_left"].astype(bool)
        value = allnodes["value"].astype(np.float64)
        depth = int(allnodes["depth"].max())
        roots = offsets.astype(np.intp)
        baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(1, per_iter)
        loss = estimator._loss
        n_iter = len(estimator._predictors)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None

    def predict(x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        idx = np.broadcast_to(roots, (n, len(roots))).copy()
        rows = np.arange(n)[:, None]
        for _ in range(depth):
            v = x[rows, feature[idx]]
            go_left = np.where(np.isnan(v), missing_left[idx], v <= threshold[idx])
            idx = np.where(go_left, left[idx], right[idx])
        raw = value[idx].reshape(n, n_iter, per_iter).sum(axis=1) + baseline
        return np.asarray(loss.predict_proba(raw), dtype=np.float64)

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
        for step in _steps(trans) if trans not in ("drop", "passthrough") else []:
            if isinstance(step, OneHotEncoder):
                for c, cats in zip(cols, step.categories_, strict=False):
                    known[c] = [str(v) for v in cats]
    return known
