"""The vectorised bootstrap metrics agree with scikit-learn, and the intervals answer known cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from modelops import stats, tasks


def _binary(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    p = np.clip(rng.random(n) * 0.6 + y * 0.3, 0, 1)
    p[:7] = 0.5  # ties on the threshold and in the ranking
    p[7:12] = 1.0  # clipped by the log loss
    return y, np.column_stack([1 - p, p])


def _multiclass(n: int, rng: np.random.Generator, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, k, n)
    p = rng.dirichlet([1.0] * k, n)
    p[np.arange(n), y] += 0.4
    return y, p / p.sum(axis=1, keepdims=True)


def _regression(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.normal(size=n) * 10 + 30
    return y, y + rng.normal(scale=4, size=n)


CASES = {"binary": _binary, "multiclass": _multiclass, "regression": _regression}


def _sklearn(task: str, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> dict[str, float]:
    """scikit-learn's own weighted metrics: the reference for one replicate's weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "regression":
            return {
                "rmse": np.sqrt(skm.mean_squared_error(y, p, sample_weight=w)),
                "mae": skm.mean_absolute_error(y, p, sample_weight=w),
                "r2": skm.r2_score(y, p, sample_weight=w),
            }
        if task == "binary":
            proba = p[:, 1]
            pred = (proba >= 0.5).astype(int)
            return {
                "accuracy": skm.accuracy_score(y, pred, sample_weight=w),
                "precision": skm.precision_score(y, pred, sample_weight=w, zero_division=0),
                "recall": skm.recall_score(y, pred, sample_weight=w, zero_division=0),
                "f1": skm.f1_score(y, pred, sample_weight=w, zero_division=0),
                "roc_auc": skm.roc_auc_score(y, proba, sample_weight=w),
                "log_loss": skm.log_loss(y, proba, sample_weight=w, labels=[0, 1]),
            }
        labels = list(range(p.shape[1]))
        pred = p.argmax(axis=1)
        return {
            "accuracy": skm.accuracy_score(y, pred, sample_weight=w),
            "macro_f1": skm.f1_score(
                y, pred, average="macro", labels=labels, sample_weight=w, zero_division=0
            ),
            "log_loss": skm.log_loss(y, p, sample_weight=w, labels=labels),
        }


@pytest.mark.parametrize("task", tasks.TASKS)
def test_every_replicate_equals_scikit_learn_with_those_weights(task: str) -> None:
    rng = np.random.default_rng(3)
    y, p = CASES[task](300, rng)
    w = next(stats.weights(len(y), rounds=5, seed=11))
    got = stats.replicate_metrics(task, y, p, tasks.METRICS[task], w)
    for i in range(len(w)):
        want = _sklearn(task, y, p, w[i])
        for metric in tasks.METRICS[task]:
            assert got[metric][i] == pytest.approx(want[metric], abs=1e-9), (metric, i)


@pytest.mark.parametrize("task", tasks.TASKS)
def test_the_point_estimate_is_the_metric_the_pipeline_records(task: str) -> None:
    rng = np.random.default_rng(4)
    y, p = CASES[task](500, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recorded = tasks.quality(task, y, p)
    assert {m: i.value for m, i in stats.bootstrap(task, y, p, rounds=50).items()} == recorded


@pytest.mark.parametrize("task", tasks.TASKS)
def test_a_challenger_identical_to_the_champion_has_an_interval_containing_zero(task: str) -> None:
    rng = np.random.default_rng(5)
    y, p = CASES[task](400, rng)
    deltas = stats.paired_bootstrap(task, y, p, p.copy(), rounds=200)
    for metric, interval in deltas.items():
        assert interval.low <= 0.0 <= interval.high, metric
        assert not interval.significant, metric


@pytest.mark.parametrize("task", tasks.TASKS)
def test_a_clearly_better_challenger_excludes_zero_on_the_better_side(task: str) -> None:
    rng = np.random.default_rng(6)
    y, weak = CASES[task](600, rng)
    if task == "regression":
        strong = y + (weak - y) * 0.3  # residuals shrunk to 30%
    else:
        onehot = np.eye(weak.shape[1])[y]
        strong = 0.5 * weak + 0.5 * onehot  # half way to the truth
    deltas = stats.paired_bootstrap(task, y, weak, strong, rounds=300)
    for metric in tasks.HEADLINE[task]:
        interval = deltas[metric]
        assert interval.significant, (metric, interval)
        better = interval.high < 0 if metric in tasks.LOWER_IS_BETTER else interval.low > 0
        assert better, (metric, interval)


def test_small_differences_on_few_rows_are_not_significant_and_the_interval_covers_the_delta() -> None:
    rng = np.random.default_rng(7)
    y, p = _binary(200, rng)
    q = p.copy()
    q[:, 1] = np.clip(p[:, 1] + rng.normal(scale=0.01, size=len(y)), 0, 1)
    q[:, 0] = 1 - q[:, 1]
    d = stats.paired_bootstrap("binary", y, p, q, rounds=400)["roc_auc"]
    assert d.low <= d.value <= d.high
    assert not d.significant


def test_same_inputs_and_seed_give_the_same_numbers_and_another_seed_other_numbers() -> None:
    rng = np.random.default_rng(8)
    y, p = _regression(300, rng)
    q = p + 0.5
    first = stats.paired_bootstrap("regression", y, p, q, rounds=100, seed=1)
    assert stats.paired_bootstrap("regression", y, p, q, rounds=100, seed=1) == first
    assert stats.paired_bootstrap("regression", y, p, q, rounds=100, seed=2) != first


def test_chunking_does_not_change_the_replicates(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = np.vstack(list(stats.weights(50, rounds=40, seed=3)))
    monkeypatch.setattr(stats, "_CELLS", 50 * 7)  # chunks of 7 replicates
    chunked = list(stats.weights(50, rounds=40, seed=3))
    assert len(chunked) == 6
    assert whole.sum(axis=1).tolist() == [50.0] * 40
    assert np.vstack(chunked).shape == whole.shape


def test_bootstrapping_no_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="zero rows"):
        next(stats.weights(0))
