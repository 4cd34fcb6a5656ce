"""Small real multiclass and regression models, packaged the way the training side will package them.

Plain scikit-learn and MLflow (not `modelops.pipeline`, which is being rewritten): a Pipeline of
ColumnTransformer(numeric impute [+ scale] | categorical impute + one-hot) and an estimator, fitted on
a few hundred generated rows of 3 numeric and 1 categorical column (with missing values), saved by
`mlflow.sklearn.save_model` with MLmodel metadata `task` and `class_names` or `target`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.serving.conftest import Packaged

NUMERIC = ("cement", "ratio", "age")  # ratio: water/cement, a small-scale column
CATEGORICAL = ("mix",)
FEATURES = (*NUMERIC, *CATEGORICAL)
MIXES = ("A", "B", "C")
GRADES = ("F", "L", "M", "VF")  # string classes, as the multiclass data will have
TARGET = "compressive_strength"
VERSION = "v1"


def _estimators() -> dict[str, tuple[str, Callable[[], Any]]]:
    """kind -> (task, a fresh estimator); small enough to train in well under a second each."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge

    hgb = {"max_iter": 30, "max_leaf_nodes": 15, "early_stopping": False, "random_state": 0}
    forest = {"n_estimators": 20, "max_depth": 6, "random_state": 0, "n_jobs": 1}
    return {
        "hgb_regressor": ("regression", lambda: HistGradientBoostingRegressor(**hgb)),
        "random_forest_regressor": ("regression", lambda: RandomForestRegressor(**forest)),
        "extra_trees_regressor": ("regression", lambda: ExtraTreesRegressor(**forest)),
        "ridge": ("regression", lambda: Ridge(alpha=1.0)),
        "hgb_classifier": ("multiclass", lambda: HistGradientBoostingClassifier(**hgb)),
        "random_forest_classifier": ("multiclass", lambda: RandomForestClassifier(**forest)),
        "extra_trees_classifier": ("multiclass", lambda: ExtraTreesClassifier(**forest)),
        "logistic_regression": ("multiclass", lambda: LogisticRegression(max_iter=2000)),
    }


KINDS = tuple(_estimators())


@dataclass
class TaskPackaged(Packaged):
    """A packaged model of another task; `reference` is its pipeline on a DataFrame of the rows."""

    task: str = "binary"
    kind: str = ""

    def reference(self, rows: list[list]) -> np.ndarray:
        """predict_proba (n, classes) for classifiers, predict as (n, 1) for regressors."""
        frame = pd.DataFrame([[np.nan if v is None else v for v in r] for r in rows], columns=list(FEATURES))
        if self.task == "regression":
            return np.asarray(self.pipeline.predict(frame), dtype=np.float64).reshape(-1, 1)
        return self.pipeline.predict_proba(frame)


def generate(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features (about 5% missing per column), a regression target and a 4-grade label from it."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "cement": rng.uniform(100, 500, n).round(1),
            "ratio": rng.uniform(0.3, 0.8, n).round(3),
            "age": rng.choice([1.0, 3.0, 7.0, 14.0, 28.0, 56.0, 90.0, 180.0, 365.0], n),
            "mix": rng.choice(np.array(MIXES, dtype=object), n),
        }
    )
    effect = x["mix"].map({"A": 0.0, "B": 5.0, "C": -4.0}).to_numpy()
    y = 0.06 * x["cement"] - 40 * x["ratio"] + 8 * np.log(x["age"]) + effect + rng.normal(0, 2, n)
    y = y.to_numpy()
    grade = np.asarray(GRADES, dtype=object)[np.digitize(y, np.quantile(y, [0.25, 0.5, 0.75]))]
    for column in FEATURES:
        x.loc[rng.random(n) < 0.05, column] = np.nan
    return x, y, grade


def pipeline_for(estimator: Any, scale: bool) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [("impute", SimpleImputer(strategy="median"))] + (
        [("scale", StandardScaler())] if scale else []
    )
    categorical = [
        ("impute", SimpleImputer(strategy="most_frequent")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ]
    features = ColumnTransformer(
        [("num", Pipeline(numeric), list(NUMERIC)), ("cat", Pipeline(categorical), list(CATEGORICAL))]
    )
    return Pipeline([("features", features), ("model", estimator)])


def build(kind: str, root: Path) -> TaskPackaged:
    """Train, save with MLflow (metadata as the training side writes it), hash and load one model."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from modelops_serving.integrity import tree_hash
    from modelops_serving.model import load_model

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    task, make = _estimators()[kind]
    x, y, grade = generate(400, seed=1)
    linear = kind in ("ridge", "logistic_regression")
    pipeline = pipeline_for(make(), scale=linear).fit(x, y if task == "regression" else grade)
    if task == "regression":
        output, predict_fn, metadata = pipeline.predict(x), "predict", {"task": task, "target": TARGET}
    else:
        classes = [str(c) for c in pipeline.classes_]
        output, predict_fn = pipeline.predict_proba(x), "predict_proba"
        metadata = {"task": task, "class_names": classes}
    out = root / kind
    mlflow.sklearn.save_model(
        pipeline,
        out,
        serialization_format="pickle",
        signature=infer_signature(x, output),
        input_example=x.head(5),
        pyfunc_predict_fn=predict_fn,
        metadata=metadata,
        pip_requirements=["scikit-learn"],  # no requirement inference: a subprocess per model
    )
    pool, _, _ = generate(300, seed=2)
    rows = [
        [None if isinstance(v, float) and v != v else v for v in r]
        for r in pool.astype(object).values.tolist()
    ]
    content_hash = tree_hash(out)
    name = kind.replace("_", "-")
    model = load_model(str(out), expected_hash=content_hash, name=name, version=VERSION)
    return TaskPackaged(
        out, content_hash, pipeline, rows, model, name=name, version=VERSION, task=task, kind=kind
    )
