"""Ground truth: the servers' feedback logs, and what the outcomes say about each model version.

The feedback log contract (the server writes it beside the inference log, with the same rotation
and the same never-block rule; append-only, so a torn last line is tolerated)::

    <log_dir>/<model>/feedback/<YYYY-MM-DD>/<HHMMSS>-<pid>-<seq>.jsonl   (UTC), one JSON object per row:
    {"ts": <when the outcome arrived>, "predicted_at": <when the prediction was made>,
     "model": "<model>", "version": "v3", "hash": "<64 hex>", "request_id": "<id>",
     "row": <index of the row in its request>, "truth": "<class>" | <number>,
     "prediction": "<class>" | <number>, "probabilities": {"<class>": float} (classifiers only),
     "reward": <number> | null}

The server joins an outcome to its own prediction when it arrives (it remembers recent
predictions, so an unknown id is refused there), and the line carries both. Here the outcomes are
grouped by the content hash of the model that answered, like the inference rows, and scored per
group: every metric of the model's task (`tasks.METRICS`) with a seeded bootstrap interval
(`stats.bootstrap`). The window selects outcomes by ``ts`` (the day directories are dated by it).

**Concept drift** is judged on one headline metric per task, the one that stays meaningful on an
online window: binary ROC AUC (threshold-free, and unmoved by a change in the share of positives
alone, which is label shift, not a worse model), multiclass accuracy (macro F1 swings with a few
outcomes of a rare class), regression R² (scale-free, so one absolute `max_metric_drop` means the
same for every target; RMSE and MAE are in the target's units). A version has concept drift when
its online interval lies wholly on the worse side of the value its reference says it had on the
test split AND the point estimate is worse by at least ``monitor.max_metric_drop``. The intervals
are at level 1 - alpha/k for the k versions judged in the run (Bonferroni, as the input checks),
so a healthy run flags a version with chance at most alpha. The test metric is taken as known: its
own sampling noise is not in the interval (the drop threshold absorbs it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from modelops import stats, tasks
from modelops.monitoring.drift import task_of
from modelops.monitoring.logs import SHOWN_SKIPS, Records, read_feedback
from modelops.params_after import MonitorParams

HEADLINE = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "r2"}
# Bootstrap replicates beyond each end of an interval, at least: a Bonferroni level of 1 - 0.05/10
# puts a quarter percent in each tail, which 1,000 replicates would estimate from 2.5 values.
TAIL_REPLICATES = 25


# --------------------------------------------------------------------------- reading


@dataclass
class Feedback:
    """The outcomes of one model in a window (the first of each (hash, request_id, row) only), where
    each line is, and how many lines repeated an outcome already read."""

    records: Records
    where: list[str] = field(default_factory=list)
    duplicates: int = 0

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The outcome lines kept."""
        return self.records.rows


def read_outcomes(log_dir: Path, model: str, since: datetime, until: datetime) -> Feedback:
    """Every well-formed outcome of `model` that arrived in [since, until); unreadable lines are
    counted, and an outcome given twice for one row (a retried delivery) counts once."""
    records = read_feedback(log_dir, model, since, until)
    seen: set[tuple[str, str, int]] = set()
    kept, kept_where, duplicates = [], [], 0
    for rec, at in zip(records.rows, records.where or [], strict=True):
        key = (rec["hash"], rec["request_id"], rec["row"])
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        kept.append(rec)
        kept_where.append(at)
    records.rows, records.where = kept, kept_where
    return Feedback(records, kept_where, duplicates)


# --------------------------------------------------------------------------- scoring


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


@dataclass
class Observed:
    """One version's outcomes as `stats` wants them: truths (class indices in the model's class
    order, or values) and predictions (probability matrix, or values), and the lines left out."""

    y: np.ndarray
    predicted: np.ndarray
    unusable: int = 0
    examples: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # what the indices in `y` stand for


def observed(rows: list[tuple[dict[str, Any], str]], reference: dict[str, Any]) -> Observed:
    """The (line, where) outcomes of one version, shaped by its reference (task, class order)."""
    task = task_of(reference)
    ys: list[float] = []
    predicted: list[Any] = []
    left_out: list[str] = []
    if task == "regression":
        for rec, at in rows:
            truth, value = _number(rec["truth"]), _number(rec["prediction"])
            if not (math.isfinite(truth) and math.isfinite(value)):
                left_out.append(f"{at}: truth and prediction must be finite numbers for a regression")
                continue
            ys.append(truth)
            predicted.append(value)
        return Observed(
            np.asarray(ys), np.asarray(predicted, dtype=np.float64), len(left_out), left_out[:SHOWN_SKIPS]
        )
    # Any one order serves every metric if truths and probability columns share it (reference.json
    # sorts its keys, so the model's own order is not there), except that binary wants the positive
    # class second.
    classes = [str(c) for c in reference["prediction"]["classes"]]
    if task == "binary":
        positive = str(reference["prediction"].get("positive_class"))
        classes = [c for c in classes if c != positive] + [positive]
    index = {c: i for i, c in enumerate(classes)}
    for rec, at in rows:
        truth, probabilities = rec["truth"], rec.get("probabilities")
        if not isinstance(truth, str) or truth not in index:
            left_out.append(f"{at}: truth {truth!r} is not a class of the model ({', '.join(classes)})")
            continue
        p = [_number(probabilities.get(c)) for c in classes] if isinstance(probabilities, dict) else []
        if len(p) != len(classes) or not all(math.isfinite(v) for v in p):
            left_out.append(f"{at}: 'probabilities' does not give every class a number")
            continue
        ys.append(index[truth])
        predicted.append(p)
    y = np.asarray(ys, dtype=np.int64)
    matrix = np.asarray(predicted, dtype=np.float64).reshape(len(ys), len(classes))
    return Observed(y, matrix, len(left_out), left_out[:SHOWN_SKIPS], classes)


@dataclass
class Online:
    """What the outcomes of one version say: its online metrics and the concept-drift verdict."""

    outcomes: int  # usable outcomes in the window
    task: str = ""
    metric: str = ""  # the headline metric the verdict is on
    status: str = "insufficient_data"  # drift | ok | insufficient_data
    note: str = ""
    metrics: dict[str, stats.Interval] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    unusable: int = 0
    unusable_examples: list[str] = field(default_factory=list)

    @property
    def online(self) -> stats.Interval | None:
        """The headline metric online, with its interval (None when not computed)."""
        return self.metrics.get(self.metric)

    @property
    def test(self) -> float | None:
        """The headline metric on the version's test split (None when its reference has none)."""
        return self.test_metrics.get(self.metric)

    def drop(self) -> float | None:
        """How much worse the headline metric is online than on the test split (negative: better)."""
        if self.online is None or self.test is None:
            return None
        worse = (
            self.online.value - self.test
            if self.metric in tasks.LOWER_IS_BETTER
            else self.test - self.online.value
        )
        return round(worse, 6)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (monitor.json)."""
        online = self.online
        return {
            "outcomes": self.outcomes,
            "status": self.status,
            "note": self.note,
            "metric": self.metric or None,
            "online": online.to_dict() if online else None,
            "test": self.test,
            "drop": self.drop(),
            "metrics": {m: i.to_dict() for m, i in self.metrics.items()},
            "test_metrics": self.test_metrics,
            "unusable": self.unusable,
            "unusable_examples": self.unusable_examples,
        }


def _short(interval: stats.Interval) -> str:
    return f"{interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def assess(
    outcomes: dict[str, list[tuple[dict[str, Any], str]]],
    references: dict[str, dict[str, Any]],
    policy: MonitorParams,
) -> tuple[dict[str, Online], float]:
    """Score each content hash's outcomes against its reference; judge concept drift on the
    versions with enough of them. Returns the verdicts by hash and the intervals' level.

    `references` holds the reference of every hash with at least `min_outcomes` outcome lines;
    a hash without one is reported as too few outcomes without being looked up.
    """
    found: dict[str, Online] = {}
    scored: dict[str, tuple[Observed, tuple[str, ...]]] = {}
    for content_hash, rows in outcomes.items():
        reference = references.get(content_hash)
        if reference is None:
            found[content_hash] = Online(len(rows), note=_too_few(len(rows), policy))
            continue
        task = task_of(reference)
        seen = observed(rows, reference)
        online = found[content_hash] = Online(
            len(seen.y),
            task,
            HEADLINE[task],
            test_metrics={k: float(v) for k, v in (reference.get("test_metrics") or {}).items()},
            unusable=seen.unusable,
            unusable_examples=seen.examples,
        )
        if len(seen.y) < policy.min_outcomes:
            online.note = _too_few(len(seen.y), policy)
            continue
        metrics = tasks.METRICS[task]
        if task == "binary" and len(set(seen.y.tolist())) < 2:
            # ROC AUC is undefined on one class (stats would give 0: a false drop)
            only = seen.classes[int(seen.y[0])]
            online.note = f"all {len(seen.y)} outcomes are {only!r}: ROC AUC needs both classes"
            metrics = tuple(m for m in metrics if m != "roc_auc")
        elif online.test is None:
            online.note = "its reference has no test metrics (packaged before they were recorded): no verdict"
        else:
            online.status = "judged"
        scored[content_hash] = (seen, metrics)
    judged = [h for h, o in found.items() if o.status == "judged"]
    level = 1.0 - policy.alpha / max(len(judged), 1)
    rounds = max(stats.ROUNDS, math.ceil(TAIL_REPLICATES / ((1.0 - level) / 2)))
    for content_hash, (seen, metrics) in scored.items():
        online = found[content_hash]
        online.metrics = stats.bootstrap(
            online.task, seen.y, seen.predicted, metrics, rounds, stats.SEED, level
        )
    for content_hash in judged:
        _decide(found[content_hash], policy)
    return found, level


def _too_few(count: int, policy: MonitorParams) -> str:
    return f"{count} outcomes (monitor.min_outcomes is {policy.min_outcomes}): not judged"


def _decide(online: Online, policy: MonitorParams) -> None:
    """Concept drift: significantly worse than on the test split, and by at least the threshold."""
    interval, test, drop = online.online, online.test, online.drop()
    if interval is None or test is None or drop is None:
        return
    lower_is_better = online.metric in tasks.LOWER_IS_BETTER
    worse = interval.low > test if lower_is_better else interval.high < test
    compared = f"{online.metric} {_short(interval)} online vs {test:.3f} on the test split"
    if worse and drop >= policy.max_metric_drop:
        online.status, online.note = "drift", f"{compared}: worse by {drop:.3f}"
    elif worse:
        online.status = "ok"
        limit = policy.max_metric_drop
        online.note = f"{compared}: significantly worse, by less than monitor.max_metric_drop {limit:g}"
    else:
        online.status, online.note = "ok", compared
