"""The report's plots of one model, per task, champion and challenger on the same axes.

binary: ROC and precision-recall overlaid, a confusion matrix each; multiclass: a confusion
matrix each; regression: predicted vs actual overlaid and the residuals of both. Every task adds
the challenger's permutation importance, which its evaluate stage already computed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from modelops.declarations import Dataset
from modelops.review.render import Side


def _binary(out: Path, sides: list[Side], y: np.ndarray, files: dict[str, str], prefix: str) -> None:
    from modelops.pipeline import plots
    from modelops.pipeline.evaluate import curves

    data = {s.label: curves(y, _positive(s.predicted)) for s in sides}
    plots.curve({k: v["roc"] for k, v in data.items()}, "fpr", "tpr", "ROC", out / "roc.png")
    files["ROC"] = f"{prefix}roc.png"
    plots.curve(
        {k: v["prc"] for k, v in data.items()}, "recall", "precision", "Precision-recall", out / "prc.png"
    )
    files["Precision-recall"] = f"{prefix}prc.png"


def _positive(predicted: np.ndarray | None) -> np.ndarray:
    assert predicted is not None
    return predicted[:, 1] if predicted.ndim == 2 else predicted


def _picked(task: str, predicted: np.ndarray) -> np.ndarray:
    """The class each row is assigned: the metrics' 0.5 threshold for binary, argmax otherwise."""
    if task == "binary":
        return (_positive(predicted) >= 0.5).astype(int)
    return predicted.argmax(axis=1)


def render_plots(
    out: Path,
    challenger: Side,
    champion: Side | None,
    y: np.ndarray,
    ds: Dataset,
    importance_file: Path,
    prefix: str = "",
) -> dict[str, str]:
    """Write the task's PNGs into `out`; title -> path as report.md links it (`prefix` + file name)."""
    from modelops.pipeline import plots
    from modelops.pipeline.evaluate import residual_points

    files: dict[str, str] = {}
    sides = [s for s in (challenger, champion) if s is not None and s.predicted is not None]
    if not sides:
        return files
    out.mkdir(parents=True, exist_ok=True)
    if ds.task == "regression":
        points = {s.label: residual_points(y, s.predicted) for s in sides}
        plots.scatter(points, "Predicted vs actual", out / "predicted_actual.png")
        files["Predicted vs actual"] = f"{prefix}predicted_actual.png"
        plots.residuals(
            {k: [p["predicted"] - p["actual"] for p in v] for k, v in points.items()},
            "Residuals",
            out / "residuals.png",
        )
        files["Residuals"] = f"{prefix}residuals.png"
    else:
        if ds.task == "binary":
            _binary(out, sides, y, files, prefix)
        classes = list(ds.classes or ())
        for s in sides:
            name = "confusion-challenger.png" if s is challenger else "confusion-champion.png"
            plots.confusion(y, _picked(ds.task, s.predicted), classes, f"Confusion: {s.label}", out / name)
            files[f"Confusion: {s.label}"] = f"{prefix}{name}"
    if importance_file.exists():
        ranked = json.loads(importance_file.read_text())
        plots.importance(ranked, "Feature importance: challenger", out / "importance.png")
        files["Feature importance (challenger)"] = f"{prefix}importance.png"
    return files
