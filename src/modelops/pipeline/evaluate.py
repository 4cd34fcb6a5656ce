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

from modelops.config import EvaluateParams, ModelParams
from modelops.pipeline import dataset
from modelops.pipeline.train import load_pipeline, model_dir, pinned_threads

CURVE_POINTS = 200


def metrics_file(name: str) -> Path:
    """Deterministic quality metrics of a model."""
    return model_dir(name) / "metrics.json"


def latency_file(name: str) -> Path:
    """Predict latency of a packaged model: varies between runs, so git-ignored, not a DVC output."""
    return model_dir(name) / "latency.json"


def plots_dir(name: str) -> Path:
    """DVC plot data and PNGs of a model."""
    return model_dir(name) / "plots"


def write_json(path: Path, payload: Any) -> None:
    """Stable JSON (sorted keys, trailing newline), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def quality(y: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The metrics the gate and the report compare, rounded so that files stay readable."""
    pred = (proba >= threshold).astype(int)
    values = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "roc_auc": skm.roc_auc_score(y, proba),
        "log_loss": skm.log_loss(y, proba, labels=[0, 1]),
    }
    return {k: round(float(v), 6) for k, v in values.items()}


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
    pipeline: Pipeline, x: pd.DataFrame, y: np.ndarray, params: EvaluateParams, seed: int
) -> list[dict[str, float | str]]:
    """Permutation importance (ROC AUC drop) of each raw feature on a seeded test sample."""
    if len(x) > params.importance_rows:
        picked = np.random.default_rng(seed).choice(len(x), params.importance_rows, replace=False)
        picked.sort()
        x, y = x.iloc[picked], y[picked]
    result = permutation_importance(
        pipeline,
        x,
        y,
        scoring="roc_auc",
        n_repeats=params.importance_repeats,
        random_state=seed,
        n_jobs=1,
    )
    ranked = sorted(zip(x.columns, result.importances_mean, strict=True), key=lambda t: -t[1])
    return [{"feature": f, "importance": round(float(v), 6)} for f, v in ranked]


def latency(pipeline: Pipeline, x: pd.DataFrame, params: EvaluateParams) -> dict[str, float]:
    """Median predict_proba time for one row and for a batch, in milliseconds."""
    return paired_latency([pipeline], x, params)[0]


def paired_latency(
    pipelines: list[Pipeline], x: pd.DataFrame, params: EvaluateParams
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
            pipeline.predict_proba(frame)  # warm-up
        times: list[list[float]] = [[] for _ in pipelines]
        for repeat in range(params.latency_repeats):
            order = range(len(pipelines)) if repeat % 2 == 0 else reversed(range(len(pipelines)))
            for i in order:
                start = time.perf_counter()
                pipelines[i].predict_proba(frame)
                times[i].append(time.perf_counter() - start)
        for i, samples in enumerate(times):
            medians[i][key] = round(float(np.median(samples) * 1000), 4)
    for m in medians:
        m |= {
            "batch_rows": len(batch),
            "batch_rows_per_s": round(len(batch) / (m["predict_batch_ms"] / 1000), 1),
        }
    return medians


def evaluate(
    name: str, model: ModelParams, params: EvaluateParams, test_file: Path = dataset.TEST_FILE
) -> dict[str, Any]:
    """Write metrics.json and the plot data/PNGs of one model."""
    from modelops.pipeline import plots
    from modelops.pipeline.prepare import read_split

    frame = read_split(test_file)
    x, y = dataset.to_features(frame), dataset.to_target(frame).to_numpy()
    pipeline = load_pipeline(name)
    with pinned_threads(model.threads):
        proba = pipeline.predict_proba(x)[:, 1]
        ranked = importance(pipeline, x, y, params, model.seed)
    scores = quality(y, proba) | {"test_rows": len(y), "positive_rate": round(float(y.mean()), 6)}
    out = plots_dir(name)
    data = curves(y, proba)
    write_json(out / "roc.json", data["roc"])
    write_json(out / "prc.json", data["prc"])
    write_json(out / "importance.json", ranked)
    confusion = pd.DataFrame(
        {
            "actual": np.where(y == 1, dataset.POSITIVE, "good"),
            "predicted": np.where(proba >= 0.5, dataset.POSITIVE, "good"),
        }
    )
    confusion.to_csv(out / "confusion.csv", index=False, lineterminator="\n")
    plots.render_all(out, data, y, proba, ranked, title=name)
    write_json(metrics_file(name), scores)
    return {"metrics": scores}
