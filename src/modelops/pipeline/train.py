"""Stage 4, train: a scikit-learn Pipeline (preprocessing + estimator) built only from params.yaml."""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelops.config import ESTIMATORS, ModelParams
from modelops.pipeline import dataset


def model_dir(name: str) -> Path:
    """Where everything a model produces lives."""
    return Path("models") / name


def pipeline_file(name: str) -> Path:
    """The trained pipeline, as the train stage leaves it for evaluate and package."""
    return model_dir(name) / "pipeline.pkl"


def estimator_class(kind: str) -> type[BaseEstimator]:
    """The scikit-learn class behind an `estimator:` name in params.yaml."""
    module, _, cls = ESTIMATORS[kind].rpartition(".")
    return getattr(importlib.import_module(module), cls)


def make_estimator(params: ModelParams) -> BaseEstimator:
    """The configured estimator, seeded and with its thread count pinned where it has one."""
    estimator = estimator_class(params.estimator)(**params.hyperparams)
    names = estimator.get_params(deep=False)
    if "random_state" in names:
        estimator.set_params(random_state=params.seed)
    if "n_jobs" in names and params.estimator != "logistic_regression":  # no effect since sklearn 1.8
        estimator.set_params(n_jobs=params.threads)
    return estimator


def build_pipeline(params: ModelParams) -> Pipeline:
    """Impute, encode (and scale, for linear models), then the estimator."""
    numeric = [("impute", SimpleImputer(strategy="median"))]
    if params.estimator == "logistic_regression":
        numeric.append(("scale", StandardScaler()))
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    features = ColumnTransformer(
        [
            ("numeric", Pipeline(numeric), list(dataset.NUMERIC)),
            ("categorical", categorical, list(dataset.CATEGORICAL)),
        ],
        verbose_feature_names_out=False,
    )
    return Pipeline([("features", features), ("model", make_estimator(params))])


def pinned_threads(threads: int):
    """Limit BLAS/OpenMP pools so results and timings do not depend on the machine's core count."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def train(name: str, params: ModelParams, train_file: Path = dataset.TRAIN_FILE) -> Pipeline:
    """Fit the model's pipeline on the train split and pickle it atomically."""
    from modelops.pipeline.prepare import read_split

    frame = read_split(train_file)
    pipeline = build_pipeline(params)
    with pinned_threads(params.threads):
        pipeline.fit(dataset.to_features(frame), dataset.to_target(frame))
    out = pipeline_file(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(pipeline, protocol=5))
    tmp.replace(out)
    return pipeline


def load_pipeline(name: str) -> Pipeline:
    """The pipeline the train stage wrote (only ever our own file, produced by this repo's DVC)."""
    from modelops.errors import PipelineError

    path = pipeline_file(name)
    if not path.exists():
        raise PipelineError(f"{path}: not found (run `modelops train {name}` or `dvc repro`)")
    return pickle.loads(path.read_bytes())
