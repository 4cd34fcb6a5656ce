"""PNG plots of a model's evaluation: small, deterministic files that DVC, MLflow and CML can show."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import confusion_matrix

# No timestamps or version strings in PNG metadata: same inputs, same bytes.
_PNG = {"format": "png", "dpi": 80, "metadata": {"Software": None}}


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, **_PNG)
    plt.close(fig)
    tmp.replace(path)


def curve(series: dict[str, list[dict[str, float]]], x: str, y: str, title: str, path: Path) -> None:
    """One or more curves (e.g. champion and challenger) on the same axes."""
    fig, ax = plt.subplots(figsize=(4, 4))
    for label, points in series.items():
        ax.plot([p[x] for p in points], [p[y] for p in points], label=label)
    if x == "fpr":
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel=x, ylabel=y, title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right" if x == "fpr" else "lower left")
    _save(fig, path)


def confusion(y: np.ndarray, predicted: np.ndarray, classes: list[str], title: str, path: Path) -> None:
    """Confusion matrix with counts; `y` and `predicted` are class indices into `classes`."""
    k = len(classes)
    matrix = confusion_matrix(y, predicted, labels=list(range(k)))
    fig, ax = plt.subplots(figsize=(max(3.5, 0.7 * k + 2), max(3.2, 0.7 * k + 1.7)))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    ticks = list(range(k))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=classes, yticklabels=classes)
    ax.set(xlabel="predicted", ylabel="actual", title=title)
    _save(fig, path)


def scatter(series: dict[str, list[dict[str, float]]], title: str, path: Path) -> None:
    """Predicted against actual values (regression), one colour per model, with the diagonal."""
    fig, ax = plt.subplots(figsize=(4, 4))
    lows, highs = [], []
    for label, points in series.items():
        xs, ys = [p["actual"] for p in points], [p["predicted"] for p in points]
        ax.scatter(xs, ys, s=6, alpha=0.5, label=label)
        lows.append(min(xs + ys))
        highs.append(max(xs + ys))
    if lows:
        ax.plot([min(lows), max(highs)], [min(lows), max(highs)], linestyle=":", color="grey")
    ax.set(xlabel="actual", ylabel="predicted", title=title)
    ax.legend(loc="upper left", fontsize=7)
    _save(fig, path)


def residuals(series: dict[str, list[float]], title: str, path: Path) -> None:
    """Histogram of residuals (predicted - actual), one per model."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    every = np.concatenate([np.asarray(v, dtype="float64") for v in series.values()] or [np.zeros(1)])
    # Shared edges, so models compare bin for bin; one bin when the residuals are (nearly) constant,
    # where 30 equal bins would be narrower than float precision.
    spread = float(np.ptp(every)) if every.size else 0.0
    edges = (
        np.histogram_bin_edges(every, bins=30) if spread > 1e-9 * max(1.0, float(np.abs(every).max())) else 1
    )
    for label, values in series.items():
        ax.hist(values, bins=edges, alpha=0.5, label=label)
    ax.axvline(0, linestyle=":", color="grey")
    ax.set(xlabel="predicted - actual", ylabel="rows", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def importance(ranked: list[dict[str, float | str]], title: str, path: Path) -> None:
    """Horizontal bars of permutation importance, most important on top."""
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    names = [str(r["feature"]) for r in ranked][::-1]
    ax.barh(names, [float(r["importance"]) for r in ranked][::-1])
    ax.set(xlabel="score drop when shuffled", title=title)
    fig.tight_layout()
    _save(fig, path)


def distribution(
    labels: list[str], reference: list[float], current: list[float], title: str, path: Path
) -> None:
    """Reference vs current shares per bin or category, side by side (`modelops monitor`)."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(labels) + 1.5), 3.2))
    at = np.arange(len(labels))
    ax.bar(at - 0.2, reference, width=0.4, label="reference")
    ax.bar(at + 0.2, current, width=0.4, label="current")
    ax.set_xticks(at, labels, rotation=45, ha="right", fontsize=7)
    ax.set(ylabel="share of rows", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
