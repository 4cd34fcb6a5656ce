"""Evaluate: known metric values, small curves, and byte-identical outputs across runs."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelops.config import EvaluateParams, ModelParams, SplitParams
from modelops.errors import PipelineError
from modelops.pipeline import dataset, evaluate, ingest, outputs, prepare, train
from tests.conftest import shipped_dataset

DS = shipped_dataset()

NAME = "tiny"
MODEL = ModelParams(
    dataset="credit", estimator="hist_gradient_boosting", hyperparams={"max_iter": 20}, threads=1
)
FAST = EvaluateParams(importance_rows=100, importance_repeats=2, latency_batch_rows=10, latency_repeats=3)
PLOT_FILES = ("roc.json", "prc.json", "importance.json", "confusion.csv")
PNGS = ("roc.png", "prc.png", "confusion.png", "importance.png")


# --- pure functions -----------------------------------------------------------------------------


def test_quality_on_a_hand_made_example() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array([0.1, 0.6, 0.4, 0.9])  # predictions 0, 1, 0, 1: one TP, one FP, one FN, one TN
    scores = evaluate.quality(y, proba)
    assert scores["accuracy"] == 0.5
    assert scores["precision"] == 0.5
    assert scores["recall"] == 0.5
    assert scores["f1"] == 0.5
    assert scores["roc_auc"] == 0.75  # 3 of the 4 (positive, negative) pairs are ranked right
    assert scores["log_loss"] == round(-(math.log(0.9) + math.log(0.4)) / 2, 6) == 0.510826


def test_quality_threshold_is_inclusive_and_configurable() -> None:
    y = np.array([0, 1, 1, 0])
    proba = np.array([0.2, 0.5, 0.7, 0.3])
    assert evaluate.quality(y, proba)["accuracy"] == 1.0  # 0.5 counts as positive
    high = evaluate.quality(y, proba, threshold=0.6)
    assert high["recall"] == 0.5 and high["precision"] == 1.0
    assert high["roc_auc"] == 1.0  # threshold-free metrics do not move


def test_quality_with_no_positive_predictions_is_zero_not_a_warning() -> None:
    y = np.array([0, 1, 0, 1])
    with warnings.catch_warnings(action="error"):
        scores = evaluate.quality(y, np.array([0.1, 0.2, 0.3, 0.4]))
    assert scores["precision"] == scores["recall"] == scores["f1"] == 0.0
    assert scores["roc_auc"] == 0.75


def test_thinning_keeps_at_most_200_points_and_both_ends() -> None:
    frame = pd.DataFrame({"x": np.linspace(0, 1, 1234), "y": np.linspace(0, 1, 1234) ** 2})
    points = evaluate._thin(frame)
    assert 2 < len(points) <= evaluate.CURVE_POINTS
    assert points[0] == {"x": 0.0, "y": 0.0}
    assert points[-1] == {"x": 1.0, "y": 1.0}
    xs = [p["x"] for p in points]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)


def test_short_curves_are_kept_whole_and_rounded() -> None:
    frame = pd.DataFrame({"x": [0.0, 1 / 3, 1.0], "y": [0, 0.5, 1]})
    assert evaluate._thin(frame) == [
        {"x": 0.0, "y": 0.0},
        {"x": 0.333333, "y": 0.5},
        {"x": 1.0, "y": 1.0},
    ]


def test_curves_run_from_end_to_end() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 3000)
    proba = np.clip(y * 0.3 + rng.random(3000) * 0.7, 0, 1)
    data = evaluate.curves(y, proba)
    roc, prc = data["roc"], data["prc"]
    assert len(roc) <= 200 and len(prc) <= 200
    assert (roc[0]["fpr"], roc[0]["tpr"]) == (0.0, 0.0)
    assert (roc[-1]["fpr"], roc[-1]["tpr"]) == (1.0, 1.0)
    assert prc[0]["recall"] == 0.0 and prc[-1]["recall"] == 1.0
    assert prc[-1]["precision"] == pytest.approx(y.mean(), abs=1e-6)  # everything predicted positive
    assert [p["recall"] for p in prc] == sorted(p["recall"] for p in prc)


# --- the stage ----------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file evaluate writes that is part of the reproducibility contract."""
    plots = root / outputs.plots_dir(NAME)
    files = {name: (plots / name).read_bytes() for name in (*PLOT_FILES, *PNGS)}
    return files | {"metrics.json": (root / outputs.metrics_file(NAME)).read_bytes()}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model trained and evaluated twice in the same directory."""
    root = tmp_path_factory.mktemp("evaluate")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        DS.raw_file.parent.mkdir(parents=True)
        ingest.synthesize(DS, 600, 0).to_csv(DS.raw_file, index=False)
        prepare.prepare(DS, SplitParams())
        train.train(NAME, MODEL, DS)
        first = evaluate.evaluate(NAME, MODEL, DS, FAST)
        files = snapshot(root)
        second = evaluate.evaluate(NAME, MODEL, DS, FAST)
    return {"root": root, "first": first, "second": second, "files": files}


def test_metrics_are_byte_identical_across_runs(evaluated: dict) -> None:
    again = snapshot(evaluated["root"])
    for name, content in evaluated["files"].items():
        assert again[name] == content, f"{name} differs between two runs"
    assert evaluated["first"]["metrics"] == evaluated["second"]["metrics"]


def test_metrics_file_matches_the_model_on_the_test_split(evaluated: dict, monkeypatch) -> None:
    monkeypatch.chdir(evaluated["root"])
    scores = json.loads(outputs.metrics_file(NAME).read_text())
    assert scores == evaluated["first"]["metrics"]
    test = prepare.read_split(DS.test_file)
    pipeline = train.load_pipeline(NAME)
    y = dataset.to_target(DS, test).to_numpy()
    expected = evaluate.quality(y, pipeline.predict_proba(dataset.to_features(DS, test))[:, 1])
    assert {k: scores[k] for k in expected} == expected
    assert scores["test_rows"] == len(test)
    assert scores["positive_rate"] == round(float(y.mean()), 6)


def test_confusion_csv_agrees_with_the_metrics(evaluated: dict) -> None:
    root = evaluated["root"]
    confusion = pd.read_csv(root / outputs.plots_dir(NAME) / "confusion.csv")
    scores = evaluated["first"]["metrics"]
    assert list(confusion.columns) == ["actual", "predicted"]
    assert len(confusion) == scores["test_rows"]
    assert set(confusion.stack()) <= set(tuple(DS.classes))
    assert round((confusion["actual"] == confusion["predicted"]).mean(), 6) == scores["accuracy"]
    assert round((confusion["actual"] == DS.positive).mean(), 6) == scores["positive_rate"]


def test_plot_files(evaluated: dict) -> None:
    plots = evaluated["root"] / outputs.plots_dir(NAME)
    roc = json.loads((plots / "roc.json").read_text())
    prc = json.loads((plots / "prc.json").read_text())
    assert 2 <= len(roc) <= evaluate.CURVE_POINTS and set(roc[0]) == {"fpr", "tpr"}
    assert 2 <= len(prc) <= evaluate.CURVE_POINTS and set(prc[0]) == {"recall", "precision"}
    ranked = json.loads((plots / "importance.json").read_text())
    assert sorted(r["feature"] for r in ranked) == sorted(tuple(DS.features))
    values = [r["importance"] for r in ranked]
    assert values == sorted(values, reverse=True)
    for png in PNGS:
        assert evaluated["files"][png].startswith(b"\x89PNG\r\n\x1a\n"), png
    assert b"Software" not in evaluated["files"]["roc.png"]  # no version stamp in the metadata
    leftovers = [p.name for p in (evaluated["root"] / outputs.model_dir(NAME)).rglob("*tmp*")]
    assert leftovers == []


def test_latency_is_positive_and_outside_metrics(evaluated: dict) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(evaluated["root"])
        timing = evaluate.latency(
            train.load_pipeline(NAME), dataset.to_features(DS, prepare.read_split(DS.test_file)), FAST
        )
    assert not (evaluated["root"] / outputs.latency_file(NAME)).exists()  # not evaluate's output
    assert timing["predict_single_ms"] > 0 and timing["predict_batch_ms"] > 0
    assert timing["batch_rows"] == FAST.latency_batch_rows
    assert timing["batch_rows_per_s"] > 0
    assert not set(timing) & set(evaluated["first"]["metrics"])


def test_evaluate_an_untrained_model_names_the_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    test = tmp_path / "test.parquet"
    ingest.synthesize(DS, 200, 0).to_parquet(test)
    with pytest.raises(PipelineError, match="modelops train ghost"):
        evaluate.evaluate("ghost", MODEL, DS, FAST, test_file=test)
    assert not outputs.metrics_file("ghost").exists()


def test_paired_latency_times_each_model_in_turns_and_keeps_their_order() -> None:
    """A model that sleeps 2 ms per call is ~2 ms slower than one that does not, whatever runs around."""
    import time

    import pandas as pd

    from modelops.config import EvaluateParams
    from modelops.pipeline.evaluate import paired_latency

    class Fixed:
        def __init__(self, seconds: float) -> None:
            self.seconds, self.calls = seconds, 0

        def predict_proba(self, frame: pd.DataFrame) -> None:
            self.calls += 1
            time.sleep(self.seconds)

    fast, slow = Fixed(0.0), Fixed(0.002)
    params = EvaluateParams(latency_repeats=6, latency_batch_rows=3)
    x = pd.DataFrame({"a": range(10)})
    fast_ms, slow_ms = paired_latency([fast, slow], x, params)
    assert fast.calls == slow.calls == 2 * (1 + 6)  # single and batch: a warm-up plus the repeats each
    assert slow_ms["predict_single_ms"] >= 2.0 > fast_ms["predict_single_ms"]
    assert slow_ms["batch_rows"] == fast_ms["batch_rows"] == 3


@pytest.mark.parametrize(
    ("name", "estimator", "files", "metrics"),
    [
        ("hpc", "random_forest", {"confusion.csv", "confusion.png"}, {"accuracy", "macro_f1", "log_loss"}),
        (
            "concrete",
            "ridge",
            {"predicted_actual.json", "predicted_actual.png", "residuals.png"},
            {"rmse", "mae", "r2"},
        ),
    ],
)
def test_each_task_writes_its_metrics_and_plots(
    name, estimator, files, metrics, tmp_path, monkeypatch
) -> None:
    from modelops import tasks

    ds = shipped_dataset(name)
    model = ModelParams(dataset=name, estimator=estimator, hyperparams={}, threads=1)
    monkeypatch.chdir(tmp_path)
    ds.raw_file.parent.mkdir(parents=True)
    ingest.synthesize(ds, 800, 0).to_csv(ds.raw_file, index=False)
    prepare.prepare(ds, SplitParams())
    pipeline = train.train("m", model, ds)
    scores = evaluate.evaluate("m", model, ds, FAST)["metrics"]
    assert set(scores) == metrics | {"test_rows"}
    plots = {p.name for p in outputs.plots_dir("m").iterdir()}
    assert plots == files | {"importance.json", "importance.png"}
    test = prepare.read_split(ds.test_file)
    x, y = dataset.to_features(ds, test), dataset.to_target(ds, test).to_numpy()
    assert scores == tasks.quality(ds.task, y, evaluate.predict(pipeline, ds.task, x)) | {"test_rows": len(y)}
    if ds.task == "multiclass":
        confusion = pd.read_csv(outputs.plots_dir("m") / "confusion.csv")
        assert set(confusion.stack()) <= set(ds.classes)
        assert round((confusion["actual"] == confusion["predicted"]).mean(), 6) == scores["accuracy"]
    else:
        points = json.loads((outputs.plots_dir("m") / "predicted_actual.json").read_text())
        assert len(points) == min(500, len(y)) and set(points[0]) == {"actual", "predicted"}
