"""Champion-vs-challenger intervals on known answers, per task, and what the gate makes of them.

Predictions are drawn the way a model of some skill would make them, on seeded rows; the
assertions marked "precondition" pin what a seed produced, so a change in numpy's streams shows
up as a broken premise rather than as a wrong verdict.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from modelops import tasks
from modelops.config import BootstrapParams, GatePolicy
from modelops.review import gate, uncertainty
from modelops.review.uncertainty import Intervals
from modelops.stats import Interval

SETTINGS = BootstrapParams(rounds=400, seed=0, level=0.95)
ROWS = 400


def truth(task: str, rng: np.random.Generator) -> np.ndarray:
    if task == "regression":
        return rng.normal(size=ROWS) * 10 + 30
    return rng.integers(0, 2 if task == "binary" else 4, ROWS)


def predictions(task: str, y: np.ndarray, rng: np.random.Generator, skill: float = 1.0) -> np.ndarray:
    """A model's output on `y`: values with error 4 / skill, or probabilities leaning to the truth."""
    if task == "regression":
        return y + rng.normal(scale=4 / skill, size=len(y))
    k = 2 if task == "binary" else 4
    p = rng.dirichlet([1.0] * k, len(y))
    p[np.arange(len(y)), y] += 0.4 * skill
    return p / p.sum(axis=1, keepdims=True)


def scored(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tasks.quality(task, y, p)


def compared(task: str, seed: int, challenger_skill: float | None = 1.0):
    """(challenger metrics, champion metrics, intervals) of two models on one seed's rows.

    `challenger_skill=None`: the challenger is the champion itself.
    """
    rng = np.random.default_rng(seed)
    y = truth(task, rng)
    champion = predictions(task, y, rng)
    challenger = champion.copy() if challenger_skill is None else predictions(task, y, rng, challenger_skill)
    new, old = scored(task, y, challenger), scored(task, y, champion)
    intervals, note = uncertainty.compare(task, y, challenger, champion, new, old, SETTINGS)
    assert note is None
    return new, old, intervals


def regression_policy(metric: str, allowed: float, significant: bool | None = None) -> GatePolicy:
    return GatePolicy(max_regression={metric: allowed}, significant_regression=significant)


# --------------------------------------------------------------------------- the intervals


@pytest.mark.parametrize("task", tasks.TASKS)
def test_each_interval_is_centred_on_the_delta_the_report_shows(task: str) -> None:
    new, old, intervals = compared(task, 2)
    assert set(intervals.deltas) == set(tasks.METRICS[task])
    for metric, interval in intervals.deltas.items():
        assert interval.value == round(new[metric] - old[metric], 6), metric
    assert (intervals.level, intervals.rounds, intervals.seed, intervals.rows) == (0.95, 400, 0, ROWS)


@pytest.mark.parametrize("task", tasks.TASKS)
def test_a_challenger_identical_to_the_champion_is_within_noise_and_passes(task: str) -> None:
    new, old, intervals = compared(task, 0, challenger_skill=None)
    for metric, interval in intervals.deltas.items():
        assert interval.low <= 0.0 <= interval.high, metric
        assert uncertainty.direction(metric, interval) == "noise"
    strict = GatePolicy(max_regression=dict.fromkeys(tasks.METRICS[task], 0.0), significant_regression=False)
    verdict = gate.evaluate(new, old, 1.0, strict, "v1", intervals=intervals)
    assert verdict.passed, verdict.reasons
    # ... and an equal model is not an improvement
    wanted = GatePolicy(require_improvement=[tasks.HEADLINE[task][0]])
    assert not gate.evaluate(new, old, 1.0, wanted, "v1", intervals=intervals).passed


@pytest.mark.parametrize("task", tasks.TASKS)
def test_a_clearly_better_challenger_excludes_zero_and_passes_a_required_improvement(task: str) -> None:
    new, old, intervals = compared(task, 1, challenger_skill=3.0)
    for metric in tasks.HEADLINE[task]:
        interval = intervals.deltas[metric]
        assert not interval.low <= 0.0 <= interval.high, (metric, interval)
        assert uncertainty.direction(metric, interval) == "better", (metric, interval)
    policy = GatePolicy(require_improvement=list(tasks.HEADLINE[task]))
    verdict = gate.evaluate(new, old, 1.0, policy, "v1", intervals=intervals)
    assert verdict.passed, verdict.reasons
    assert [c.outcome for c in verdict.checks if c.kind == "improvement"] == ["pass"] * 3


# A metric of another model of the same skill that came out worse than the champion by more than
# a realistic allowance, and a seed where it did (checked as a precondition below).
NOISY_REGRESSION = {
    "binary": (2, "roc_auc", 0.01),
    "multiclass": (1, "macro_f1", 0.03),
    "regression": (2, "rmse", 0.02),
}


@pytest.mark.parametrize("task", tasks.TASKS)
def test_a_regression_beyond_the_allowance_that_is_noise_fails_only_without_significance(task: str) -> None:
    seed, metric, allowed = NOISY_REGRESSION[task]
    new, old, intervals = compared(task, seed)
    interval = intervals.deltas[metric]
    loss = interval.value if metric in tasks.LOWER_IS_BETTER else -interval.value
    assert loss > allowed and uncertainty.direction(metric, interval) == "noise"  # precondition

    for significant in (True, None):  # None: the default, as a task-level policy leaves it
        verdict = gate.evaluate(
            new, old, 1.0, regression_policy(metric, allowed, significant), "v1", None, intervals
        )
        assert verdict.passed, verdict.reasons
        [check] = [c for c in verdict.checks if c.kind == "regression"]
        assert "within noise" in check.message and "includes 0" in check.message
        assert uncertainty.span(interval) in check.message

    verdict = gate.evaluate(new, old, 1.0, regression_policy(metric, allowed, False), "v1", None, intervals)
    assert not verdict.passed
    [reason] = verdict.reasons
    assert reason.startswith(f"{metric} {'rose' if metric in tasks.LOWER_IS_BETTER else 'fell'}")
    assert "within noise, but significance is not required" in reason


# An improvement on the point value that the interval cannot tell from noise.
NOISY_IMPROVEMENT = {"binary": (0, "roc_auc"), "multiclass": (2, "accuracy"), "regression": (1, "rmse")}


@pytest.mark.parametrize("task", tasks.TASKS)
def test_require_improvement_fails_an_improvement_within_noise(task: str) -> None:
    seed, metric = NOISY_IMPROVEMENT[task]
    new, old, intervals = compared(task, seed)
    interval = intervals.deltas[metric]
    gain = -interval.value if metric in tasks.LOWER_IS_BETTER else interval.value
    assert gain > 0 and uncertainty.direction(metric, interval) == "noise"  # precondition
    verdict = gate.evaluate(new, old, 1.0, GatePolicy(require_improvement=[metric]), "v1", None, intervals)
    assert verdict.reasons == [
        f"{metric} must improve significantly on champion v1; it is within noise: "
        f"{uncertainty.signed(interval.value)} (95% interval {uncertainty.span(interval)})"
    ]


def test_stale_outputs_keep_the_packaged_models_interval_and_say_so() -> None:
    rng = np.random.default_rng(0)
    y = truth("binary", rng)
    champion, challenger = predictions("binary", y, rng), predictions("binary", y, rng)
    old, rescored = scored("binary", y, champion), scored("binary", y, challenger)
    recorded = rescored | {"roc_auc": rescored["roc_auc"] + 0.05}  # a metrics file from another run
    intervals, note = uncertainty.compare("binary", y, challenger, champion, recorded, old, SETTINGS)
    assert intervals.deltas["roc_auc"].value == round(rescored["roc_auc"] - old["roc_auc"], 6)
    assert intervals.deltas["f1"].value == round(recorded["f1"] - old["f1"], 6)
    assert note is not None and note.startswith("The intervals of roc_auc (and their significance)")
    assert "packaged model's" in note and "the metrics file" in note


def test_the_same_inputs_give_the_same_bytes_and_the_seed_matters() -> None:
    rng = np.random.default_rng(4)
    y = truth("multiclass", rng)
    a, b = predictions("multiclass", y, rng), predictions("multiclass", y, rng)
    new, old = scored("multiclass", y, b), scored("multiclass", y, a)

    def dumped(settings: BootstrapParams) -> str:
        found, _ = uncertainty.compare("multiclass", y, b, a, new, old, settings)
        return json.dumps(found.to_dict(), sort_keys=True)

    assert dumped(SETTINGS) == dumped(SETTINGS)
    assert dumped(SETTINGS) != dumped(SETTINGS.model_copy(update={"seed": 1}))
    wider = json.loads(dumped(SETTINGS.model_copy(update={"level": 0.99})))["deltas"]["accuracy"]
    narrow = json.loads(dumped(SETTINGS))["deltas"]["accuracy"]
    assert wider["low"] <= narrow["low"] and wider["high"] >= narrow["high"]


# --------------------------------------------------------------------------- report.json and cells


def test_intervals_round_trip_through_report_json_and_refuse_malformed_entries() -> None:
    found = Intervals({"f1": Interval(-0.01, -0.03, 0.01)}, 0.9, 500, 3, 872)
    data = json.loads(json.dumps(found.to_dict()))
    assert data["method"] == "paired bootstrap over the test rows"
    assert Intervals.from_dict(data) == found
    assert found.label == "90%" and Intervals({}, 0.975).label == "97.5%"
    with pytest.raises(KeyError):
        Intervals.from_dict({k: v for k, v in data.items() if k != "deltas"})
    with pytest.raises(ValueError, match="level 95"):
        Intervals.from_dict(data | {"level": 95})
    with pytest.raises((TypeError, ValueError)):
        Intervals.from_dict(data | {"deltas": {"f1": {"value": "x", "low": 0, "high": 0}}})


def test_direction_follows_the_metrics_own_sense() -> None:
    up, down, across = Interval(0.02, 0.01, 0.03), Interval(-0.02, -0.03, -0.01), Interval(0.0, -0.01, 0.01)
    assert [uncertainty.direction("roc_auc", i) for i in (up, down, across)] == ["better", "worse", "noise"]
    assert [uncertainty.direction("log_loss", i) for i in (up, down, across)] == ["worse", "better", "noise"]
    assert [uncertainty.direction("rmse", i) for i in (up, down)] == ["worse", "better"]
    assert uncertainty.direction("r2", None) == "noise"


def test_cells_print_signed_bounds_and_a_mark() -> None:
    assert uncertainty.span(Interval(0.0, -0.004, 0.0079)) == "[-0.0040, +0.0079]"
    assert uncertainty.span(Interval(0.0, 0.0, 0.0)) == "[0.0000, 0.0000]"
    assert uncertainty.signed(0.000012) == "+0.00001" and uncertainty.signed(-0.25) == "-0.2500"
    assert uncertainty.significance_cell("f1", Interval(0.02, 0.01, 0.03)) == "✅ yes: better"
    assert uncertainty.significance_cell("log_loss", Interval(0.02, 0.01, 0.03)) == "⚠️ yes: worse"
    assert uncertainty.significance_cell("f1", Interval(0.0, -0.01, 0.01)) == "no: within noise"
    assert uncertainty.significance_cell("f1", None) == uncertainty.interval_cell(None) == "—"
    note = uncertainty.footnote(Intervals({}, 0.95, 1000, 0, 872))
    assert note.startswith("95% interval: paired bootstrap of Δ vs champion over the 872 test rows")
    assert "(1000 resamples, seed 0)" in note and "not training randomness or another split" in note
    assert "No intervals" in uncertainty.footnote(None)
