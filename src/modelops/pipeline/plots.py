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


def confusion(y: np.ndarray, proba: np.ndarray, title: str, path: Path) -> None:
    """Confusion matrix at the 0.5 threshold, with counts."""
    matrix = confusion_matrix(y, (proba >= 0.5).astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(3.5, 3.2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["good", "bad"],
        yticklabels=["good", "bad"],
        xlabel="predicted",
        ylabel="actual",
        title=title,
    )
    _save(fig, path)


def importance(ranked: list[dict[str, float | str]], title: str, path: Path) -> None:
    """Horizontal bars of permutation importance, most important on top."""
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    names = [str(r["feature"]) for r in ranked][::-1]
    ax.barh(names, [float(r["importance"]) for r in ranked][::-1])
    ax.set(xlabel="ROC AUC drop when shuffled", title=title)
    fig.tight_layout()
    _save(fig, path)


def render_all(out: Path, data: dict, y: np.ndarray, proba: np.ndarray, ranked: list, title: str) -> None:
    """The four evaluation plots of one model."""
    curve({title: data["roc"]}, "fpr", "tpr", "ROC", out / "roc.png")
    curve({title: data["prc"]}, "recall", "precision", "Precision-recall", out / "prc.png")
    confusion(y, proba, f"Confusion: {title}", out / "confusion.png")
    importance(ranked, f"Feature importance: {title}", out / "importance.png")


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
