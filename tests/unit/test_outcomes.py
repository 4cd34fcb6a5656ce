"""Ground-truth feedback in `modelops monitor`: reading the feedback log, online metrics with
intervals per version, and concept drift, on real files and real reference files.

The models are simulated by their answers: probabilities (or values) and truths drawn so that the
model is calibrated (a healthy stream), or so that its truths no longer follow its answers (a
concept that moved). A version's test metrics are measured on a large sample of the healthy stream,
so "healthy" means exactly "as good as on its test split".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from modelops import tasks
from modelops.declarations import Dataset, parse_dataset
from modelops.monitoring import monitor, outcomes
from modelops.params_after import MonitorParams
from modelops.pipeline import ingest, reference
from tests import inference_log, outcome_log
from tests.conftest import declaration

POLICY = MonitorParams()
HASH_A, HASH_B = "a" * 64, "b" * 64
SINCE = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
UNTIL = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
CREDIT, HPC, CONCRETE = (
    parse_dataset(n, declaration(n), f"data/{n}/dataset.yaml") for n in ("credit", "hpc", "concrete")
)


def calibrated_binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(positive-class probabilities, truths drawn from them): a model as good as it says."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 3, n)
    return p, (rng.random(n) < p).astype(int)


def calibrated_multiclass(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([0.6, 0.4, 0.3, 0.2], n)
    return p, np.array([rng.choice(4, p=row) for row in p])


def regression(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    value = rng.normal(35, 12, n)
    return value, value + rng.normal(0, 4, n)


def measured_metrics(task: str, predicted: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The metrics a version 'had on its test split': its stream's, on many rows."""
    matrix = np.column_stack([1 - predicted, predicted]) if task == "binary" else predicted
    return tasks.quality(task, y, matrix)


def publish(store: Path, model: str, content_hash: str, ds: Dataset, predicted, metrics: dict | None) -> None:
    """The version's reference.json in the store, as the package stage writes it."""
    frame = inference_log.features(ds, ingest.synthesize(ds, 300, 1))
    sample = predicted[: len(frame)]
    if ds.task == "binary":
        sample = np.column_stack([1 - sample, sample])
    (store / model / content_hash).mkdir(parents=True)
    stats = reference.of(ds, frame, sample, 0, metrics)
    reference.write(store / model / content_hash / reference.REFERENCE_FILE, stats)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Versions A and B of a binary model, with the test metrics of the healthy stream."""
    monkeypatch.chdir(tmp_path)  # no models/ here: the local fallback has nothing to offer
    p, y = calibrated_binary(100_000, 0)
    measured = measured_metrics("binary", p, y)
    for content_hash in (HASH_A, HASH_B):
        publish(tmp_path / "store", "credit-hgb", content_hash, CREDIT, p, measured)
    return tmp_path / "store"


def judge(logs: Path, store: Path, model: str = "credit-hgb", roles: dict | None = None, policy=POLICY):
    records = monitor.read_records(logs, model, SINCE, UNTIL)
    feedback = monitor.read_outcomes(logs, model, SINCE, UNTIL)
    return monitor.judge(model, "staging", records, roles or {}, SINCE, UNTIL, policy, str(store), feedback)


def serve(
    logs: Path,
    n: int,
    seed: int,
    content_hash: str = HASH_A,
    version: str = "v1",
    flip: float = 0.0,
    answered: int | None = None,
) -> None:
    """n predictions of a binary version, logged with their inputs, and the outcomes of the first
    `answered` (all by default); `flip` of the truths are reversed (the world no longer behaves as
    the model learnt)."""
    p, y = calibrated_binary(n, seed)
    rng = np.random.default_rng(seed + 1)
    y = np.where(rng.random(n) < flip, 1 - y, y)
    x = inference_log.features(CREDIT, ingest.synthesize(CREDIT, n, seed))
    inference_log.write(logs, inference_log.records(x, p, content_hash, version))
    k = n if answered is None else answered
    outcome_log.write(
        logs, outcome_log.outcomes(y[:k], p[:k], content_hash, version), name=f"{version}.jsonl"
    )


# --------------------------------------------------------------------------- verdicts


def test_a_healthy_stream_of_outcomes_is_no_concept_drift(tmp_path: Path, store: Path) -> None:
    serve(tmp_path / "logs", 400, seed=1)
    result = judge(tmp_path / "logs", store, roles={HASH_A: "main v1"})
    assert result.status == "ok" and result.concept == "ok", result.message
    assert "no drift in 400 rows and 400 outcomes" in result.message
    (group,) = result.groups
    online = group.online
    assert online.outcomes == 400 and online.metric == "roc_auc" and online.status == "ok"
    assert set(online.metrics) == set(tasks.METRICS["binary"])
    assert online.online.low < online.test < online.online.high
    assert result.outcome_level == pytest.approx(0.95)


def test_a_version_clearly_worse_online_than_on_its_test_split_is_concept_drift(
    tmp_path: Path, store: Path
) -> None:
    """v1 healthy, v2's truths a third reversed: v2 alone is flagged, by its own test metrics."""
    serve(tmp_path / "logs", 400, seed=1)
    serve(tmp_path / "logs", 400, seed=2, content_hash=HASH_B, version="v2", flip=0.35)
    result = judge(tmp_path / "logs", store, roles={HASH_A: "main v1", HASH_B: "canary v2"})
    v1, v2 = result.groups
    assert (v1.online.status, v2.online.status) == ("ok", "drift")
    assert result.status == "drift" and result.concept == "drift" and not result.input_drift
    assert result.message.startswith("credit-hgb in staging: concept drift detected (v2: roc_auc ")
    assert v2.online.online.high < v2.online.test and v2.online.drop() >= POLICY.max_metric_drop
    assert "on the test split: worse by" in v2.online.note
    # two versions judged: each interval at 1 - alpha/2 (Bonferroni), so the run alarms at most alpha
    assert result.outcome_level == pytest.approx(1 - POLICY.alpha / 2)
    with pytest.raises(monitor.DriftDetected, match="concept drift detected") as err:
        monitor.enforce([result])
    assert err.value.exit_code == 12


def test_significant_but_small_drops_are_not_concept_drift(tmp_path: Path, store: Path) -> None:
    serve(tmp_path / "logs", 5000, seed=3, flip=0.05)
    strict = judge(tmp_path / "logs", store)
    (group,) = strict.groups
    assert group.online.online.high < group.online.test  # significant with 5,000 outcomes...
    assert group.online.drop() < POLICY.max_metric_drop and group.online.status == "ok"  # ...not material
    assert "significantly worse, by less than monitor.max_metric_drop 0.05" in group.online.note
    loose = judge(tmp_path / "logs", store, policy=MonitorParams(max_metric_drop=0.01))
    assert loose.groups[0].online.status == "drift"


def test_too_few_outcomes_is_insufficient_data_and_no_verdict(tmp_path: Path, store: Path) -> None:
    serve(tmp_path / "few", 300, seed=4, flip=1.0, answered=60)  # 60 outcomes, all reversed
    result = judge(tmp_path / "few", store, roles={HASH_A: "main v1"})
    (group,) = result.groups
    assert group.online.status == "insufficient_data" and group.online.metrics == {}
    assert group.online.note == "60 outcomes (monitor.min_outcomes is 100): not judged"
    assert result.concept == "insufficient_data"
    # too few outcomes is reported, never a verdict of its own: feedback is optional
    assert result.status == "ok" and not result.message.startswith("credit-hgb in staging: concept")


def test_outcomes_of_one_class_only_cannot_judge_roc_auc(tmp_path: Path, store: Path) -> None:
    p = np.random.default_rng(5).beta(2, 3, 150)
    outcome_log.write(tmp_path / "logs", outcome_log.outcomes(["bad"] * 150, p, HASH_A))
    (group,) = judge(tmp_path / "logs", store).groups
    assert group.online.status == "insufficient_data"
    assert group.online.note == "all 150 outcomes are 'bad': ROC AUC needs both classes"
    assert "roc_auc" not in group.online.metrics and "accuracy" in group.online.metrics


def test_a_reference_without_test_metrics_gets_metrics_but_no_verdict(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    p, y = calibrated_binary(300, 6)
    publish(tmp_path / "store", "credit-hgb", HASH_A, CREDIT, p, None)
    outcome_log.write(tmp_path / "logs", outcome_log.outcomes(y, p, HASH_A))
    (group,) = judge(tmp_path / "logs", tmp_path / "store").groups
    assert group.online.status == "insufficient_data" and group.online.test is None
    assert "no test metrics" in group.online.note and "roc_auc" in group.online.metrics


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_every_task_is_judged_on_its_headline_metric(tmp_path: Path, monkeypatch, task: str) -> None:
    """Multiclass on accuracy: a model right less often than on its test split is flagged;
    regression on R²: truths further from the predictions are flagged."""
    monkeypatch.chdir(tmp_path)
    ds, model, classes = (HPC, "jobs", HPC.classes) if task == "multiclass" else (CONCRETE, "mix", None)
    make = calibrated_multiclass if task == "multiclass" else regression
    predicted, y = make(50_000, 7)
    publish(tmp_path / "store", model, HASH_A, ds, predicted, measured_metrics(task, predicted, y))
    predicted, y = make(500, 8)
    healthy = outcome_log.outcomes(y, predicted, HASH_A, model=model, classes=classes)
    outcome_log.write(tmp_path / "ok", healthy)
    (group,) = judge(tmp_path / "ok", tmp_path / "store", model).groups
    assert group.online.metric == outcomes.HEADLINE[task] and group.online.status == "ok", group.online.note
    rng = np.random.default_rng(9)
    if task == "multiclass":  # half the truths now ignore the model
        worse = np.where(rng.random(500) < 0.5, rng.integers(0, 4, 500), y)
    else:  # errors three times larger
        worse = predicted + 3 * (y - predicted)
    outcome_log.write(
        tmp_path / "bad", outcome_log.outcomes(worse, predicted, HASH_A, model=model, classes=classes)
    )
    (group,) = judge(tmp_path / "bad", tmp_path / "store", model).groups
    assert group.online.status == "drift", group.online.note


def test_the_rule_holds_its_false_alarm_bound_on_healthy_windows() -> None:
    """Measured, not asserted: 200 windows of a healthy version, judged on significance alone (no
    drop threshold), flag at most alpha of the time."""
    p, y = calibrated_binary(200_000, 10)
    x = inference_log.features(CREDIT, ingest.synthesize(CREDIT, 50, 1))
    ref = reference.of(CREDIT, x, np.column_stack([1 - p[:50], p[:50]]), 0, measured_metrics("binary", p, y))
    policy = MonitorParams(max_metric_drop=1e-9)
    rng = np.random.default_rng(11)
    flagged = 0
    for window in range(200):
        idx = rng.choice(len(p), 200, replace=False)
        rows = outcome_log.outcomes(y[idx], p[idx], HASH_A)
        found, _ = outcomes.assess({HASH_A: [(r, f"w{window}") for r in rows]}, {HASH_A: ref}, policy)
        flagged += found[HASH_A].status == "drift"
    assert flagged <= 0.05 * 200, flagged


# --------------------------------------------------------------------------- reading


def test_the_inference_reader_never_reads_the_feedback_log(tmp_path: Path) -> None:
    p, y = calibrated_binary(50, 12)
    outcome_log.write(tmp_path / "logs", outcome_log.outcomes(y, p, HASH_A))
    found = monitor.read_records(tmp_path / "logs", "credit-hgb", SINCE, UNTIL)
    assert found.rows == [] and found.files == 0 and found.skipped == 0
    assert len(monitor.read_outcomes(tmp_path / "logs", "credit-hgb", SINCE, UNTIL).rows) == 50


def test_reading_outcomes_skips_torn_foreign_and_repeated_lines_and_keeps_the_window(tmp_path: Path) -> None:
    p, y = calibrated_binary(10, 13)
    logs = tmp_path / "logs"
    before = outcome_log.outcomes(
        y[:4], p[:4], HASH_A, start=SINCE - timedelta(minutes=6), step=timedelta(seconds=30)
    )
    inside = outcome_log.outcomes(y[4:], p[4:], HASH_A, start=SINCE + timedelta(hours=22))
    inside = [dict(r, request_id=f"later-{i}") for i, r in enumerate(inside)]
    outcome_log.write(logs, before + inside, torn=True)
    day = logs / "credit-hgb" / "feedback" / "2026-11-23"
    lines = [
        dict(inside[0], model="other-model"),
        dict(inside[0], row=-1),
        {k: v for k, v in inside[0].items() if k != "truth"},
        inside[0],  # the same outcome again (a retried delivery): counted once
    ]
    (day / "z.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    found = monitor.read_outcomes(logs, "credit-hgb", SINCE, UNTIL)
    # 2 of `before` arrived from 00:00:00 on; `inside` lost its torn last line
    assert [r["request_id"] for r in found.rows] == [before[2]["request_id"], before[3]["request_id"]] + [
        f"later-{i}" for i in range(5)
    ]
    assert found.duplicates == 1 and found.records.skipped == 4
    reasons = " ".join(found.records.skip_examples)
    for why in ("not valid JSON (truncated?)", "model 'other-model'", "no row index 'row'", "no 'truth'"):
        assert why in reasons
    assert found.where[0].startswith(str(day / "060000-1-0.jsonl") + ":")


def test_outcomes_that_do_not_fit_the_model_are_left_out_and_named(tmp_path: Path, store: Path) -> None:
    p, y = calibrated_binary(120, 14)
    rows = outcome_log.outcomes(y, p, HASH_A)
    rows[0]["truth"] = "maybe"
    del rows[1]["probabilities"]["bad"]
    outcome_log.write(tmp_path / "logs", rows)
    (group,) = judge(tmp_path / "logs", store).groups
    assert group.online.outcomes == 118 and group.online.unusable == 2
    examples = " ".join(group.online.unusable_examples)
    assert "truth 'maybe' is not a class of the model (good, bad)" in examples
    assert "'probabilities' does not give every class a number" in examples


# --------------------------------------------------------------------------- outputs


def test_outputs_carry_online_metrics_and_concept_drift_per_version(tmp_path: Path, store: Path) -> None:
    serve(tmp_path / "logs", 400, seed=1)
    serve(tmp_path / "logs", 400, seed=2, content_hash=HASH_B, version="v2", flip=0.35)
    result = judge(tmp_path / "logs", store, roles={HASH_A: "main v1", HASH_B: "canary v2"})
    out = tmp_path / "out"
    monitor.write([result], out, POLICY, UNTIL)
    doc = json.loads((out / "monitor.json").read_text())
    (model,) = doc["models"]
    assert doc["status"] == "drift" and model["concept_drift"] == "drift" and model["input_drift"] is False
    assert model["outcomes"]["rows"] == 800 and model["outcomes"]["interval_level"] == pytest.approx(0.975)
    v2 = model["groups"][1]["online"]
    assert v2["status"] == "drift" and v2["metric"] == "roc_auc" and v2["outcomes"] == 400
    assert v2["online"]["high"] < v2["test"] and v2["drop"] == pytest.approx(
        v2["test"] - v2["online"]["value"]
    )
    assert set(v2["metrics"]) == set(tasks.METRICS["binary"]) and set(v2["test_metrics"]) == set(
        v2["metrics"]
    )

    md = (out / "monitor.md").read_text()
    assert md.startswith("## ⚠️ credit-hgb in staging: concept drift detected (v2: roc_auc")
    assert "### credit-hgb: outcomes (ground truth)" in md
    assert f"| v2 | `{HASH_B[:12]}` | 400 | roc_auc |" in md and "| **yes** |" in md

    prom = (out / "drift.prom").read_text()
    base = 'model="credit-hgb",env="staging"'
    assert f"modelops_drift_detected{{{base}}} 0\n" in prom  # the inputs did not drift
    assert f'modelops_concept_drift_detected{{{base},version="v1"}} 0\n' in prom
    assert f'modelops_concept_drift_detected{{{base},version="v2"}} 1\n' in prom
    assert f'modelops_monitor_window_outcomes{{{base},version="v2"}} 400\n' in prom
    line = next(
        x
        for x in prom.splitlines()
        if x.startswith(f'modelops_online_metric{{{base},version="v2",metric="roc_auc"}}')
    )
    assert float(line.split()[-1]) == pytest.approx(v2["online"]["value"], abs=1e-6)
    assert f'modelops_test_metric{{{base},version="v2",metric="roc_auc"}} {v2["test"]:.6g}\n' in prom
    for name in (
        "modelops_online_metric_low",
        "modelops_online_metric_high",
        "modelops_concept_drift_detected",
    ):
        assert f"# TYPE {name} gauge" in prom


def test_too_few_outcomes_is_nan_in_the_textfile_and_odd_versions_are_escaped(
    tmp_path: Path, store: Path
) -> None:
    p, y = calibrated_binary(20, 15)
    outcome_log.write(tmp_path / "logs", outcome_log.outcomes(y, p, HASH_A, version='v"1'))
    prom = monitor.render_prom([judge(tmp_path / "logs", store)], UNTIL)
    assert 'modelops_concept_drift_detected{model="credit-hgb",env="staging",version="v\\"1"} NaN' in prom
    assert "modelops_online_metric{" not in prom  # no metrics below min_outcomes
