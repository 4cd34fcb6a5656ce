"""Drift statistics on known distributions, and the rule that keeps false alarms at alpha."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from modelops.declarations import parse_dataset
from modelops.monitoring import drift
from modelops.params_after import MonitorParams
from modelops.pipeline import reference
from tests.conftest import declaration

POLICY = MonitorParams()


def numeric_ref(values: np.ndarray, missing: int = 0) -> dict:
    column = pd.Series(np.concatenate([values, np.full(missing, np.nan)]))
    return reference.numeric(column, np.random.default_rng(0))


def test_psi_is_zero_for_equal_shares_and_matches_the_formula() -> None:
    assert drift.psi([10, 20, 30], [20, 40, 60]) == 0.0
    expected = (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert drift.psi([50, 50], [90, 10]) == pytest.approx(expected)
    # an empty bin on one side is floored, not infinite
    assert math.isfinite(drift.psi([100, 0], [50, 50])) and drift.psi([100, 0], [50, 50]) > 1


def test_reference_bins_collapse_repeated_quantiles_and_cover_every_value() -> None:
    values = np.array([12, 24, 36, 36, 36, 60, 60, 60, 60, 60] * 50, dtype=float)
    stats = numeric_ref(values, missing=7)
    assert stats["cuts"] == sorted(set(stats["cuts"]))
    assert sum(stats["counts"]) == len(values) and stats["missing"] == 7
    assert reference.bin_counts(np.array([-1e9, 1e9]), stats["cuts"]) == [1] + [0] * (
        len(stats["cuts"]) - 1
    ) + [1]


def test_same_distribution_is_not_drift_and_a_shift_is() -> None:
    rng = np.random.default_rng(1)
    ref = numeric_ref(rng.normal(100, 20, 5000))
    same = drift.numeric("income", ref, pd.Series(rng.normal(100, 20, 500)), POLICY)
    shifted = drift.numeric("income", ref, pd.Series(rng.normal(100, 20, 500) * 1.5), POLICY)
    assert same.p_value > 0.01 and same.effect < 0.1
    assert shifted.p_value < 1e-10 and shifted.effect > POLICY.psi
    assert [c.drift for c in drift.decide([same, shifted], POLICY)] == [False, True]


def test_an_all_missing_column_is_a_missing_rate_alarm_not_a_crash() -> None:
    ref = numeric_ref(np.random.default_rng(2).normal(0, 1, 2000), missing=20)
    column = pd.Series([None] * 300, dtype=object)
    dist = drift.numeric("age", ref, column, POLICY)
    miss = drift.missing("age", ref, column, POLICY)
    assert dist.p_value is None and "all missing" in dist.note
    assert miss.effect == pytest.approx(1 - 20 / 2020)
    assert [c.drift for c in drift.decide([dist, miss], POLICY)] == [False, True]


def test_an_unseen_category_is_named_and_a_large_share_of_it_is_drift() -> None:
    ref = reference.categorical(pd.Series(["owner"] * 600 + ["rent"] * 400), ("owner", "rent", "other"))
    assert ref["counts"] == {"owner": 600, "rent": 400, "other": 0}
    few = pd.Series(["owner"] * 120 + ["rent"] * 79 + ["castle"])
    many = pd.Series(["owner"] * 100 + ["castle"] * 100)
    a = drift.categorical("home", ref, few, POLICY)
    b = drift.categorical("home", ref, many, POLICY)
    assert "'castle' (1)" in a.note and "'castle' (100)" in b.note
    assert [c.drift for c in drift.decide([a, b], POLICY)] == [False, True]


def test_a_swapped_category_is_drift() -> None:
    ref = reference.categorical(pd.Series(["owner"] * 700 + ["rent"] * 300), ("owner", "rent"))
    swapped = drift.categorical("home", ref, pd.Series(["owner"] * 90 + ["rent"] * 210), POLICY)
    assert drift.decide([swapped], POLICY)[0].drift


def test_bonferroni_a_p_value_that_passes_alone_fails_among_many() -> None:
    one = drift.Check("x", "ks", "psi", 0.2, rows=100, p_value=0.01, effect=0.5)
    filler = [drift.Check(f"f{i}", "ks", "psi", 0.2, rows=100, p_value=0.9, effect=0.0) for i in range(27)]
    assert drift.decide([one], POLICY)[0].drift
    assert not drift.decide([one, *filler], POLICY)[0].drift
    # the run's total decides, not the group's own count (several versions in one window)
    assert not drift.decide([one], POLICY, tests=28)[0].drift


def test_a_significant_but_immaterial_shift_is_not_drift() -> None:
    """Huge windows make tiny differences significant; the effect threshold keeps them quiet."""
    ref = reference.categorical(pd.Series(["owner"] * 6000 + ["rent"] * 4000), ("owner", "rent"))
    big = drift.categorical("home", ref, pd.Series(["owner"] * 114000 + ["rent"] * 86000), POLICY)
    assert big.p_value < 1e-6 and big.effect < POLICY.psi
    assert not drift.decide([big], POLICY)[0].drift


def shipped(name: str):
    return parse_dataset(name, declaration(name), f"data/{name}/dataset.yaml")


def test_predicted_class_shift_uses_total_variation() -> None:
    ref = reference.predictions(
        shipped("credit"),
        np.column_stack(
            [np.r_[np.full(700, 0.9), np.full(300, 0.2)], np.r_[np.full(700, 0.1), np.full(300, 0.8)]]
        ),
        np.random.default_rng(0),
    )
    assert ref["classes"] == {"good": 700, "bad": 300}
    check = drift.classes(ref, pd.Series(["good"] * 100 + ["bad"] * 100), POLICY)
    assert check.effect == pytest.approx(0.2)
    assert "bad 50.0% (reference 30.0%)" in check.note
    assert drift.decide([check], POLICY)[0].drift


def test_multiclass_class_shift_names_every_class_and_counts_unknown_labels() -> None:
    hpc = shipped("hpc")
    picked = np.repeat([0, 1, 2, 3], [400, 300, 200, 100])
    proba = np.full((1000, 4), 0.1)
    proba[np.arange(1000), picked] = 0.7
    ref = {"features": {}, "prediction": reference.predictions(hpc, proba, np.random.default_rng(0))}
    assert ref["prediction"]["classes"] == {"VF": 400, "F": 300, "M": 200, "L": 100}
    assert drift.task_of(ref) == "multiclass" and drift.score_stats(ref)[1] == "top probability"

    same = pd.Series(["VF"] * 80 + ["F"] * 60 + ["M"] * 40 + ["L"] * 20)
    more_l = pd.Series(["VF"] * 50 + ["F"] * 40 + ["M"] * 40 + ["L"] * 70)
    unknown = pd.Series(["VF"] * 80 + ["F"] * 60 + ["M"] * 40 + ["XL"] * 20)
    a, b, c = (drift.classes(ref["prediction"], labels, POLICY) for labels in (same, more_l, unknown))
    assert a.effect == pytest.approx(0.0) and not drift.decide([a], POLICY)[0].drift
    assert b.effect == pytest.approx(0.25) and "L 35.0% (reference 10.0%)" in b.note
    assert c.effect == pytest.approx(0.1)  # the 10% of L became labels the model never had
    assert [x.drift for x in drift.decide([a, b, c], POLICY)] == [False, True, True]

    # compare(): for a classifier, the score distribution and the classes
    checks = drift.compare(ref, pd.DataFrame(index=range(200)), more_l, pd.Series([0.7] * 200), POLICY)
    assert [(x.name, x.subject) for x in checks] == [
        ("prediction", "prediction"),
        ("predicted class", "prediction"),
    ]


def test_regression_predictions_are_judged_like_a_numeric_feature() -> None:
    concrete = shipped("concrete")
    rng = np.random.default_rng(4)
    pred = reference.predictions(concrete, rng.normal(35, 12, 2000), rng)
    ref = {"features": {}, "prediction": pred}
    assert drift.task_of(ref) == "regression" and "classes" not in pred and "probability" not in pred
    empty = pd.DataFrame(index=range(400))
    same = drift.compare(ref, empty, pd.Series([], dtype=object), pd.Series(rng.normal(35, 12, 400)), POLICY)
    higher = drift.compare(
        ref, empty, pd.Series([], dtype=object), pd.Series(rng.normal(35, 12, 400) + 15), POLICY
    )
    assert [c.name for c in same] == ["prediction"]  # no class check for a regressor
    assert same[0].note == "predicted value" and same[0].test == "ks" and same[0].effect_name == "psi"
    assert not drift.decide(same, POLICY)[0].drift
    (moved,) = drift.decide(higher, POLICY)
    assert moved.drift and moved.effect > POLICY.psi and moved.p_value < 1e-10
    # a window of non-numbers is not judged (and says so), it does not crash
    (nothing,) = drift.compare(ref, empty, pd.Series([], dtype=object), pd.Series([np.nan] * 400), POLICY)
    assert (
        nothing.p_value is None and nothing.note == "predicted value: no values in the window (all missing)"
    )


def test_a_reference_packaged_before_tasks_is_read_as_binary() -> None:
    old = {"classes": {"good": 7, "bad": 3}, "positive_class": "bad", "probability": {"kind": "numeric"}}
    assert drift.task_of({"prediction": old}) == "binary"
    assert drift.score_stats({"prediction": old})[1] == "P(bad)"
