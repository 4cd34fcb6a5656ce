"""The inference log contract end to end: what a real server writes is what `modelops monitor` reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from modelops.delivery import publish
from modelops.monitoring import logs, monitor
from modelops.params_after import MonitorParams
from tests.serving.conftest import Packaged
from tests.serving.test_server import V1, metric


def test_monitor_judges_the_rows_a_real_server_logged(launch, packaged: Packaged, tmp_path: Path) -> None:
    root = tmp_path / "inference-log"
    srv = launch(inference_log_dir=str(root), inference_log_sample_rate="1")
    srv.wait_ready()
    rows = packaged.rows[:300]
    names = [f.name for f in packaged.model.features]  # the model's signature: the rows' column order
    since = datetime.now(UTC) - timedelta(seconds=1)
    with srv.client() as c:
        for start in range(0, len(rows), 100):
            body = {"data": {"names": names, "ndarray": rows[start : start + 100]}}
            assert c.post(V1, json=body).status_code == 200
        srv.wait(lambda: metric(c.get("/metrics").text, "modelops_inference_log_records_total") == len(rows))
    until = datetime.now(UTC) + timedelta(seconds=1)
    store = tmp_path / "store"
    publish.publish(packaged.path, packaged.name, str(store))  # the reference travels inside the model

    found = monitor.read_records(root, packaged.name, since, until)
    assert len(found.rows) == len(rows) and found.skipped == 0
    roles = {packaged.content_hash: f"main {packaged.version}"}
    result = monitor.judge(packaged.name, "staging", found, roles, since, until, MonitorParams(), str(store))
    (group,) = result.groups
    assert (group.versions, group.rows, group.role) == (
        [packaged.version],
        len(rows),
        f"main {packaged.version}",
    )
    assert group.reference == str(store / packaged.name / packaged.content_hash / "reference.json")
    assert result.status == "ok", [c for c in group.checks if c.drift]
    assert group.task == found_task(found.rows)
    # every logged feature was compared, from the model's own reference (no list in code)
    compared = {c.name.removesuffix(" (missing)") for c in group.checks if c.subject == "feature"}
    assert compared == set(names)


def found_task(rows: list[dict]) -> str:
    """What the logged lines say the task is: a number predicted (regression) or class probabilities."""
    first = rows[0]
    if "probabilities" not in first:
        assert isinstance(first["prediction"], float)
        return "regression"
    return "binary" if len(first["probabilities"]) == 2 else "multiclass"


def test_feedback_files_beside_the_log_are_outcomes_not_inference_rows(
    launch, packaged: Packaged, tmp_path: Path
) -> None:
    """The server writes outcomes under `<model>/feedback/`: the monitor's inference reader skips them
    (not even as unreadable lines), and `read_feedback` reads exactly them."""
    root = tmp_path / "inference-log"
    srv = launch(inference_log_dir=str(root), inference_log_sample_rate="1")
    srv.wait_ready()
    since = datetime.now(UTC) - timedelta(seconds=1)
    with srv.client() as c:
        answer = c.post(V1, json={"data": {"ndarray": packaged.rows[:5]}})
        truth = {"data": {"ndarray": ["good", "bad", "good", "good", "bad"]}}
        feedback = {"response": answer.json(), "truth": truth, "reward": 1}
        assert c.post("/api/v1.0/feedback", json=feedback).status_code == 200
        srv.wait(lambda: metric(c.get("/metrics").text, "modelops_feedback_log_records_total") == 5)
        srv.wait(lambda: metric(c.get("/metrics").text, "modelops_inference_log_records_total") == 5)
    until = datetime.now(UTC) + timedelta(seconds=1)
    assert list((root / packaged.name / "feedback").glob("*/*.jsonl"))

    found = logs.read_records(root, packaged.name, since, until)
    assert (len(found.rows), found.skipped, found.files) == (5, 0, 1)
    assert all("inputs" in r and "truth" not in r for r in found.rows)
    outcomes = logs.read_feedback(root, packaged.name, since, until)
    assert (len(outcomes.rows), outcomes.skipped, outcomes.files) == (5, 0, 1)
    request_id = answer.headers["x-request-id"]
    assert [(r["request_id"], r["row"], r["truth"]) for r in outcomes.rows] == [
        (request_id, k, t) for k, t in enumerate(truth["data"]["ndarray"])
    ]
    assert {r["request_id"] for r in found.rows} == {request_id}  # the join key of both logs
