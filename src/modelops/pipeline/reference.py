"""Reference statistics: what "normal" traffic looks like for one packaged model.

Written by the package stage as ``reference.json`` inside the model directory, so it is covered by
the content hash and travels with the model to ``<store>/<model>/<sha256>/``: `modelops monitor`
compares logged traffic with the reference of the exact model that served it.

- **Features** come from the training split: the distribution the model learned from, and the
  largest sample we have.
- **Predictions** come from the test split: on rows it was fitted to, a model is more confident
  than on rows it has never seen, which is what serving sees; a training-split reference would
  make prediction drift fire on healthy traffic.
- **Test metrics** (``test_metrics``: the task's metrics as evaluate wrote them to metrics.json):
  what the model's answers were worth on the test split, the baseline `modelops monitor` holds
  online metrics from ground-truth feedback to (concept drift). A reference packaged before they
  were written has no such key; monitor then reports online metrics without a concept verdict.

The file is deterministic (same data, params and code: same bytes; dvc.lock depends on it): counts
instead of proportions, cut points rounded to 6 significant digits *before* counting, a seeded
sample, sorted keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelops.declarations import Dataset
from modelops.errors import ModelopsError
from modelops.pipeline import dataset

REFERENCE_FILE = "reference.json"
FORMAT = 1
BINS = 10  # quantile bins per numeric distribution (fewer when values repeat)
SAMPLE = 1000  # values kept per numeric distribution for the two-sample KS test


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def cuts(values: np.ndarray, bins: int = BINS) -> list[float]:
    """Inner bin edges at the reference's quantiles; the outer bins reach -inf and +inf.

    Repeated quantiles (discrete features such as `time`) collapse, so a bin is never empty by
    construction.
    """
    if len(values) == 0:
        return []
    qs = np.quantile(values, np.arange(1, bins) / bins)
    return sorted({_round(q) for q in qs})


def bin_counts(values: np.ndarray, edges: list[float]) -> list[int]:
    """Counts per bin: (-inf, edges[0]), [edges[0], edges[1]), ..., [edges[-1], inf)."""
    index = np.searchsorted(np.asarray(edges, dtype="float64"), values, side="right")
    return [int(c) for c in np.bincount(index, minlength=len(edges) + 1)]


def numeric(values: pd.Series, rng: np.random.Generator, bins: int = BINS) -> dict[str, Any]:
    """Bins, counts, missing count and a sorted seeded sample of one numeric column."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    present = x[np.isfinite(x)]
    edges = cuts(present, bins)
    sample = present if len(present) <= SAMPLE else rng.choice(present, SAMPLE, replace=False)
    return {
        "kind": "numeric",
        "rows": len(x),
        "missing": int(len(x) - len(present)),
        "cuts": edges,
        "counts": bin_counts(present, edges),
        "sample": sorted(_round(v) for v in sample),
    }


def categorical(values: pd.Series, known: tuple[str, ...] = ()) -> dict[str, Any]:
    """Counts per category (the contract's categories, even unseen ones, plus any observed)."""
    present = values[values.notna()].astype(str)
    observed = present.value_counts()
    names = list(known) + sorted(set(observed.index) - set(known))
    return {
        "kind": "categorical",
        "rows": len(values),
        "missing": int(len(values) - len(present)),
        "counts": {name: int(observed.get(name, 0)) for name in names},
    }


def predictions(ds: Dataset, predicted: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """What the model answered on the test split, per task.

    Classification: predicted-class counts (argmax, as the server predicts) and the distribution of
    one score: the positive class's probability (binary) or the top probability (multiclass).
    Regression: the distribution of the predicted value.
    """
    if ds.task == "regression":
        values = pd.Series(np.round(np.asarray(predicted, dtype="float64").ravel(), 6))
        return {"rows": len(values), "task": ds.task, "value": numeric(values, rng)}
    classes = tuple(ds.classes or ())
    picked = predicted.argmax(axis=1)
    out: dict[str, Any] = {
        "rows": len(predicted),
        "task": ds.task,
        "classes": {c: int((picked == i).sum()) for i, c in enumerate(classes)},
    }
    if ds.task == "binary":
        out["positive_class"] = ds.positive
        out["probability"] = numeric(pd.Series(np.round(predicted[:, 1], 6)), rng)
    else:
        out["score"] = "top probability"
        out["probability"] = numeric(pd.Series(np.round(predicted.max(axis=1), 6)), rng)
    return out


def build(
    pipeline: Any,
    ds: Dataset,
    train: pd.DataFrame,
    test: pd.DataFrame,
    seed: int,
    test_metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The reference of a fitted pipeline: features from `train`, predictions on `test`, and the
    metrics it scored on `test` if given."""
    from modelops.pipeline.evaluate import predict

    predicted = predict(pipeline, ds.task, dataset.to_features(ds, test))
    return of(ds, train, predicted, seed, test_metrics)


def of(
    ds: Dataset,
    features: pd.DataFrame,
    predicted: np.ndarray,
    seed: int,
    test_metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A reference from feature rows and the predictions (probabilities in `classes` order, or
    values), with the test split's metrics when given."""
    rng = np.random.default_rng(seed)
    stats: dict[str, Any] = {}
    for col, spec in ds.features.items():
        if spec.kind == "numeric":
            stats[col] = numeric(features[col], rng)
        else:
            stats[col] = categorical(features[col], tuple(spec.values))
    out = {
        "format": FORMAT,
        "dataset": ds.name,
        "features": stats,
        "prediction": predictions(ds, predicted, rng),
        "source": {"features": "train split", "predictions": "test split"},
    }
    if test_metrics is not None:
        out["test_metrics"] = {k: float(v) for k, v in sorted(test_metrics.items())}
        out["source"]["test_metrics"] = "test split"
    return out


def write(path: Path, reference: dict[str, Any]) -> None:
    """Stable JSON: sorted keys, fixed separators, trailing newline."""
    path.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")


class ReferenceError(ModelopsError):
    """A reference.json is missing or unreadable; the message names the file."""

    exit_code = 14  # as monitor.MonitorError: monitoring cannot run


def load(path: Path | str, text: str | None = None) -> dict[str, Any]:
    """Read and sanity-check a reference.json (from a path, or text fetched from a store)."""
    try:
        doc = json.loads(text if text is not None else Path(path).read_text())
    except FileNotFoundError:
        raise ReferenceError(
            f"{path}: no {REFERENCE_FILE}; the model was packaged before reference statistics "
            "existed: re-run `dvc repro` and promote it again to monitor it"
        ) from None
    except ValueError as exc:
        raise ReferenceError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ReferenceError(f"{path}: reference format {got!r}, this modelops reads format {FORMAT}")
    return doc
