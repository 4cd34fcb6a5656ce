"""`modelops monitor` on real log files and real reference files: grouping, lookup, edge cases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from modelops.declarations import Dataset, parse_dataset
from modelops.monitoring import monitor
from modelops.params_after import MonitorParams
from modelops.pipeline import ingest, reference
from tests import inference_log
from tests.conftest import declaration

MODEL = "credit-hgb"
POLICY = MonitorParams()
HASH_A, HASH_B = "a" * 64, "b" * 64
SINCE = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
UNTIL = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def shipped(name: str) -> Dataset:
    """A shipped dataset's declaration, parsed for real."""
    return parse_dataset(name, declaration(name), f"data/{name}/dataset.yaml")


CREDIT = shipped("credit")


@pytest.fixture(scope="module")
def population():
    """Synthetic applications (features) and a score for each, split into reference and traffic."""
    frame = inference_log.features(CREDIT, ingest.synthesize(CREDIT, 4000, 7))
    proba = np.random.default_rng(7).beta(2, 5, len(frame))
    return frame.iloc[:3000], proba[:3000], frame.iloc[3000:].reset_index(drop=True), proba[3000:]


@pytest.fixture
def store(tmp_path: Path, population, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An artifact store holding two versions whose references differ (B's incomes are 1.5x A's)."""
    ref_rows, ref_proba, _, _ = population
    root = tmp_path / "store"
    for content_hash, frame in ((HASH_A, ref_rows), (HASH_B, ref_rows.assign(income=ref_rows.income * 1.5))):
        (root / MODEL / content_hash).mkdir(parents=True)
        stats = reference.of(CREDIT, frame, np.column_stack([1 - ref_proba, ref_proba]), 0)
        reference.write(root / MODEL / content_hash / reference.REFERENCE_FILE, stats)
    monkeypatch.chdir(tmp_path)  # no models/ here: the local fallback has nothing to offer
    return root


def judge(log_dir: Path, store: Path, roles: dict | None = None) -> monitor.ModelResult:
    found = monitor.read_records(log_dir, MODEL, SINCE, UNTIL)
    return monitor.judge(MODEL, "staging", found, roles or {}, SINCE, UNTIL, POLICY, str(store))


def test_in_distribution_traffic_is_ok(tmp_path: Path, store: Path, population) -> None:
    _, _, rows, proba = population
    inference_log.write(tmp_path / "logs", inference_log.records(rows.iloc[:400], proba[:400], HASH_A))
    result = judge(tmp_path / "logs", store)
    assert result.status == "ok" and result.rows == 400
    assert "no drift in 400 rows" in result.message
    (group,) = result.groups
    assert group.reference == str(store / MODEL / HASH_A / reference.REFERENCE_FILE)


def test_each_version_is_compared_with_its_own_reference(tmp_path: Path, store: Path, population) -> None:
    """Mixed versions in one window: B's traffic has B's (scaled) incomes, which is normal for B."""
    _, _, rows, proba = population
    a = inference_log.records(rows.iloc[:300], proba[:300], HASH_A, "v1")
    b_rows = rows.iloc[300:600].assign(income=rows.income.iloc[300:600] * 1.5)
    b = inference_log.records(b_rows, proba[300:600], HASH_B, "v2", start=SINCE + timedelta(hours=12))
    inference_log.write(tmp_path / "logs", a + b)
    result = judge(tmp_path / "logs", store)
    assert [(g.version, g.rows, g.status) for g in result.groups] == [("v1", 300, "ok"), ("v2", 300, "ok")]
    # ...and the same B traffic, logged as if A had served it, is income drift
    swapped = [dict(r, hash=HASH_A, version="v1") for r in b]
    inference_log.write(tmp_path / "logs2", swapped)
    wrong = judge(tmp_path / "logs2", store)
    assert wrong.status == "drift" and wrong.groups[0].drifting() == ["income"]


def test_an_unknown_hash_names_the_hash_the_version_and_where_it_looked(
    tmp_path: Path, store: Path, population
) -> None:
    _, _, rows, proba = population
    unknown = "c" * 64
    inference_log.write(tmp_path / "logs", inference_log.records(rows.iloc[:200], proba[:200], unknown, "v9"))
    with pytest.raises(monitor.MonitorError) as err:
        judge(tmp_path / "logs", store)
    text = str(err.value)
    assert unknown in text and "version v9" in text
    assert str(store / MODEL / unknown) in text and "models/credit-hgb/model (no packaged model)" in text
    assert err.value.exit_code == 14


def test_an_empty_window_says_where_it_looked(tmp_path: Path, store: Path, population) -> None:
    _, _, rows, proba = population
    late = inference_log.records(rows.iloc[:200], proba[:200], HASH_A, start=UNTIL + timedelta(hours=1))
    inference_log.write(tmp_path / "logs", late)
    result = judge(tmp_path / "logs", store)
    assert result.status == "insufficient_data" and result.rows == 0
    assert "no inference records from 2026-11-23T00:00:00Z to 2026-11-24T00:00:00Z" in result.message
    missing = judge(tmp_path / "nowhere", store)
    assert f"no log directory {tmp_path / 'nowhere' / MODEL}" in missing.message
    with pytest.raises(monitor.InsufficientData) as err:
        monitor.enforce([result])
    assert err.value.exit_code == 15


def test_too_few_rows_is_insufficient_data_not_drift(tmp_path: Path, store: Path, population) -> None:
    _, _, rows, proba = population
    shifted = rows.iloc[:50].assign(income=rows.income.iloc[:50] * 3)
    inference_log.write(tmp_path / "logs", inference_log.records(shifted, proba[:50], HASH_A))
    result = judge(tmp_path / "logs", store, roles={HASH_A: "main v1"})
    assert result.status == "insufficient_data"
    assert "main v1 has 50 rows (monitor.min_rows is 100)" in result.message
    assert result.groups[0].checks == []


def test_a_deployed_version_without_traffic_is_not_silently_fine(
    tmp_path: Path, store: Path, population
) -> None:
    _, _, rows, proba = population
    inference_log.write(tmp_path / "logs", inference_log.records(rows.iloc[:300], proba[:300], HASH_A))
    result = judge(tmp_path / "logs", store, roles={HASH_A: "main v1", HASH_B: "canary v2"})
    assert result.status == "insufficient_data" and "canary v2 has 0 rows" in result.message
    # a few leftover rows of a version git no longer deploys do not block the verdict
    old = inference_log.records(rows.iloc[300:310], proba[300:310], HASH_B, "v0")
    inference_log.write(tmp_path / "logs", old)
    assert judge(tmp_path / "logs", store, roles={HASH_A: "main v1"}).status == "ok"


def test_reading_skips_torn_and_foreign_lines_and_respects_the_window(tmp_path: Path, population) -> None:
    _, _, rows, proba = population
    logs = tmp_path / "logs"
    before = inference_log.records(
        rows.iloc[:5], proba[:5], HASH_A, start=SINCE - timedelta(minutes=1), step=timedelta(seconds=20)
    )
    inside = inference_log.records(rows.iloc[5:10], proba[5:10], HASH_A, start=SINCE + timedelta(hours=23))
    inference_log.write(logs, before + inside, torn=True)
    other = inference_log.records(rows.iloc[:2], proba[:2], HASH_A, model="other-model")
    (logs / MODEL / "2026-11-23" / "mixed.jsonl").write_text(json.dumps(other[0]) + '\n{"broken\n')
    found = monitor.read_records(logs, MODEL, SINCE, UNTIL)
    # 2 of `before` fall inside (from 00:00:00), `inside` lost its torn last line
    assert [r["request_id"][-1] for r in found.rows] == ["3", "4", "0", "1", "2", "3"]
    assert found.skipped == 3
    reasons = " ".join(found.skip_examples)
    assert "not valid JSON (truncated?)" in reasons and "model 'other-model'" in reasons


def test_window_options() -> None:
    now = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    assert monitor.window(None, None, None, now) == (now - timedelta(hours=24), now)
    assert monitor.window(None, None, "30m", now) == (now - timedelta(minutes=30), now)
    start, end = monitor.window("2026-11-23T01:00:00+01:00", "2026-11-24", None, now)
    assert start == datetime(2026, 11, 23, 0, 0, tzinfo=UTC) and end == start + timedelta(days=1)
    with pytest.raises(monitor.MonitorError, match="not before"):
        monitor.window("2026-11-23T01:00:00+01:00", "2026-11-23", None, now)
    with pytest.raises(monitor.MonitorError, match="not both"):
        monitor.window("2026-11-22", None, "24h", now)
    with pytest.raises(monitor.MonitorError, match="not a duration"):
        monitor.window(None, None, "1 week", now)


def test_outputs_markdown_json_plots_and_prometheus_textfile(tmp_path: Path, store: Path, population) -> None:
    _, _, rows, proba = population
    shifted = rows.iloc[:300].assign(income=rows.income.iloc[:300] * 1.5)
    inference_log.write(tmp_path / "logs", inference_log.records(shifted, proba[:300], HASH_A))
    result = judge(tmp_path / "logs", store, roles={HASH_A: "main v1"})
    now = datetime(2026, 11, 24, 0, 5, tzinfo=UTC)
    out = tmp_path / "out"
    monitor.write([result], out, POLICY, now)
    doc = json.loads((out / "monitor.json").read_text())
    assert doc["status"] == "drift"
    (group,) = doc["models"][0]["groups"]
    assert group["drifting"] == ["income"] and group["deployed"] == "main v1"
    stem = f"{MODEL}-{HASH_A[:12]}"
    assert group["plots"] == [f"{stem}-prediction.png", f"{stem}-income.png"]
    for name in group["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "monitor.md").read_text()
    assert md.startswith("## ⚠️ credit-hgb in staging: drift detected (v1: income)")
    assert f"![{stem}-income.png]({stem}-income.png)" in md
    prom = (out / "drift.prom").read_text()
    labels = '{model="credit-hgb",env="staging"}'
    assert f"modelops_drift_detected{labels} 1\n" in prom
    assert f"modelops_monitor_last_run_timestamp_seconds{labels} {int(now.timestamp())}\n" in prom
    score = next(line for line in prom.splitlines() if line.startswith("modelops_drift_score{"))
    assert float(score.split()[-1]) == pytest.approx(doc["models"][0]["drift_score"], rel=1e-5)
    assert doc["models"][0]["drift_score"] > POLICY.psi
    assert "# TYPE modelops_drift_score gauge" in prom
    with pytest.raises(monitor.DriftDetected, match="income") as err:
        monitor.enforce([result])
    assert err.value.exit_code == 12


def test_not_judged_is_nan_in_the_textfile(tmp_path: Path, store: Path) -> None:
    result = judge(tmp_path / "nowhere", store)
    prom = monitor.render_prom([result], datetime(2026, 11, 24, tzinfo=UTC))
    assert 'modelops_drift_score{model="credit-hgb",env="staging"} NaN' in prom
    assert 'modelops_drift_detected{model="credit-hgb",env="staging"} 0' in prom
    assert 'modelops_monitor_window_rows{model="credit-hgb",env="staging"} 0' in prom


# --------------------------------------------------------------------------- other tasks

CONCRETE, HPC = shipped("concrete"), shipped("hpc")


def publish_reference(store: Path, model: str, content_hash: str, ds: Dataset, frame, predicted) -> None:
    """A reference.json for `model` in the store, as the package stage would have written it."""
    (store / model / content_hash).mkdir(parents=True)
    stats = reference.of(ds, frame, predicted, 0)
    reference.write(store / model / content_hash / reference.REFERENCE_FILE, stats)


def test_regression_logs_have_a_value_and_its_distribution_is_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The regression line format: `prediction` is a number and there is no `probabilities`."""
    monkeypatch.chdir(tmp_path)
    frame = inference_log.features(CONCRETE, ingest.synthesize(CONCRETE, 3000, 3))
    values = np.random.default_rng(3).normal(35, 12, len(frame))
    publish_reference(tmp_path / "store", "mix", HASH_A, CONCRETE, frame.iloc[:2000], values[:2000])
    traffic = frame.iloc[2000:2400].reset_index(drop=True)

    healthy = inference_log.for_model(CONCRETE, traffic, values[2000:2400], HASH_A, "mix")
    assert "probabilities" not in healthy[0] and isinstance(healthy[0]["prediction"], float)
    inference_log.write(tmp_path / "ok", healthy)
    found = monitor.read_records(tmp_path / "ok", "mix", SINCE, UNTIL)
    ok = monitor.judge("mix", "staging", found, {}, SINCE, UNTIL, POLICY, str(tmp_path / "store"))
    assert ok.status == "ok", [c for c in ok.groups[0].checks if c.drift]
    (group,) = ok.groups
    assert group.task == "regression" and ok.dataset == "concrete"
    [value] = [c for c in group.checks if c.name == "prediction"]
    assert value.subject == "prediction" and value.note == "predicted value" and value.rows == 400
    assert "predicted class" not in [c.name for c in group.checks]

    # The same inputs, but the model now predicts 1.6x higher: the value drifts, no feature does.
    higher = inference_log.for_model(CONCRETE, traffic, values[2000:2400] * 1.6, HASH_A, "mix")
    inference_log.write(tmp_path / "high", higher)
    found = monitor.read_records(tmp_path / "high", "mix", SINCE, UNTIL)
    drifted = monitor.judge("mix", "staging", found, {}, SINCE, UNTIL, POLICY, str(tmp_path / "store"))
    assert drifted.status == "drift" and drifted.groups[0].drifting() == ["prediction"]
    # the drift score (the alerts' PSI) is the features', not the prediction's
    assert drifted.score() is not None and drifted.score() < POLICY.psi
    out = tmp_path / "out"
    monitor.write([drifted], out, POLICY, UNTIL)
    doc = json.loads((out / "monitor.json").read_text())
    assert doc["models"][0]["dataset"] == "concrete" and doc["models"][0]["groups"][0]["task"] == "regression"
    assert (out / f"mix-{HASH_A[:12]}-prediction.png").read_bytes()[:4] == b"\x89PNG"
    assert "| prediction | ks |" in (out / "monitor.md").read_text()


def test_multiclass_logs_are_judged_on_predicted_classes_and_the_top_probability(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    frame = inference_log.features(HPC, ingest.synthesize(HPC, 3000, 5))
    rng = np.random.default_rng(5)
    proba = rng.dirichlet([4, 3, 2, 1], len(frame))
    publish_reference(tmp_path / "store", "jobs", HASH_A, HPC, frame.iloc[:2000], proba[:2000])
    traffic = frame.iloc[2000:2400].reset_index(drop=True)

    healthy = inference_log.for_model(HPC, traffic, proba[2000:2400], HASH_A, "jobs")
    assert set(healthy[0]["probabilities"]) == {"VF", "F", "M", "L"}
    inference_log.write(tmp_path / "ok", healthy)
    found = monitor.read_records(tmp_path / "ok", "jobs", SINCE, UNTIL)
    ok = monitor.judge("jobs", "staging", found, {}, SINCE, UNTIL, POLICY, str(tmp_path / "store"))
    assert ok.status == "ok", [c for c in ok.groups[0].checks if c.drift]
    assert ok.groups[0].task == "multiclass"
    [score] = [c for c in ok.groups[0].checks if c.name == "prediction"]
    assert score.note == "top probability"

    # The model now mostly answers L: the class shift is drift, and so is the score's distribution.
    shifted = rng.dirichlet([1, 1, 1, 12], 400)
    inference_log.write(tmp_path / "l", inference_log.for_model(HPC, traffic, shifted, HASH_A, "jobs"))
    found = monitor.read_records(tmp_path / "l", "jobs", SINCE, UNTIL)
    drifted = monitor.judge("jobs", "staging", found, {}, SINCE, UNTIL, POLICY, str(tmp_path / "store"))
    assert drifted.status == "drift"
    assert {"predicted class", "prediction"} <= set(drifted.groups[0].drifting())
    [cls] = [c for c in drifted.groups[0].checks if c.name == "predicted class"]
    assert "L " in cls.note and cls.effect > POLICY.max_class_shift
    monitor.write([drifted], tmp_path / "out", POLICY, UNTIL)
    assert (tmp_path / "out" / f"jobs-{HASH_A[:12]}-predicted-class.png").exists()


def test_a_time_key_is_read_like_ts_and_a_non_number_value_is_a_missing_prediction(tmp_path: Path) -> None:
    frame = inference_log.features(CONCRETE, ingest.synthesize(CONCRETE, 200, 1))
    rows = inference_log.for_model(CONCRETE, frame.iloc[:3], np.array([1.0, 2.0, 3.0]), HASH_A, "mix")
    rows = [{("time" if k == "ts" else k): v for k, v in r.items()} for r in rows]
    rows[2]["prediction"] = "high"
    path = tmp_path / "logs" / "mix" / "2026-11-23" / "a.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = monitor.read_records(tmp_path / "logs", "mix", SINCE, UNTIL)
    assert len(found.rows) == 3 and found.skipped == 0
    ref = reference.of(CONCRETE, frame, np.arange(len(frame), dtype=float), 0)
    traffic = monitor.frames(found.rows, ref)
    assert traffic.score.tolist()[:2] == [1.0, 2.0] and np.isnan(traffic.score[2])
    assert list(traffic.inputs.columns) == list(CONCRETE.features) and traffic.labels.empty


def test_run_lists_an_unpromoted_model_without_traffic_as_idle_and_judges_one_with_traffic(
    tmp_path: Path, store: Path, population
) -> None:
    """Found through the env's manifests: a model that serves nothing is not "insufficient data"."""
    import shutil

    from modelops.workspace import PROJECT_ROOT
    from tests.conftest import make_params

    shutil.copytree(PROJECT_ROOT / "gitops", tmp_path / "gitops")  # credit-hgb's manifests, unpromoted
    params = make_params({MODEL: {"estimator": "hist_gradient_boosting"}})
    out = tmp_path / "out"
    results = monitor.run("staging", params, SINCE, UNTIL, out, tmp_path / "logs", store=str(store))
    assert results == []
    doc = json.loads((out / "monitor.json").read_text())
    assert doc["idle"] == [MODEL] and doc["status"] == "insufficient_data"
    assert f"(not judged): {MODEL}" in (out / "monitor.md").read_text()
    with pytest.raises(monitor.InsufficientData, match="nothing was judged"):
        monitor.enforce(results)

    _, _, rows, proba = population
    inference_log.write(tmp_path / "logs", inference_log.records(rows.iloc[:200], proba[:200], HASH_A))
    (result,) = monitor.run("staging", params, SINCE, UNTIL, out, tmp_path / "logs", store=str(store))
    assert result.status == "ok" and result.dataset == "credit"
    assert json.loads((out / "monitor.json").read_text())["idle"] == []
