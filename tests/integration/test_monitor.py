"""`modelops monitor` against the pipeline's real model: false alarms, a real shift, the CLI."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from modelops_serving.integrity import tree_hash

from modelops.config import MonitorParams
from modelops.monitoring import drift
from modelops.pipeline import dataset, reference
from tests import inference_log
from tests.conftest import run

MODEL = "credit-hgb"
POLICY = MonitorParams()
START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
WINDOW = ["--since", "2026-11-23T00:00:00Z", "--until", "2026-11-24T00:00:00Z"]


@pytest.fixture(scope="module")
def real(trained_repo: Path) -> dict:
    """The trained pipeline, its packaged hash, and its train and test splits."""
    splits = {s: pd.read_parquet(trained_repo / f"data/prepared/{s}.parquet") for s in ("train", "test")}
    return {
        "pipeline": pickle.loads((trained_repo / f"models/{MODEL}/pipeline.pkl").read_bytes()),
        "hash": tree_hash(trained_repo / f"models/{MODEL}/model"),
        **splits,
    }


def proba_bad(pipeline, x: pd.DataFrame) -> np.ndarray:
    return pipeline.predict_proba(x)[:, dataset.LABELS.index(dataset.POSITIVE)]


def test_in_distribution_windows_alarm_at_most_five_percent_of_the_time(real: dict) -> None:
    """100 windows of held-out rows the reference never saw, through the real model."""
    test = real["test"]
    held_out = np.arange(len(test)) % 2 == 1  # the reference's predictions come from the other half
    ref = reference.build(real["pipeline"], real["train"], test[~held_out], seed=0)
    pool = dataset.to_features(test[held_out]).reset_index(drop=True)
    proba = proba_bad(real["pipeline"], pool)
    labels = pd.Series(np.where(proba >= 0.5, dataset.POSITIVE, "good"))
    rng = np.random.default_rng(2026)
    alarms = []
    for _ in range(100):
        idx = rng.choice(len(pool), 2 * POLICY.min_rows, replace=False)
        checks = drift.compare(
            ref,
            pool.iloc[idx].reset_index(drop=True),
            labels.iloc[idx].reset_index(drop=True),
            pd.Series(proba[idx]),
            POLICY,
        )
        alarms.append([c.name for c in drift.decide(checks, POLICY) if c.drift])
    assert sum(1 for a in alarms if a) <= 5, alarms


@pytest.mark.parametrize(
    ("shift", "feature"),
    [
        (lambda x: x.assign(income=x.income * 1.5), "income"),
        (lambda x: x.assign(home=x.home.replace({"owner": "rent", "rent": "owner"})), "home"),
    ],
    ids=["income-x1.5", "home-owner-rent-swapped"],
)
def test_an_injected_covariate_shift_is_detected_and_named(real: dict, shift, feature: str) -> None:
    ref = reference.build(real["pipeline"], real["train"], real["test"], seed=0)
    x = shift(dataset.to_features(real["test"]).sample(2 * POLICY.min_rows, random_state=1))
    proba = proba_bad(real["pipeline"], x)
    labels = pd.Series(np.where(proba >= 0.5, dataset.POSITIVE, "good"))
    checks = drift.decide(
        drift.compare(ref, x.reset_index(drop=True), labels, pd.Series(proba), POLICY), POLICY
    )
    assert feature in [c.name for c in checks if c.drift]


def write_traffic(real: dict, logs: Path, content_hash: str, version: str = "v1", shift=None) -> None:
    x = dataset.to_features(real["test"]).iloc[: 3 * POLICY.min_rows].reset_index(drop=True)
    if shift:
        x = shift(x)
    rows = inference_log.records(x, proba_bad(real["pipeline"], x), content_hash, version, start=START)
    inference_log.write(logs, rows)


def monitor(repo: Path, tmp_path: Path, logs: Path, *extra: str):
    out = tmp_path / "out"
    env = {"MODELOPS_ARTIFACT_STORE": str(tmp_path / "empty-store")}  # the local model's hash must match
    cmd = ["modelops", "monitor", "--env", "staging", "--logs", str(logs), "--out", str(out), *extra]
    return run(cmd, repo, check=False, env=env), out


def test_cli_reports_drift_with_exit_12_and_no_drift_with_0(
    real: dict, trained_repo: Path, tmp_path: Path
) -> None:
    write_traffic(real, tmp_path / "shifted", real["hash"], shift=lambda x: x.assign(income=x.income * 1.5))
    proc, out = monitor(trained_repo, tmp_path, tmp_path / "shifted", *WINDOW)
    assert proc.returncode == 12, proc.stderr
    assert "drift detected (v1: income" in proc.stderr
    doc = json.loads((out / "monitor.json").read_text())
    (group,) = doc["models"][0]["groups"]
    assert "income" in group["drifting"] and group["rows"] == 3 * POLICY.min_rows
    assert group["reference"].endswith(f"models/{MODEL}/model/reference.json")
    assert (out / f"{MODEL}-{real['hash'][:12]}-income.png").exists()
    assert 'modelops_drift_detected{model="credit-hgb",env="staging"} 1' in (out / "drift.prom").read_text()

    write_traffic(real, tmp_path / "healthy", real["hash"])
    proc, out = monitor(trained_repo, tmp_path, tmp_path / "healthy", *WINDOW)
    assert proc.returncode == 0, proc.stderr
    assert "credit-hgb in staging: no drift in 300 rows" in proc.stdout
    assert json.loads((out / "monitor.json").read_text())["status"] == "ok"
    assert run(["git", "status", "--porcelain"], trained_repo).stdout == ""


def test_cli_unknown_version_and_empty_window_are_clear(
    real: dict, trained_repo: Path, tmp_path: Path
) -> None:
    stale = "f" * 64
    write_traffic(real, tmp_path / "logs", stale, version="v7")
    proc, _ = monitor(trained_repo, tmp_path, tmp_path / "logs", *WINDOW)
    assert proc.returncode == 14
    assert f"no reference for credit-hgb version v7 with content hash {stale}" in proc.stderr
    assert str(tmp_path / "empty-store" / MODEL / stale) in proc.stderr

    later = ["--since", "2026-11-25T00:00:00Z", "--last", "24h"]
    proc, _ = monitor(trained_repo, tmp_path, tmp_path / "logs", *later)
    assert proc.returncode == 14 and "give --since or --last, not both" in proc.stderr

    proc, out = monitor(trained_repo, tmp_path, tmp_path / "logs", "--until", "2026-11-25T00:00:00Z")
    assert proc.returncode == 15
    assert "no inference records from 2026-11-24T00:00:00Z to 2026-11-25T00:00:00Z" in proc.stderr
    assert json.loads((out / "monitor.json").read_text())["status"] == "insufficient_data"
