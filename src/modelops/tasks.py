"""What each task means: its metrics, which way they point, and the estimators that fit it.

Shared by the params schema (which checks an estimator fits its dataset's task), training,
evaluation, the gate and the report. scikit-learn is imported only when an estimator is built, so
checking params stays cheap in stages that never touch a model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

TASKS = ("binary", "multiclass", "regression")

# The metrics evaluate writes, the gate can bound and the report compares, per task.
METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
    "multiclass": ("accuracy", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
ALL_METRICS = tuple(dict.fromkeys(m for ms in METRICS.values() for m in ms))
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
# The metrics the PR report shows first, per task.
HEADLINE: dict[str, tuple[str, ...]] = {
    "binary": ("f1", "roc_auc", "log_loss"),
    "multiclass": ("accuracy", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}

# estimator name in params.yaml -> scikit-learn class, per kind of task
ESTIMATORS: dict[str, dict[str, str]] = {
    "hist_gradient_boosting": {
        "classification": "sklearn.ensemble.HistGradientBoostingClassifier",
        "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
    },
    "random_forest": {
        "classification": "sklearn.ensemble.RandomForestClassifier",
        "regression": "sklearn.ensemble.RandomForestRegressor",
    },
    "extra_trees": {
        "classification": "sklearn.ensemble.ExtraTreesClassifier",
        "regression": "sklearn.ensemble.ExtraTreesRegressor",
    },
    "logistic_regression": {"classification": "sklearn.linear_model.LogisticRegression"},
    "ridge": {"regression": "sklearn.linear_model.Ridge"},
}
LINEAR = frozenset({"logistic_regression", "ridge"})  # scaled numeric inputs; no n_jobs since sklearn 1.8


def family(task: str) -> str:
    """`classification` or `regression`: what decides which estimator class a name stands for."""
    return "regression" if task == "regression" else "classification"


def fitting(task: str) -> list[str]:
    """Estimator names that fit a task."""
    return [name for name, by in ESTIMATORS.items() if family(task) in by]


def estimator_class(name: str, task: str) -> type[BaseEstimator]:
    """The scikit-learn class behind an `estimator:` name for a task (KeyError if it does not fit)."""
    module, _, cls = ESTIMATORS[name][family(task)].rpartition(".")
    return getattr(importlib.import_module(module), cls)


def make_estimator(
    name: str, task: str, hyperparams: dict[str, Any], seed: int, threads: int
) -> BaseEstimator:
    """The configured estimator, seeded and with its thread count pinned where it has one."""
    estimator = estimator_class(name, task)(**hyperparams)
    names = estimator.get_params(deep=False)
    if "random_state" in names:
        estimator.set_params(random_state=seed)
    if "n_jobs" in names and name not in LINEAR:
        estimator.set_params(n_jobs=threads)
    return estimator


def quality(task: str, y: np.ndarray, predicted: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The task's metrics, rounded so files stay readable.

    `y` holds class indices for classification (positive = 1 for binary) or values for
    regression; `predicted` is the probability matrix (n, classes) or the predicted values.
    """
    from sklearn import metrics as skm

    if task == "regression":
        values = {
            "rmse": float(np.sqrt(skm.mean_squared_error(y, predicted))),
            "mae": skm.mean_absolute_error(y, predicted),
            "r2": skm.r2_score(y, predicted),
        }
    elif task == "binary":
        proba = predicted[:, 1] if predicted.ndim == 2 else predicted
        pred = (proba >= threshold).astype(int)
        values = {
            "accuracy": skm.accuracy_score(y, pred),
            "precision": skm.precision_score(y, pred, zero_division=0),
            "recall": skm.recall_score(y, pred, zero_division=0),
            "f1": skm.f1_score(y, pred, zero_division=0),
            "roc_auc": skm.roc_auc_score(y, proba),
            "log_loss": skm.log_loss(y, proba, labels=[0, 1]),
        }
    else:
        labels = list(range(predicted.shape[1]))
        pred = predicted.argmax(axis=1)
        values = {
            "accuracy": skm.accuracy_score(y, pred),
            "macro_f1": skm.f1_score(y, pred, average="macro", labels=labels, zero_division=0),
            "log_loss": skm.log_loss(y, predicted, labels=labels),
        }
    return {k: round(float(v), 6) for k, v in values.items()}


def scorer(task: str) -> str:
    """The scikit-learn scoring name permutation importance uses, per task."""
    return {"binary": "roc_auc", "multiclass": "neg_log_loss", "regression": "neg_root_mean_squared_error"}[
        task
    ]
