"""The Seldon Python-wrapper class: the same model, core and answers under seldon-core-microservice.

seldon-core 1.19 runs from the competitors' locked environment (numpy < 2), as it would in a Seldon
image; the project's own server runs from the main one. Both serve the same packaged model.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from modelops_serving.seldon import SeldonModel, SeldonRequestError

from modelops.pipeline import dataset
from tests.conftest import free_port, shipped_dataset
from tests.serving.conftest import MULTICLASS, REGRESSION

DS = shipped_dataset()

ROOT = Path(__file__).resolve().parents[2]
COMPETITORS_BIN = ROOT / "benchmarks" / "competitors" / ".venv" / "bin"
NAMES = list(tuple(DS.features))
VERSION = "v7"


@dataclass
class Proc:
    """A server process in its own process group (gunicorn and gRPC fork workers), and its log."""

    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)

    def wait_ok(self, path: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{self.url}{path} not ready:\n{self.log.read_text()[-4000:]}")


def model_env(packaged, **extra: str) -> dict[str, str]:
    return {
        "MODELOPS_MODEL_URI": str(packaged.path),
        "MODELOPS_MODEL_NAME": packaged.model.name,
        "MODELOPS_MODEL_VERSION": VERSION,
        "MODELOPS_EXPECTED_HASH": packaged.content_hash,
        "MODELOPS_SHUTDOWN_DELAY_S": "0",
    } | extra


def start(cmd: list[str], env: dict[str, str], cwd: Path, url: str) -> Proc:
    log = cwd / f"{Path(cmd[0]).name}-{url.rsplit(':', 1)[1]}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=os.environ | env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Proc(proc, url, log)


def seldon_cmd(http: int) -> list[str]:
    binary = COMPETITORS_BIN / "seldon-core-microservice"
    if not binary.exists():
        raise AssertionError("seldon-core not installed: uv sync --frozen --project benchmarks/competitors")
    ports = ["--http-port", str(http), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
    return [str(binary), "modelops_serving.seldon.SeldonModel", "--service-type", "MODEL", *ports]


@pytest.fixture(scope="module")
def both(packaged, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc]]:
    """seldon-core-microservice with the wrapper, and `python -m modelops_serving`, on one model."""
    work = tmp_path_factory.mktemp("seldon")
    started: list[Proc] = []
    try:
        http = free_port()
        seldon = start(seldon_cmd(http), model_env(packaged), work, f"http://127.0.0.1:{http}")
        started.append(seldon)
        port = free_port()
        env = model_env(packaged, MODELOPS_PORT=str(port), MODELOPS_CACHE_DIR=str(work / "cache"))
        ours = start([sys.executable, "-m", "modelops_serving"], env, work, f"http://127.0.0.1:{port}")
        started.append(ours)
        seldon.wait_ok("/health/status")
        ours.wait_ok("/v2/health/ready")
        yield seldon, ours
    finally:
        for proc in started:
            proc.stop()


def reference_proba(packaged, rows: list[list]) -> np.ndarray:
    """The in-process pipeline on a DataFrame (None as NaN): what MLflow's pyfunc would answer."""
    import pandas as pd

    frame = pd.DataFrame([[np.nan if v is None else v for v in r] for r in rows], columns=NAMES)
    return packaged.pipeline.predict_proba(dataset.to_features(DS, frame))


def predict(proc: Proc, names: list[str], rows: list[list]) -> httpx.Response:
    body = {"data": {"names": names, "ndarray": rows}}
    return httpx.post(proc.url + "/api/v1.0/predictions", json=body, timeout=30)


def test_both_runtimes_give_identical_predictions(both: tuple[Proc, Proc], packaged) -> None:
    seldon, ours = both
    rows = packaged.rows[:300]
    assert any(None in r for r in rows), "the sample should include missing values"
    a, b = predict(seldon, NAMES, rows), predict(ours, NAMES, rows)
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    got_seldon = np.asarray(a.json()["data"]["ndarray"])
    got_ours = np.asarray(b.json()["data"]["ndarray"])
    assert got_seldon.shape == (len(rows), 2)
    np.testing.assert_array_equal(got_seldon, got_ours)
    np.testing.assert_allclose(got_seldon, reference_proba(packaged, rows), rtol=1e-9, atol=1e-12)


def test_feature_names_in_any_order(both: tuple[Proc, Proc], packaged) -> None:
    seldon, _ours = both
    rows = packaged.rows[:50]
    order = list(range(len(NAMES)))
    random.Random(3).shuffle(order)
    shuffled = [[r[i] for i in order] for r in rows]
    names = [NAMES[i] for i in order]
    plain = np.asarray(predict(seldon, NAMES, rows).json()["data"]["ndarray"])
    for proc in both:
        answer = predict(proc, names, shuffled)
        assert answer.status_code == 200, answer.text
        np.testing.assert_array_equal(np.asarray(answer.json()["data"]["ndarray"]), plain)


def test_seldon_response_names_classes_and_tags_the_model(both: tuple[Proc, Proc], packaged) -> None:
    seldon, _ = both
    answer = predict(seldon, NAMES, packaged.rows[:2]).json()
    assert answer["data"]["names"] == ["good", "bad"]
    tags = answer["meta"]["tags"]
    assert tags == {
        "model_name": packaged.model.name,
        "model_version": VERSION,
        "model_hash": packaged.content_hash,
    }
    status = httpx.get(seldon.url + "/health/status", timeout=10).json()
    assert status["jsonData"]["content_hash"] == packaged.content_hash
    metadata = httpx.get(seldon.url + "/metadata", timeout=10).json()
    assert metadata["name"] == packaged.model.name and metadata["versions"] == [VERSION]


def test_seldon_custom_metrics_count_rows(both: tuple[Proc, Proc], packaged) -> None:
    seldon, _ = both
    answer = predict(seldon, NAMES, packaged.rows[:7]).json()
    metrics = {(m["key"], m["tags"].get("class")): m["value"] for m in answer["meta"]["metrics"]}
    assert metrics[("modelops_seldon_rows_total", None)] == 7
    assert (
        metrics[("modelops_seldon_predicted_class_total", "good")]
        + metrics[("modelops_seldon_predicted_class_total", "bad")]
        == 7
    )


@pytest.mark.parametrize(
    ("rows", "names", "message"),
    [
        ([[1.0, 2.0]], None, "expects 13 features"),
        ([["x"] * 13], NAMES, "feature 'seniority', row 0: expected a number"),
        # (not "a number in a string column": seldon-core's np.array stringifies mixed rows first)
        ([[1.0] * 13], [*NAMES[:-1], "age"], "feature name 'age' appears twice"),
        ([[1.0] * 13], [*NAMES[:-1], "salary"], "unknown feature(s) ['salary']"),
    ],
)
def test_bad_input_is_a_4xx_in_both_and_seldon_stays_up(
    both: tuple[Proc, Proc], packaged, rows: list, names: list | None, message: str
) -> None:
    seldon, ours = both
    body = {"data": {"ndarray": rows} | ({"names": names} if names else {})}
    for proc in both:
        answer = httpx.post(proc.url + "/api/v1.0/predictions", json=body, timeout=10)
        assert 400 <= answer.status_code < 500, (proc.url, answer.text)
        assert message in answer.text, (proc.url, answer.text)
    assert predict(seldon, NAMES, packaged.rows[:1]).status_code == 200
    assert predict(ours, NAMES, packaged.rows[:1]).status_code == 200


def test_seldon_refuses_a_model_whose_hash_differs(packaged, tmp_path: Path) -> None:
    http = free_port()
    env = model_env(packaged, MODELOPS_EXPECTED_HASH="0" * 64)
    proc = start(seldon_cmd(http), env, tmp_path, f"http://127.0.0.1:{http}")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "content hash mismatch" not in proc.log.read_text():
            time.sleep(0.2)
        assert "content hash mismatch" in proc.log.read_text()
        with contextlib.suppress(httpx.HTTPError):
            assert httpx.get(proc.url + "/health/status", timeout=2).status_code != 200
    finally:
        proc.stop()


def test_wrapper_in_process_reads_seldons_stringified_arrays(packaged) -> None:
    """numpy turns rows mixing numbers and strings into all-strings; the wrapper reads them back."""
    model = SeldonModel(
        model_uri=str(packaged.path), expected_hash=packaged.content_hash, model_version=VERSION
    )
    model.load()
    full = [r for r in packaged.rows if None not in r][:20]
    as_seldon_sends = np.array(full)
    assert as_seldon_sends.dtype.kind == "U"
    got = model.predict(as_seldon_sends, NAMES)
    expected = np.asarray(predict_core(packaged, full))
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(SeldonRequestError, match="not a finite number"):
        model.predict(np.array([[*["nan"] * 9, "rent", "single", "no", "fixed"]]), NAMES)
    with pytest.raises(SeldonRequestError, match="2-D"):
        model.predict(np.array([1.0, 2.0]), None)
    assert model.tags()["model_hash"] == packaged.content_hash


def predict_core(packaged, rows: list[list]) -> np.ndarray:
    from modelops_serving.settings import Settings
    from modelops_serving.validation import rows_from_values

    return packaged.model.predict(rows_from_values(rows, NAMES, packaged.model, Settings()))


@pytest.mark.parametrize("kind", [REGRESSION, MULTICLASS])
def test_seldon_core_serves_the_other_tasks(task_models, kind: str, tmp_path: Path) -> None:
    """seldon-core-microservice with the wrapper on a regression and a multiclass model: the
    pipeline's answers, named by the target or the classes, and the task's custom metrics."""
    from tests.serving.tasks import FEATURES

    packaged = task_models(kind)
    http = free_port()
    proc = start(seldon_cmd(http), model_env(packaged), tmp_path, f"http://127.0.0.1:{http}")
    try:
        proc.wait_ok("/health/status")
        rows = [r for r in packaged.rows if None in r][:5] + packaged.rows[:20]
        answer = predict(proc, list(FEATURES), rows)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["data"]["names"] == list(packaged.model.outputs)
        got = np.asarray(body["data"]["ndarray"])
        assert got.shape == (len(rows), len(packaged.model.outputs))
        np.testing.assert_allclose(got, packaged.reference(rows), rtol=1e-9, atol=1e-12)
        metrics = {m["key"]: m for m in body["meta"]["metrics"]}
        assert metrics["modelops_seldon_rows_total"]["value"] == len(rows)
        if packaged.task == "regression":
            assert metrics["modelops_seldon_prediction_mean"]["value"] == pytest.approx(got.mean())
        else:
            assert "modelops_seldon_predicted_class_total" in metrics
        bad = httpx.post(
            proc.url + "/api/v1.0/predictions", json={"data": {"ndarray": [[1.0, 2.0]]}}, timeout=10
        )
        assert 400 <= bad.status_code < 500 and "expects 4 features" in bad.text
    finally:
        proc.stop()


def test_seldon_feedback_recomputes_the_prediction_and_counts_outcomes(
    both: tuple[Proc, Proc], packaged
) -> None:
    """Seldon's wrapper gives send_feedback the request's features and the truth (no request id):
    the answer is recomputed, the truth checked as the server checks it, the outcomes counted."""
    seldon, _ = both
    rows = packaged.rows[:4]
    predicted = np.asarray(predict(seldon, NAMES, rows).json()["data"]["ndarray"])
    truth = ["bad", "good", "good", "bad"]
    correct = sum(("good", "bad")[int(k)] == t for k, t in zip(predicted.argmax(axis=1), truth, strict=True))
    body = {
        "request": {"data": {"names": NAMES, "ndarray": rows}},
        "response": {"meta": {}, "data": {"names": ["good", "bad"], "ndarray": predicted.tolist()}},
        "truth": {"data": {"ndarray": truth}},
        "reward": 1.0,
    }
    answer = httpx.post(seldon.url + "/api/v1.0/feedback", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    metrics = {m["key"]: m["value"] for m in answer.json()["meta"]["metrics"]}
    assert metrics == {
        "modelops_seldon_feedback_rows_total": 4,
        "modelops_seldon_feedback_correct_total": correct,
    }
    refused = httpx.post(
        seldon.url + "/api/v1.0/feedback", json=body | {"truth": {"data": {"ndarray": ["bad"]}}}, timeout=30
    )
    assert refused.status_code == 400 and "truth has 1 value(s)" in refused.text
    no_request = {k: v for k, v in body.items() if k != "request"}
    refused = httpx.post(seldon.url + "/api/v1.0/feedback", json=no_request, timeout=30)
    assert refused.status_code == 400 and "no request features" in refused.text


def test_wrapper_feedback_in_process_for_a_regressor(task_models) -> None:
    packaged = task_models(REGRESSION)
    model = SeldonModel(model_uri=str(packaged.path), expected_hash=packaged.content_hash)
    model.load()
    rows = [r for r in packaged.rows if None not in r][:3]
    out = model.predict(rows, None)[:, 0]
    truth = np.array([[10.0], [20.0], [30.0]])  # Seldon hands a column of the truth's ndarray
    assert model.send_feedback(np.array(rows, dtype=object), None, 0.0, truth) == []
    (rows_total, abs_error) = model.metrics()
    assert rows_total["value"] == 3 and abs_error["key"] == "modelops_seldon_feedback_abs_error_total"
    assert abs_error["value"] == pytest.approx(float(np.abs(out - [10.0, 20.0, 30.0]).sum()))
    with pytest.raises(SeldonRequestError, match="row 1: 'x' is not a finite number"):
        model.send_feedback(np.array(rows, dtype=object), None, 0.0, np.array([1.0, "x", 2.0], dtype=object))
