"""Seeded bootstrap intervals for every task metric: one model's, or the paired difference of two.

The PR report puts an interval on each challenger-vs-champion delta (the same test rows, resampled
together: a paired bootstrap), and `modelops monitor` on each online metric. A replicate is a row
weight vector (how often each row was drawn), so every metric is a weighted sum over rows computed
for many replicates at once with numpy, instead of calling scikit-learn a thousand times. With all
weights 1 each function gives exactly `tasks.quality` (tests hold them to it). The same inputs, seed
and numpy give the same bytes, so reports stay identical across clones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from modelops import tasks

ROUNDS, SEED, LEVEL = 1000, 0, 0.95
_CELLS = 2_000_000  # replicate x row weights held at once: bounds memory on large test splits


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap percentile interval."""

    value: float
    low: float
    high: float

    def excludes(self, x: float = 0.0) -> bool:
        """The interval lies wholly above or below `x`."""
        return self.low > x or self.high < x

    @property
    def significant(self) -> bool:
        """For a difference: the interval excludes 0."""
        return self.excludes(0.0)

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def weights(n: int, rounds: int = ROUNDS, seed: int = SEED) -> Iterator[np.ndarray]:
    """Bootstrap replicates as row-count matrices (replicates, n), in chunks, from one seeded stream."""
    if n < 1:
        raise ValueError("cannot bootstrap zero rows")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(rounds, _CELLS // n))
    done = 0
    while done < rounds:
        size = min(chunk, rounds - done)
        drawn = rng.integers(0, n, size=(size, n))
        flat = (drawn + n * np.arange(size)[:, None]).ravel()
        yield np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float64)
        done += size


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _clipped(p: np.ndarray) -> np.ndarray:
    """Probabilities as scikit-learn's log loss sees them: clipped to [eps, 1 - eps]."""
    eps = np.finfo(p.dtype).eps
    return np.clip(p, eps, 1 - eps)


def _auc(w: np.ndarray, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Weighted ROC AUC per replicate: the chance a positive outranks a negative, ties counting half."""
    order = np.argsort(score, kind="stable")
    s, pos = score[order], y[order] == 1
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ws = w[:, order]
    neg_w = np.add.reduceat(ws * ~pos, starts, axis=1)
    pos_w = np.add.reduceat(ws * pos, starts, axis=1)
    below = np.cumsum(neg_w, axis=1) - neg_w
    num = (pos_w * (below + 0.5 * neg_w)).sum(axis=1)
    return _ratio(num, pos_w.sum(axis=1) * neg_w.sum(axis=1))


def _f1(w: np.ndarray, predicted_k: np.ndarray, true_k: np.ndarray) -> np.ndarray:
    """F1 of one class per replicate: 2 tp / (predicted + true), 0 when both are empty."""
    tp = w @ (predicted_k & true_k)
    return _ratio(2 * tp, w @ predicted_k + w @ true_k)


def replicate_metrics(
    task: str, y: np.ndarray, predicted: np.ndarray, metrics: tuple[str, ...], w: np.ndarray
) -> dict[str, np.ndarray]:
    """Each metric under each weight vector (a row of `w`): {metric: values (replicates,)}."""
    y = np.asarray(y)
    total = w.sum(axis=1)
    out: dict[str, np.ndarray] = {}
    if task == "regression":
        yf, pf = y.astype(np.float64), np.asarray(predicted, dtype=np.float64)
        err = pf - yf
        sq = w @ (err * err)
        out["rmse"] = np.sqrt(sq / total)
        out["mae"] = (w @ np.abs(err)) / total
        mean = (w @ yf) / total
        tot = (w * (yf[None, :] - mean[:, None]) ** 2).sum(axis=1)
        out["r2"] = 1.0 - _ratio(sq, tot)
        return {m: out[m] for m in metrics}
    p = np.asarray(predicted, dtype=np.float64)
    yi = y.astype(np.int64)
    if task == "binary":
        p = p[:, 1] if p.ndim == 2 else p
        p = np.column_stack([1.0 - p, p])
    probs = _clipped(p)
    out["log_loss"] = (w @ -np.log(probs[np.arange(len(yi)), yi])) / total
    if task == "binary":
        proba = p[:, 1]
        pred, true = proba >= 0.5, yi == 1
        hit = pred == true
        out["accuracy"] = (w @ hit) / total
        tp = w @ (pred & true)
        out["precision"] = _ratio(tp, w @ pred)
        out["recall"] = _ratio(tp, w @ true)
        out["f1"] = _f1(w, pred, true)
        if "roc_auc" in metrics:
            out["roc_auc"] = _auc(w, yi, proba)
    else:
        pred = p.argmax(axis=1)
        out["accuracy"] = (w @ (pred == yi)) / total
        out["macro_f1"] = np.mean([_f1(w, pred == k, yi == k) for k in range(p.shape[1])], axis=0)
    return {m: out[m] for m in metrics}


def _interval(point: float, values: np.ndarray, level: float) -> Interval:
    tail = (1.0 - level) / 2
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return Interval(round(float(point), 6), round(float(low), 6), round(float(high), 6))


def _collect(
    task: str, y: np.ndarray, sides: list[np.ndarray], metrics: tuple[str, ...], rounds: int, seed: int
) -> tuple[list[dict[str, float]], list[dict[str, np.ndarray]]]:
    """Point metrics of each side, and each side's replicate values under the same weights."""
    n = len(y)
    ones = np.ones((1, n))
    points = [
        {m: float(v[0]) for m, v in replicate_metrics(task, y, s, metrics, ones).items()} for s in sides
    ]
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in sides]
    for w in weights(n, rounds, seed):
        for i, s in enumerate(sides):
            parts[i].append(replicate_metrics(task, y, s, metrics, w))
    reps = [{m: np.concatenate([p[m] for p in side]) for m in metrics} for side in parts]
    return points, reps


def bootstrap(
    task: str,
    y: np.ndarray,
    predicted: np.ndarray,
    metrics: tuple[str, ...] | None = None,
    rounds: int = ROUNDS,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Interval]:
    """Each metric of one model on these rows, with its bootstrap interval."""
    metrics = metrics or tasks.METRICS[task]
    points, reps = _collect(task, y, [predicted], metrics, rounds, seed)
    return {m: _interval(points[0][m], reps[0][m], level) for m in metrics}


def paired_bootstrap(
    task: str,
    y: np.ndarray,
    predicted_a: np.ndarray,
    predicted_b: np.ndarray,
    metrics: tuple[str, ...] | None = None,
    rounds: int = ROUNDS,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Interval]:
    """The difference b - a of each metric on the same rows, resampled together (paired)."""
    metrics = metrics or tasks.METRICS[task]
    (pa, pb), (ra, rb) = _collect(task, y, [predicted_a, predicted_b], metrics, rounds, seed)
    return {m: _interval(pb[m] - pa[m], rb[m] - ra[m], level) for m in metrics}
