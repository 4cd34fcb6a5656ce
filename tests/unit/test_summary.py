"""`modelops show`: one metrics table per task, since each task has its own metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelops.pipeline import summary, tracking
from tests.conftest import declaration, make_params

PARAMS = make_params(
    {
        "c": {"dataset": "credit", "estimator": "random_forest"},
        "r": {"dataset": "concrete", "estimator": "ridge"},
        "r2": {"dataset": "concrete", "estimator": "ridge"},
    },
    {"credit": declaration("credit"), "concrete": declaration("concrete")},
)


def test_show_prints_a_table_per_task_with_its_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        tracking,
        "latest_runs",
        lambda params: {"c": {"run_id": "abc", "tracking_uri": "t", "artifact_uri": "a", "commit": "h"}},
    )
    Path("models/c").mkdir(parents=True)
    Path("models/r").mkdir(parents=True)
    Path("models/c/metrics.json").write_text(json.dumps({"f1": 0.61, "roc_auc": 0.8, "test_rows": 9}))
    Path("models/r/metrics.json").write_text(json.dumps({"rmse": 6.5, "mae": 4.25, "r2": 0.875}))
    Path("models/r/latency.json").write_text(json.dumps({"predict_single_ms": 1.5, "predict_batch_ms": 9.0}))

    text = summary.render(PARAMS)

    binary, regression = text.split("regression:")
    assert "| model | dataset | accuracy | precision | recall | f1 | roc_auc | log_loss |" in binary
    assert "| c | credit | — | — | — | 0.6100 | 0.8000 | — | nan | nan |" in binary
    assert "| model | dataset | rmse | mae | r2 | single ms | batch ms |" in regression
    assert "| r | concrete | 6.5000 | 4.2500 | 0.8750 | 1.50 | 9.00 |" in regression
    assert "| r2 | concrete | (not evaluated yet: run `dvc repro`) |" in regression
    assert "multiclass:" not in text
    assert "c: MLflow run abc at t" in text and "r: no MLflow run yet" in text
