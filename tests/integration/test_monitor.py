"""`modelops monitor` against the pipeline's real models, one per task: false alarms, real shifts,
the CLI over every model with healthy and drifted logs."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from modelops_serving.integrity import tree_hash

from modelops import tasks
from modelops.config import load_params
from modelops.declarations import Dataset
from modelops.monitoring import drift, logs, outcomes
from modelops.params_after import MonitorParams
from modelops.pipeline import dataset, reference
from modelops.pipeline.evaluate import predict
from tests import inference_log, inprocess, outcome_log
from tests.conftest import run

POLICY = MonitorParams()
START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
WINDOW = ["--since", "2026-11-23T00:00:00Z", "--until", "2026-11-24T00:00:00Z"]
MODELS = ("credit-hgb", "hpc-forest", "concrete-hgb")
LOGGED = 300  # rows logged per model (fewer when the test split is smaller)


@dataclass
class Real:
    """A trained model of the shared repo, its dataset, its packaged hash and its splits."""

    name: str
    ds: Dataset
    pipeline: Any
    hash: str
    train: pd.DataFrame
    test: pd.DataFrame

    def predicted(self, x: pd.DataFrame) -> np.ndarray:
        return predict(self.pipeline, self.ds.task, x)

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        return dataset.to_features(self.ds, frame).reset_index(drop=True)

    def records(self, x: pd.DataFrame, version: str = "v1", content_hash: str | None = None) -> list[dict]:
        """Log records as the server writes them for this model's task."""
        return inference_log.for_model(
            self.ds, x, self.predicted(x), content_hash or self.hash, self.name, version=version, start=START
        )


@pytest.fixture(scope="module")
def real(trained_repo: Path) -> dict[str, Real]:
    params = load_params(trained_repo / "params.yaml")
    found = {}
    for name in MODELS:
        ds = params.dataset_of(name)
        found[name] = Real(
            name,
            ds,
            pickle.loads((trained_repo / f"models/{name}/pipeline.pkl").read_bytes()),
            tree_hash(trained_repo / f"models/{name}/model"),
            pd.read_parquet(trained_repo / ds.train_file),
            pd.read_parquet(trained_repo / ds.test_file),
        )
    assert {r.ds.task for r in found.values()} == {"binary", "multiclass", "regression"}
    return found


def labels_and_score(m: Real, x: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """What the monitor reads from the logs of these rows: predicted classes and the score."""
    rows = inference_log.records(x, m.predicted(x), m.hash, classes=m.ds.classes)
    shape = {"features": {}, "prediction": {"task": m.ds.task, "positive_class": m.ds.positive}}
    traffic = logs.frames(rows, shape)
    return traffic.labels, traffic.score


@pytest.mark.parametrize("name", ["credit-hgb", "hpc-forest"])
def test_in_distribution_windows_alarm_at_most_five_percent_of_the_time(real: dict, name: str) -> None:
    """100 windows of held-out rows the reference never saw, through the real model."""
    m = real[name]
    held_out = np.arange(len(m.test)) % 2 == 1  # the reference's predictions come from the other half
    ref = reference.build(m.pipeline, m.ds, m.train, m.test[~held_out], seed=0)
    pool = m.features(m.test[held_out])
    labels, score = labels_and_score(m, pool)
    rng = np.random.default_rng(2026)
    size = min(2 * POLICY.min_rows, len(pool) * 2 // 3)
    alarms = []
    for _ in range(100):
        idx = rng.choice(len(pool), size, replace=False)
        checks = drift.compare(
            ref,
            pool.iloc[idx].reset_index(drop=True),
            labels.iloc[idx].reset_index(drop=True),
            score.iloc[idx].reset_index(drop=True),
            POLICY,
        )
        alarms.append([c.name for c in drift.decide(checks, POLICY) if c.drift])
    assert sum(1 for a in alarms if a) <= 5, alarms


SHIFTS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], set[str]]] = {
    "credit-hgb": (lambda x: x.assign(income=x.income * 1.5), {"income"}),
    "hpc-forest": (lambda x: x.assign(protocol="O"), {"protocol", "predicted class"}),
    "concrete-hgb": (lambda x: x.assign(cement=x.cement * 2, age=x.age * 3), {"cement", "age", "prediction"}),
}


@pytest.mark.parametrize("name", MODELS)
def test_an_injected_shift_is_detected_and_named_for_every_task(real: dict, name: str) -> None:
    m = real[name]
    shift, expected = SHIFTS[name]
    ref = reference.build(m.pipeline, m.ds, m.train, m.test, seed=0)
    x = shift(m.features(m.test).sample(min(2 * POLICY.min_rows, len(m.test)), random_state=1))
    x = x.reset_index(drop=True)
    labels, score = labels_and_score(m, x)
    checks = drift.decide(drift.compare(ref, x, labels, score, POLICY), POLICY)
    assert expected <= {c.name for c in checks if c.drift}, [(c.name, c.p_value, c.effect) for c in checks]


def write_traffic(real: dict, logs: Path, drifted: str | None = None) -> dict[str, int]:
    """Every model's test rows through the real model, logged; `drifted`'s inputs shifted first."""
    rows = {}
    for name, m in real.items():
        # a random sample: raw files are often sorted (by protocol, by date), and so are their splits
        x = m.features(m.test.sample(min(LOGGED, len(m.test)), random_state=0))
        if name == drifted:
            x = SHIFTS[name][0](x)
        inference_log.write(logs, m.records(x))
        rows[name] = len(x)
    return rows


def monitor(repo: Path, tmp_path: Path, logs: Path, *extra: str, models=MODELS):
    out = tmp_path / "out"
    env = {"MODELOPS_ARTIFACT_STORE": str(tmp_path / "empty-store")}  # the local model's hash must match
    chosen = [arg for name in models for arg in ("--model", name)]
    args = ["monitor", "--env", "staging", "--logs", str(logs), "--out", str(out), *chosen, *extra]
    return inprocess.modelops(args, repo, env, check=False), out


@pytest.mark.parametrize("drifted", ["concrete-hgb", "hpc-forest"])
def test_cli_judges_every_model_against_its_own_reference(
    real: dict, trained_repo: Path, tmp_path: Path, drifted: str
) -> None:
    logs = tmp_path / "logs"
    rows = write_traffic(real, logs, drifted=drifted)
    proc, out = monitor(trained_repo, tmp_path, logs, *WINDOW)
    assert proc.returncode == 12, proc.stderr
    assert f"{drifted} in staging: drift detected (v1: " in proc.stderr
    doc = json.loads((out / "monitor.json").read_text())
    by_model = {r["model"]: r for r in doc["models"]}
    assert list(by_model) == list(MODELS)
    for name, result in by_model.items():
        (group,) = result["groups"]
        assert result["dataset"] == real[name].ds.name and group["task"] == real[name].ds.task
        assert group["rows"] == rows[name]
        assert group["reference"].endswith(f"models/{name}/model/reference.json")
        if name == drifted:
            assert result["status"] == "drift" and SHIFTS[name][1] <= set(group["drifting"])
        else:
            assert result["status"] == "ok", group["drifting"]
    stem = f"{drifted}-{real[drifted].hash[:12]}"
    assert (out / f"{stem}-prediction.png").exists()
    prom = (out / "drift.prom").read_text()
    for name in MODELS:
        flag = 1 if name == drifted else 0
        assert f'modelops_drift_detected{{model="{name}",env="staging"}} {flag}' in prom
    assert run(["git", "status", "--porcelain"], trained_repo).stdout == ""


def test_cli_healthy_logs_of_every_model_are_no_drift(real: dict, trained_repo: Path, tmp_path: Path) -> None:
    rows = write_traffic(real, tmp_path / "healthy")
    proc, out = monitor(trained_repo, tmp_path, tmp_path / "healthy", *WINDOW)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for name in MODELS:
        assert f"{name} in staging: no drift in {rows[name]} rows" in proc.stdout
    assert json.loads((out / "monitor.json").read_text())["status"] == "ok"

    # Without --model: every model the env has a manifest for, each judged.
    proc, out = monitor(trained_repo, tmp_path, tmp_path / "healthy", *WINDOW, models=())
    manifests = sorted(p.stem for p in (trained_repo / "gitops/envs/staging").glob("*.yaml"))
    judged = sorted(r["model"] for r in json.loads((out / "monitor.json").read_text())["models"])
    assert judged == [m for m in manifests if m in MODELS] and judged


def test_cli_unknown_version_and_empty_window_are_clear(
    real: dict, trained_repo: Path, tmp_path: Path
) -> None:
    m = real["credit-hgb"]
    stale = "f" * 64
    inference_log.write(tmp_path / "logs", m.records(m.features(m.test).iloc[:LOGGED], "v7", stale))
    credit = ("credit-hgb",)
    proc, _ = monitor(trained_repo, tmp_path, tmp_path / "logs", *WINDOW, models=credit)
    assert proc.returncode == 14
    assert f"no reference for credit-hgb version v7 with content hash {stale}" in proc.stderr
    assert str(tmp_path / "empty-store" / "credit-hgb" / stale) in proc.stderr

    later = ["--since", "2026-11-25T00:00:00Z", "--last", "24h"]
    proc, _ = monitor(trained_repo, tmp_path, tmp_path / "logs", *later, models=credit)
    assert proc.returncode == 14 and "give --since or --last, not both" in proc.stderr

    proc, out = monitor(
        trained_repo, tmp_path, tmp_path / "logs", "--until", "2026-11-25T00:00:00Z", models=credit
    )
    assert proc.returncode == 15
    assert "no inference records from 2026-11-24T00:00:00Z to 2026-11-25T00:00:00Z" in proc.stderr
    assert json.loads((out / "monitor.json").read_text())["status"] == "insufficient_data"


# --------------------------------------------------------------------------- outcomes


def write_outcomes(real: dict, logs: Path, reverse: bool = False) -> dict[str, int]:
    """Every model's test rows through the real model, logged, and each row's true outcome fed back;
    with `reverse`, the truths shuffled first (the world no longer follows what the model learnt)."""
    sent = {}
    for name, m in real.items():
        sample = m.test.sample(min(LOGGED, len(m.test)), random_state=0)
        x, y = m.features(sample), dataset.to_target(m.ds, sample).to_numpy()
        if reverse:
            y = np.random.default_rng(0).permutation(y)
        inference_log.write(logs, m.records(x))
        rows = outcome_log.outcomes(y, m.predicted(x), m.hash, model=name, start=START, classes=m.ds.classes)
        outcome_log.write(logs, rows)
        sent[name] = len(rows)
    return sent


def test_cli_holds_each_version_to_its_own_test_metrics(
    real: dict, trained_repo: Path, tmp_path: Path
) -> None:
    """The packaged reference carries evaluate's test metrics; outcomes of test rows agree with
    them, and a model whose outcomes no longer follow its answers is concept drift, for every task."""
    scores = {name: json.loads((trained_repo / f"models/{name}/metrics.json").read_text()) for name in MODELS}
    for name in MODELS:
        ref = reference.load(trained_repo / f"models/{name}/model" / reference.REFERENCE_FILE)
        assert ref["test_metrics"] == {k: scores[name][k] for k in tasks.METRICS[real[name].ds.task]}

    sent = write_outcomes(real, tmp_path / "healthy")
    proc, out = monitor(trained_repo, tmp_path, tmp_path / "healthy", *WINDOW)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for name in MODELS:
        assert f"{name} in staging: no drift in {sent[name]} rows and {sent[name]} outcomes" in proc.stdout
    doc = json.loads((out / "monitor.json").read_text())
    assert {r["model"]: r["concept_drift"] for r in doc["models"]} == dict.fromkeys(MODELS, "ok")

    write_outcomes(real, tmp_path / "reversed", reverse=True)
    proc, out = monitor(trained_repo, tmp_path, tmp_path / "reversed", *WINDOW)
    assert proc.returncode == 12, proc.stderr + proc.stdout
    by_model = {r["model"]: r for r in json.loads((out / "monitor.json").read_text())["models"]}
    prom = (out / "drift.prom").read_text()
    for name in MODELS:
        headline = outcomes.HEADLINE[real[name].ds.task]
        assert f"{name} in staging: concept drift detected (v1: {headline} " in proc.stderr
        assert by_model[name]["concept_drift"] == "drift" and by_model[name]["input_drift"] is False
        (group,) = by_model[name]["groups"]
        assert group["status"] == "ok" and group["online"]["status"] == "drift"  # the inputs are as usual
        assert group["online"]["test"] == scores[name][headline]
        assert f'modelops_concept_drift_detected{{model="{name}",env="staging",version="v1"}} 1' in prom
        assert f'modelops_drift_detected{{model="{name}",env="staging"}} 0' in prom
    assert run(["git", "status", "--porcelain"], trained_repo).stdout == ""
