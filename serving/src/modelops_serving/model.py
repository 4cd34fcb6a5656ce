"""Load an MLflow-format scikit-learn model: verify its hash first, then read its task and signature.

MLmodel `metadata` contract (written by the training side's packaging):
- `task`: `binary` | `multiclass` | `regression`; absent means `binary` (every model packaged before
  tasks existed).
- `class_names`: the labels of `pipeline.classes_`, in that order (binary: index 1 is the positive
  class). Classifiers only; absent -> string classes as they are, 0/1 as good/bad, else str(class).
- `target`: the predicted column's name, regression only; the output is named `prediction` without it.
Classifiers answer `predict_proba` (n, classes); regressors `predict` as (n, 1), both float64.
Fast numpy prediction lives in fastpath.py and is used only once verified against the pipeline.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from modelops_serving.integrity import tree_hash
from modelops_serving.signature import Required, check
from modelops_serving.storage import ModelLoadError, resolve

__all__ = [
    "TASKS",
    "Feature",
    "FeatureRows",
    "Layout",
    "ModelLoadError",
    "ServedModel",
    "load_model",
    "pin_threads",
]

log = logging.getLogger(__name__)

Kind = Literal["double", "long", "string"]
Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")
NUMERIC_KINDS = ("double", "long")
# Each feature kind's tensor datatype in the Open Inference Protocol (V2): the model metadata's, and
# what a request's tensor usually says (any numeric datatype is accepted for a number).
V2_DATATYPES = {"double": "FP64", "long": "INT64", "string": "BYTES"}
# The project's binary convention (modelops.pipeline.dataset.LABELS): label 0 is "good", 1 the positive "bad".
DEFAULT_BINARY_CLASSES = ("good", "bad")
DEFAULT_TARGET = "prediction"


@dataclass(frozen=True)
class Feature:
    """One input column of the model signature."""

    name: str
    kind: Kind


class Layout(NamedTuple):
    """What request validation asks of the signature on every request, computed once per model."""

    names: tuple[str, ...]  # the features, in signature order
    known: frozenset[str]
    numeric: tuple[bool, ...]  # per feature: a number (double or long)
    # signature positions of the double and the string features; None with a long feature (whose
    # integer check the column-wise path does)
    groups: tuple[list[int], list[int]] | None
    datatypes: tuple[str, ...]  # per feature: its V2 tensor datatype (a number may come as any numeric one)


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
    """A loaded, verified model, its task and its fastest correct predict function."""

    name: str
    version: str
    content_hash: str
    path: Path
    features: tuple[Feature, ...]
    classes: tuple[str, ...]  # () for regression
    pipeline: Any = field(repr=False)
    fast_path: bool = False
    _fast: Any = field(default=None, repr=False)  # set only by fastpath.install_fast_path, once verified
    task: Task = "binary"
    target: str = DEFAULT_TARGET  # the regression output's name
    example: FeatureRows | None = field(default=None, repr=False)  # its input example (warm-up)

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the output columns: the classes, or the regression target."""
        return self.classes if self.is_classifier else (self.target,)

    @functools.cached_property
    def layout(self) -> Layout:
        features = self.features
        groups = None
        if not any(f.kind == "long" for f in features):
            groups = (
                [i for i, f in enumerate(features) if f.kind == "double"],
                [i for i, f in enumerate(features) if f.kind == "string"],
            )
        names = tuple(f.name for f in features)
        numeric = tuple(f.kind in NUMERIC_KINDS for f in features)
        datatypes = tuple(V2_DATATYPES[f.kind] for f in features)
        return Layout(names, frozenset(names), numeric, groups, datatypes)

    @property
    def numeric_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.kind in NUMERIC_KINDS)

    @property
    def string_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.kind == "string")

    def predict(self, x: FeatureRows) -> np.ndarray:
        """Shape (n, len(outputs)) float64: class probabilities, or the regression values as a column."""
        if self._fast is not None:
            return self._fast(x)
        return self.predict_pipeline(x)

    def predict_pipeline(self, x: FeatureRows) -> np.ndarray:
        """The reference path: the fitted pipeline on a DataFrame, as MLflow's pyfunc would call it.

        C order always: HistGradientBoosting's multiclass probabilities come in Fortran order, which
        orjson cannot serialise (and the batcher slices rows)."""
        if self.is_classifier:
            return np.ascontiguousarray(self.pipeline.predict_proba(self.frame(x)), dtype=np.float64)
        out = np.ascontiguousarray(self.pipeline.predict(self.frame(x)), dtype=np.float64)
        return out.reshape(len(x), -1)

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
    signer: Required | None = None,
) -> ServedModel:
    """Resolve, verify its hash (and its signature when `signer` demands one), then unpickle and
    prepare the model at `uri` (ModelLoadError if not)."""
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
    if signer is not None:  # who produced it: the policy the manifest carries
        check(uri, path, signer, cache_dir)
        log.info("model %s: signature %s verified: %s", uri, signer.uri, signer.policy.describe())
    # Only now is anything in the directory trusted enough to be unpickled.
    mlmodel = _read_mlmodel(uri, path)
    features = _signature(uri, mlmodel)
    task, meta = _task(uri, mlmodel)
    pipeline = _unpickle(uri, path, mlmodel)
    target = DEFAULT_TARGET
    if task == "regression":
        target = _check_regressor(uri, pipeline, meta)
        classes: tuple[str, ...] = ()
    else:
        if not hasattr(pipeline, "predict_proba"):
            raise ModelLoadError(f"{uri}: the model ({type(pipeline).__name__}) has no predict_proba")
        classes = _class_names(uri, pipeline, meta, class_names, task)
    model = ServedModel(
        name, version, content_hash, path, features, classes, pipeline, task=task, target=target
    )
    example = _input_example(path, mlmodel, model)
    _check_outputs(uri, model, example)
    model.example = example

    from modelops_serving.fastpath import install_fast_path

    install_fast_path(model, example)
    log.info(
        "model %s loaded: name=%s version=%s hash=%s features=%d task=%s outputs=%s fast_path=%s",
        uri,
        name,
        version,
        content_hash,
        len(features),
        task,
        ",".join(model.outputs),
        model.fast_path,
    )
    return model


def _task(uri: str, mlmodel: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
    """The task named by MLmodel metadata (absent: binary) and the metadata mapping."""
    meta = mlmodel.get("metadata") or {}
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{uri}: MLmodel metadata is not a mapping")
    task = meta.get("task", "binary")
    if task not in TASKS:
        raise ModelLoadError(f"{uri}: MLmodel metadata.task is {task!r}; expected one of {list(TASKS)}")
    return task, meta


def _check_regressor(uri: str, pipeline: Any, meta: dict[str, Any]) -> str:
    """Refuse metadata that contradicts a regressor; the output's name."""
    from sklearn.base import is_classifier

    if not hasattr(pipeline, "predict"):
        raise ModelLoadError(f"{uri}: the model ({type(pipeline).__name__}) has no predict")
    try:
        classifier = is_classifier(pipeline)
    except Exception:  # an object without scikit-learn's tags: judged by its outputs below
        classifier = False
    if classifier:
        raise ModelLoadError(f"{uri}: metadata.task is regression but the model is a classifier")
    if meta.get("class_names"):
        raise ModelLoadError(f"{uri}: a regression model has no class_names (found {meta['class_names']})")
    target = meta.get("target", DEFAULT_TARGET)
    if not isinstance(target, str) or not target:
        raise ModelLoadError(f"{uri}: metadata.target must be a non-empty string, got {target!r}")
    return target


def _check_outputs(uri: str, model: ServedModel, example: FeatureRows | None) -> None:
    """The pipeline on its own input example answers the shape the metadata promises (or no load)."""
    if example is None or len(example) == 0:
        return
    try:
        with pin_threads(1):
            out = model.predict_pipeline(example)
    except Exception as exc:  # the model's own example: a failure here fails every request
        raise ModelLoadError(
            f"{uri}: the model fails on its own input example: {type(exc).__name__}: {exc}"
        ) from None
    want = (len(example), len(model.outputs))
    if out.shape != want:
        raise ModelLoadError(
            f"{uri}: the model answers shape {list(out.shape)} for {len(example)} example rows; task "
            f"{model.task} with outputs {list(model.outputs)} needs {list(want)}"
        )


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
    uri: str, pipeline: Any, meta: dict[str, Any], given: Sequence[str] | None, task: Task
) -> tuple[str, ...]:
    classes = list(getattr(pipeline, "classes_", []))
    names = given or meta.get("class_names")
    if names is None:
        if all(isinstance(c, str) for c in classes) and classes:
            names = classes
        elif _zero_one(classes):
            names = DEFAULT_BINARY_CLASSES
        else:
            names = [str(c) for c in classes]
    if not isinstance(names, list | tuple):
        raise ModelLoadError(f"{uri}: metadata.class_names must be a list, got {names!r}")
    names = tuple(str(n) for n in names)
    if classes and len(names) != len(classes):
        raise ModelLoadError(f"{uri}: {len(names)} class names {names} for {len(classes)} model classes")
    if len(set(names)) != len(names):
        raise ModelLoadError(f"{uri}: class names {names} are not distinct")
    if task == "binary" and len(names) != 2:
        raise ModelLoadError(
            f"{uri}: task binary (metadata.task absent or binary) but {len(names)} classes {names}; "
            "a model of more classes needs metadata.task: multiclass"
        )
    if len(names) < 2:
        raise ModelLoadError(f"{uri}: a classifier needs at least 2 classes, got {names}")
    return names


def _zero_one(classes: list[Any]) -> bool:
    try:
        return [int(c) for c in classes] == [0, 1]
    except (TypeError, ValueError):
        return False


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
