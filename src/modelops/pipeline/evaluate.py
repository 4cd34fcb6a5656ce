"""Stage 5, evaluate: quality metrics and plot data for one model on the test split.

Everything written here is deterministic and part of the reproducibility contract (same data,
params and code: same bytes). Latency, a timing that differs on every run, is measured by the
package stage on the packaged model and kept out of dvc.lock (see `latency`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from modelops import tasks
from modelops.config import EvaluateParams, ModelParams
from modelops.declarations import Dataset
from modelops.pipeline import dataset
from modelops.pipeline.outputs import metrics_file, plots_dir
from modelops.pipeline.train import load_pipeline, pinned_threads

CURVE_POINTS = 200


def write_json(path: Path, payload: Any) -> None:
    """Stable JSON (sorted keys, trailing newline), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def predict(pipeline: Pipeline, task: str, x: pd.DataFrame) -> np.ndarray:
    """What the metrics are computed on: class probabilities (n, classes), or predicted values."""
    if task == "regression":
        return np.asarray(pipeline.predict(x), dtype="float64")
    return np.asarray(pipeline.predict_proba(x), dtype="float64")


def quality(y: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Binary metrics from the positive class's probability (kept for callers that have one)."""
    return tasks.quality("binary", y, proba, threshold)


def _thin(frame: pd.DataFrame, points: int = CURVE_POINTS) -> list[dict[str, float]]:
    """Keep a curve's shape in at most `points` rows so plot files stay small."""
    if len(frame) > points:
        idx = np.unique(np.linspace(0, len(frame) - 1, points).round().astype(int))
        frame = frame.iloc[idx]
    return [{k: round(float(v), 6) for k, v in row.items()} for row in frame.to_dict("records")]


def curves(y: np.ndarray, proba: np.ndarray) -> dict[str, list[dict[str, float]]]:
    """ROC and precision-recall curves as DVC plot records."""
    fpr, tpr, _ = skm.roc_curve(y, proba)
    precision, recall, _ = skm.precision_recall_curve(y, proba)
    return {
        "roc": _thin(pd.DataFrame({"fpr": fpr, "tpr": tpr})),
        "prc": _thin(pd.DataFrame({"recall": recall[::-1], "precision": precision[::-1]})),
    }


def importance(
    pipeline: Pipeline,
    x: pd.DataFrame,
    y: np.ndarray,
    params: EvaluateParams,
    seed: int,
    task: str = "binary",
) -> list[dict[str, float | str]]:
    """Permutation importance (drop of the task's score) of each raw feature on a seeded test sample."""
    if len(x) > params.importance_rows:
        picked = np.random.default_rng(seed).choice(len(x), params.importance_rows, replace=False)
        picked.sort()
        x, y = x.iloc[picked], y[picked]
    result = permutation_importance(
        pipeline,
        x,
        y,
        scoring=tasks.scorer(task),
        n_repeats=params.importance_repeats,
        random_state=seed,
        n_jobs=1,
    )
    ranked = sorted(zip(x.columns, result.importances_mean, strict=True), key=lambda t: -t[1])
    return [{"feature": f, "importance": round(float(v), 6)} for f, v in ranked]


def latency(
    pipeline: Pipeline, x: pd.DataFrame, params: EvaluateParams, task: str = "binary"
) -> dict[str, float]:
    """Median predict time for one row and for a batch, in milliseconds."""
    return paired_latency([pipeline], x, params, task)[0]


def paired_latency(
    pipelines: list[Pipeline], x: pd.DataFrame, params: EvaluateParams, task: str = "binary"
) -> list[dict[str, float]]:
    """Latency of several models timed in turns (a, b, a, b, ...), one median each.

    Interleaving is what makes a ratio trustworthy on a shared machine: a burst of other work
    slows whichever model runs during it, so timing one model after the other can put a 2x
    "regression" on a model that is not slower at all.
    """
    batch = x.iloc[: params.latency_batch_rows]
    medians: list[dict[str, float]] = [{} for _ in pipelines]
    for key, frame in (("predict_single_ms", x.iloc[:1]), ("predict_batch_ms", batch)):
        for pipeline in pipelines:
            predict(pipeline, task, frame)  # warm-up
        times: list[list[float]] = [[] for _ in pipelines]
        for repeat in range(params.latency_repeats):
            order = range(len(pipelines)) if repeat % 2 == 0 else reversed(range(len(pipelines)))
            for i in order:
                start = time.perf_counter()
                predict(pipelines[i], task, frame)
                times[i].append(time.perf_counter() - start)
        for i, samples in enumerate(times):
            medians[i][key] = round(float(np.median(samples) * 1000), 4)
    for m in medians:
        m |= {
            "batch_rows": len(batch),
            "batch_rows_per_s": round(len(batch) / (m["predict_batch_ms"] / 1000), 1),
        }
    return medians


def _classification_plots(out: Path, ds: Dataset, y: np.ndarray, proba: np.ndarray, title: str) -> None:
    from modelops.pipeline import plots

    classes = list(ds.classes or ())
    picked = proba.argmax(axis=1)
    if ds.task == "binary":  # the threshold the metrics use, not argmax
        picked = (proba[:, 1] >= 0.5).astype(int)
        data = curves(y, proba[:, 1])
        write_json(out / "roc.json", data["roc"])
        write_json(out / "prc.json", data["prc"])
        plots.curve({title: data["roc"]}, "fpr", "tpr", "ROC", out / "roc.png")
        plots.curve({title: data["prc"]}, "recall", "precision", "Precision-recall", out / "prc.png")
    names = np.array(classes, dtype=object)
    confusion = pd.DataFrame({"actual": names[y], "predicted": names[picked]})
    confusion.to_csv(out / "confusion.csv", index=False, lineterminator="\n")
    plots.confusion(y, picked, classes, f"Confusion: {title}", out / "confusion.png")


def residual_points(y: np.ndarray, predicted: np.ndarray, points: int = 500) -> list[dict[str, float]]:
    """Predicted vs actual for at most `points` evenly spaced test rows (in test-split order)."""
    idx = np.unique(np.linspace(0, len(y) - 1, min(points, len(y))).round().astype(int)) if len(y) else []
    return [{"actual": round(float(y[i]), 6), "predicted": round(float(predicted[i]), 6)} for i in idx]


def _regression_plots(out: Path, y: np.ndarray, predicted: np.ndarray, title: str) -> None:
    from modelops.pipeline import plots

    points = residual_points(y, predicted)
    write_json(out / "predicted_actual.json", points)
    plots.scatter({title: points}, "Predicted vs actual", out / "predicted_actual.png")
    plots.residuals(
        {title: [p["predicted"] - p["actual"] for p in points]}, "Residuals", out / "residuals.png"
    )


def evaluate(
    name: str, model: ModelParams, ds: Dataset, params: EvaluateParams, test_file: Path | None = None
) -> dict[str, Any]:
    """Write metrics.json and the task's plot data/PNGs of one model."""
    from modelops.pipeline import plots
    from modelops.pipeline.prepare import read_split

    frame = read_split(test_file or ds.test_file)
    x, y = dataset.to_features(ds, frame), dataset.to_target(ds, frame).to_numpy()
    pipeline = load_pipeline(name)
    with pinned_threads(model.threads):
        predicted = predict(pipeline, ds.task, x)
        ranked = importance(pipeline, x, y, params, model.seed, ds.task)
    scores = tasks.quality(ds.task, y, predicted) | {"test_rows": len(y)}
    if ds.task == "binary":
        scores["positive_rate"] = round(float(y.mean()), 6)
    out = plots_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "importance.json", ranked)
    if ds.task == "regression":
        _regression_plots(out, y, predicted, name)
    else:
        _classification_plots(out, ds, y, predicted, name)
    plots.importance(ranked, f"Feature importance: {name}", out / "importance.png")
    write_json(metrics_file(name), scores)
    return {"metrics": scores}
