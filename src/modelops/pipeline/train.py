"""Stage 4, train: a scikit-learn Pipeline (preprocessing + estimator) built only from params.yaml."""

from __future__ import annotations

import pickle
from pathlib import Path

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelops import tasks
from modelops.config import ModelParams
from modelops.declarations import Dataset
from modelops.pipeline import dataset
from modelops.pipeline.outputs import pipeline_file


def build_pipeline(params: ModelParams, ds: Dataset) -> Pipeline:
    """Impute, encode (and scale, for linear models), then the estimator for the dataset's task."""
    numeric = [("impute", SimpleImputer(strategy="median"))]
    if params.estimator in tasks.LINEAR:
        numeric.append(("scale", StandardScaler()))
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    features = ColumnTransformer(
        [
            ("numeric", Pipeline(numeric), list(ds.numeric)),
            ("categorical", categorical, list(ds.categorical)),
        ],
        verbose_feature_names_out=False,
    )
    estimator = tasks.make_estimator(
        params.estimator, ds.task, params.hyperparams, params.seed, params.threads
    )
    return Pipeline([("features", features), ("model", estimator)])


def pinned_threads(threads: int):
    """Limit BLAS/OpenMP pools so results and timings do not depend on the machine's core count."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def train(name: str, params: ModelParams, ds: Dataset, train_file: Path | None = None) -> Pipeline:
    """Fit the model's pipeline on its dataset's train split and pickle it atomically."""
    from modelops.pipeline.prepare import read_split

    frame = read_split(train_file or ds.train_file)
    pipeline = build_pipeline(params, ds)
    with pinned_threads(params.threads):
        pipeline.fit(dataset.to_features(ds, frame), dataset.to_target(ds, frame))
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
