"""Multiclass and regression models end to end: the MLmodel contract, the verified fast path, every
protocol form through a real server, metadata, metrics, the inference log, and values the model
cannot compute with (a 4xx, never a 5xx or a null)."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml
from modelops_serving import fastpath, protocol_v1
from modelops_serving.batching import Batcher
from modelops_serving.fastpath import generate_rows
from modelops_serving.model import ModelLoadError, load_model
from modelops_serving.settings import Settings
from modelops_serving.validation import rows_from_values

from tests.serving.conftest import MULTICLASS, REGRESSION
from tests.serving.tasks import FEATURES, GRADES, KINDS, TARGET
from tests.serving.test_inference_log import in_process, in_process_metric, read_log, wait_until
from tests.serving.test_server import V1, metric, v2_body, v2_path

SERVED = [REGRESSION, MULTICLASS]
# The extreme inputs overflow on purpose; the server answers them with a 400.
OVERFLOW = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


def mixed_rows(packaged, n: int = 6) -> list[list]:
    """Rows with and without missing values."""
    missing = [r for r in packaged.rows if None in r]
    full = [r for r in packaged.rows if None not in r]
    return missing[: n // 2] + full[: n - n // 2]


# ---- loading: the task, the outputs, the fast path ------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_estimator_loads_its_task_with_a_verified_fast_path(task_models, kind: str) -> None:
    packaged = task_models(kind)
    model = packaged.model
    if packaged.task == "regression":
        assert (model.task, model.classes, model.outputs) == ("regression", (), (TARGET,))
    else:
        assert model.task == "multiclass"
        assert model.classes == model.outputs == GRADES == tuple(packaged.pipeline.classes_)
    assert model.fast_path, "every estimator of the project has a numpy fast path"
    width = len(model.outputs)
    for n in (1, 7, 64, 65, 300):  # both branches: all trees at once (<= 64 rows) and sklearn's
        rows = generate_rows(model, n, seed=n)
        got = model.predict(rows)
        assert got.shape == (n, width) and got.dtype == np.float64
        np.testing.assert_allclose(got, model.predict_pipeline(rows), rtol=1e-9, atol=1e-12)
    x = rows_from_values(packaged.rows, None, model, Settings())
    np.testing.assert_allclose(model.predict(x), packaged.reference(packaged.rows), rtol=1e-9, atol=1e-12)
    if kind.startswith("hgb"):
        estimator = model.pipeline.steps[-1][1]
        assert fastpath._small_batch_trees(estimator, model) is not None


@pytest.mark.parametrize("kind", [MULTICLASS, REGRESSION, "logistic_regression", "ridge"])
@pytest.mark.parametrize("flaw", ["small batches", "large batches", "raises"])
def test_a_fast_path_that_disagrees_is_never_installed(
    task_models, kind: str, flaw: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fast path wrong on either branch, or failing, leaves the model on the pipeline."""
    packaged = task_models(kind)
    build = fastpath.build_fast_path

    def flawed(model):
        fast = build(model)

        def wrong(x):
            out = fast(x)
            if flaw == "raises":
                raise IndexError("a fitted attribute this code did not expect")
            if (len(x) <= fastpath.SMALL_BATCH_ROWS) == (flaw == "small batches"):
                # columns swapped (classifiers) or a relative error of 1e-7 (regression)
                out = out[:, ::-1].copy() if out.shape[1] > 1 else out * (1 + 1e-7)
            return out

        return wrong

    monkeypatch.setattr(fastpath, "build_fast_path", flawed)
    with caplog.at_level(logging.WARNING, logger="modelops_serving.fastpath"):
        model = load_model(str(packaged.path), expected_hash=packaged.content_hash, name="m", version="v")
    assert not model.fast_path and model._fast is None
    assert any("using the pipeline" in r.getMessage() for r in caplog.records)
    rows = generate_rows(model, 9, seed=4)
    np.testing.assert_array_equal(model.predict(rows), model.predict_pipeline(rows))


def with_metadata(packaged, dest: Path, **changes) -> Path:
    """A copy of the model whose MLmodel metadata has these keys changed (None removes a key)."""
    shutil.copytree(packaged.path, dest)
    doc = yaml.safe_load((dest / "MLmodel").read_text())
    meta = doc.get("metadata") or {}
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    doc["metadata"] = meta
    (dest / "MLmodel").write_text(yaml.safe_dump(doc))
    return dest


def test_the_mlmodel_metadata_contract(task_models, packaged, tmp_path: Path) -> None:
    multiclass, regression = task_models(MULTICLASS), task_models(REGRESSION)

    def load(source, name: str, **changes):
        path = with_metadata(source, tmp_path / name, **changes)
        return load_model(str(path), expected_hash=None, name=name, version="v")

    # the binary model the project packages today has no task: binary, as before
    assert packaged.model.task == "binary" and packaged.model.classes == ("good", "bad")
    assert protocol_v1.metadata(packaged.model)["custom"]["task"] == "binary"
    # class names come from the metadata, in pipeline.classes_ order; else the string classes
    renamed = load(multiclass, "renamed", class_names=["fail", "low", "mid", "very-fine"])
    assert renamed.classes == ("fail", "low", "mid", "very-fine")
    assert load(multiclass, "unnamed", class_names=None).classes == GRADES
    assert load(regression, "untargeted", target=None).outputs == ("prediction",)
    refused = [
        (multiclass, {"task": None}, "task binary (metadata.task absent or binary) but 4 classes"),
        (multiclass, {"task": "ranking"}, "metadata.task is 'ranking'; expected one of"),
        (multiclass, {"class_names": ["a", "b", "c"]}, "3 class names"),
        (multiclass, {"class_names": ["a", "a", "b", "c"]}, "not distinct"),
        (multiclass, {"task": "regression", "class_names": None}, "the model is a classifier"),
        (regression, {"task": None}, "has no predict_proba"),
        (regression, {"class_names": ["x"]}, "a regression model has no class_names"),
        (regression, {"target": ["a", "b"]}, "metadata.target must be a non-empty string"),
    ]
    for k, (source, changes, message) in enumerate(refused):
        with pytest.raises(ModelLoadError, match=re.escape(message)):
            load(source, f"refused-{k}", **changes)


def test_a_model_whose_output_does_not_match_its_metadata_is_refused(task_models, tmp_path: Path) -> None:
    """A regressor that predicts two columns per row: its own input example shows it at load."""
    import cloudpickle
    from sklearn.linear_model import Ridge
    from sklearn.multioutput import MultiOutputRegressor

    from tests.serving.tasks import generate, pipeline_for

    packaged = task_models("ridge")
    path = with_metadata(packaged, tmp_path / "two-outputs")
    x, y, _ = generate(100, seed=3)
    two = pipeline_for(MultiOutputRegressor(Ridge()), scale=True).fit(x, np.c_[y, -y])
    (path / "model.pkl").write_bytes(cloudpickle.dumps(two))
    with pytest.raises(ModelLoadError, match=r"answers shape \[5, 2\] for 5 example rows"):
        load_model(str(path), expected_hash=None, name="two", version="v")


# ---- a real server per task -----------------------------------------------------------------------


def decode(form: str, body: dict, n: int, outputs: tuple[str, ...]) -> np.ndarray:
    """The (n, outputs) predictions of a 200 answer, its names and shapes checked."""
    k = len(outputs)
    if form.startswith("v2"):
        (out,) = body["outputs"]
        name = "probabilities" if k > 1 else "predictions"
        assert (out["name"], out["shape"], out["datatype"]) == (name, [n, k], "FP64")
        assert out["parameters"]["names"] == list(outputs)
        return np.reshape(out["data"], (n, k))
    if "jsonData" in body:
        predictions = body["jsonData"]["predictions"]
        assert [list(p) for p in predictions] == [list(outputs)] * n
        return np.asarray([[p[o] for o in outputs] for p in predictions])
    data = body["data"]
    assert data["names"] == list(outputs)
    if "tensor" in data:
        assert data["tensor"]["shape"] == [n, k]
        return np.reshape(data["tensor"]["values"], (n, k))
    assert [len(r) for r in data["ndarray"]] == [k] * n
    return np.asarray(data["ndarray"])


@pytest.mark.parametrize("kind", SERVED)
def test_every_request_form_gives_the_pipeline_answer(task_server, task_models, kind: str) -> None:
    srv, packaged = task_server(kind), task_models(kind)
    model = packaged.model
    rows = mixed_rows(packaged)
    n, names = len(rows), list(FEATURES)
    perm = [2, 0, 3, 1]
    seldon = orjson.dumps({"data": {"ndarray": rows}}).decode()
    matrix = {"inputs": [{"name": "x", "shape": [n, 4], "datatype": "BYTES", "data": rows}]}
    with srv.client() as c:
        answers = {
            "ndarray": c.post(V1, json={"data": {"names": names, "ndarray": rows}}),
            "reordered": c.post(
                V1,
                json={
                    "data": {
                        "names": [names[i] for i in perm],
                        "ndarray": [[r[i] for i in perm] for r in rows],
                    }
                },
            ),
            "tensor": c.post(
                V1, json={"data": {"tensor": {"shape": [n, 4], "values": [v for r in rows for v in r]}}}
            ),
            "instances": c.post(
                V1, json={"jsonData": {"instances": [dict(zip(names, r, strict=True)) for r in rows]}}
            ),
            "columns": c.post(V1, json={"jsonData": {f: [r[j] for r in rows] for j, f in enumerate(names)}}),
            "form": c.post(V1, data={"json": seldon}),
            "/predict": c.post("/predict", json={"data": {"ndarray": rows}}),
            "GET /predict": c.get("/predict", params={"json": seldon}),
            "v2 per feature": c.post(v2_path(packaged), json=v2_body(packaged, rows)),
            "v2 matrix": c.post(v2_path(packaged), json=matrix),
            "v2 version": c.post(
                f"/v2/models/{packaged.name}/versions/{packaged.version}/infer", json=matrix
            ),
        }
    expected = packaged.reference(rows)
    assert expected.shape == (n, len(model.outputs))
    for form, r in answers.items():
        assert r.status_code == 200, (form, r.text)
        assert r.headers["x-model-hash"] == packaged.content_hash, form
        got = decode(form, r.json(), n, model.outputs)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=form)
    if kind == REGRESSION:  # the exact shape of the answer: one value per row, named by the target
        body = answers["ndarray"].json()["data"]
        assert body["names"] == [TARGET] and all(len(r) == 1 for r in body["ndarray"])
        assert answers["instances"].json()["jsonData"]["predictions"][0] == {TARGET: body["ndarray"][0][0]}
    else:
        np.testing.assert_allclose(expected.sum(axis=1), 1.0)


@pytest.mark.parametrize("kind", SERVED)
def test_metadata_describes_the_task_and_its_outputs(task_server, task_models, kind: str) -> None:
    srv, packaged = task_server(kind), task_models(kind)
    model = packaged.model
    outputs, k = list(model.outputs), len(model.outputs)
    name = "predictions" if kind == REGRESSION else "probabilities"
    other = "probabilities" if kind == REGRESSION else "predictions"
    body = v2_body(packaged, packaged.rows[:2])
    with srv.client() as c:
        v1 = c.get("/metadata").json()
        v2 = c.get(f"/v2/models/{packaged.name}").json()
        asked = c.post(v2_path(packaged), json=body | {"outputs": [{"name": name}]})
        wrong = c.post(v2_path(packaged), json=body | {"outputs": [{"name": other}]})
    assert v1["outputs"] == [{"messagetype": "ndarray", "schema": {"names": outputs}, "shape": [k]}]
    assert v1["task"] == v1["custom"]["task"] == model.task
    assert v1["custom"]["fast_path"] == "true"
    assert [f["name"] for f in v1["features"]] == list(FEATURES)
    assert v2["outputs"] == [
        {"name": name, "datatype": "FP64", "shape": [-1, k], "parameters": {"names": outputs}}
    ]
    assert v2["parameters"]["task"] == model.task
    assert [(i["name"], i["datatype"]) for i in v2["inputs"]][-1] == ("mix", "BYTES")
    assert asked.status_code == 200, asked.text
    assert wrong.status_code == 400 and f"the model has {name!r}" in wrong.json()["error"]


@pytest.mark.parametrize("kind", SERVED)
def test_metrics_count_classes_or_observe_values(task_server, task_models, kind: str) -> None:
    srv, packaged = task_server(kind), task_models(kind)
    name = packaged.name
    rows_v1, rows_v2 = packaged.rows[:50], packaged.rows[50:80]
    with srv.client() as c:
        before = c.get("/metrics").text
        ra = c.post(V1, json={"data": {"ndarray": rows_v1}})
        assert ra.status_code == 200, (ra.text, srv.log_text()[-2000:])
        a = ra.json()["data"]["ndarray"]
        b = c.post(v2_path(packaged), json=v2_body(packaged, rows_v2)).json()["outputs"][0]["data"]
        after = c.get("/metrics").text
    k = len(packaged.model.outputs)
    answered = np.vstack([np.asarray(a), np.reshape(b, (len(rows_v2), k))])

    def delta(metric_name: str, **labels: str) -> float:
        return metric(after, metric_name, **labels) - metric(before, metric_name, **labels)

    if kind == MULTICLASS:
        predicted = np.bincount(answered.argmax(axis=1), minlength=len(GRADES))
        counted = [delta("modelops_predictions_total", model=name, **{"class": g}) for g in GRADES]
        assert counted == predicted.tolist() and sum(counted) == 80
        assert f'modelops_prediction_value_count{{model="{name}"}}' not in after
    else:
        values = answered[:, 0]
        assert delta("modelops_prediction_value_count", model=name) == 80
        assert delta("modelops_prediction_value_sum", model=name) == pytest.approx(values.sum(), rel=1e-9)
        assert delta("modelops_prediction_distribution_bucket", le="+Inf", model=name) == 80
        assert delta("modelops_prediction_distribution_bucket", le="20.0", model=name) == (values <= 20).sum()
        assert 'modelops_predictions_total{class="' not in after  # no class counters at all
    assert delta("modelops_requests_total", endpoint="v1", status="200") == 1


@pytest.mark.parametrize("kind", SERVED)
def test_bad_input_is_a_4xx_naming_the_problem(task_server, task_models, kind: str) -> None:
    srv, packaged = task_server(kind), task_models(kind)
    good = packaged.rows[0]
    v2_missing = v2_body(packaged, [good])
    v2_missing["inputs"] = v2_missing["inputs"][1:]
    v1_cases = [
        ({"data": {"ndarray": [good[:3]]}}, "row 0 has 3 values; the model expects 4 features"),
        ({"data": {"ndarray": [["x", *good[1:]]]}}, "feature 'cement', row 0: expected a number, got str"),
        ({"data": {"ndarray": [[*good[:3], 1.5]]}}, "feature 'mix', row 0: expected a string"),
        ({"data": {"names": ["water", *FEATURES[1:]], "ndarray": [good]}}, "unknown feature(s) ['water']"),
        ({"jsonData": {"instances": [{"cement": 1.0}]}}, "missing feature(s)"),
    ]
    with srv.client() as c:
        for body, message in v1_cases:
            r = c.post(V1, json=body)
            assert r.status_code == 400 and message in r.json()["status"]["info"], (body, r.text)
        r = c.post(
            V1,
            content=b'{"data": {"ndarray": [[NaN, 0.5, 28, "A"]]}}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400 and "not valid JSON" in r.text
        r = c.post(v2_path(packaged), json=v2_missing)
        assert r.status_code == 400 and "missing input(s) ['cement']" in r.json()["error"]
        assert c.get("/v2/health/ready").status_code == 200


# ---- values the model cannot compute with -------------------------------------------------------


@OVERFLOW
def test_extreme_values_are_a_400_and_fail_no_other_request(task_models, tmp_path: Path) -> None:
    """Ridge on valid but extreme inputs: an infinite prediction, or infinity after scaling (sklearn
    raises): each a 400 naming the problem, never a 500 or a null, and never logged or counted."""
    packaged = task_models("ridge")
    good = packaged.rows[:2]
    overflow = [300.0, 1e307, 28.0, "A"]  # finite after scaling; times the coefficient: -inf
    too_large = [300.0, 1.7e308, 28.0, "A"]  # infinity already after scaling
    with np.errstate(all="ignore"):
        assert np.isinf(packaged.reference([overflow])).all()
    root = tmp_path / "log"

    async def run() -> None:
        async with in_process(packaged, dir=root, sample_rate=1.0) as client:
            r = await client.post(V1, json={"data": {"ndarray": [*good, overflow]}})
            assert r.status_code == 400, r.text
            info = r.json()["status"]["info"]
            assert "row 2: the model's prediction [-inf] is not finite" in info
            r = await client.post(v2_path(packaged), json=v2_body(packaged, [too_large]))
            assert r.status_code == 400, r.text
            assert "the model cannot predict from these inputs" in r.json()["error"]
            assert "infinity" in r.json()["error"]
            # concurrent requests batched with a bad one still get their own answers
            bodies = [[too_large] if k % 4 == 0 else [packaged.rows[k]] for k in range(40)]
            answers = await asyncio.gather(*(client.post(V1, json={"data": {"ndarray": b}}) for b in bodies))
            for body, answer in zip(bodies, answers, strict=True):
                if body == [too_large]:
                    assert answer.status_code == 400, answer.text
                else:
                    assert answer.status_code == 200, answer.text
                    np.testing.assert_allclose(
                        answer.json()["data"]["ndarray"], packaged.reference(body), rtol=1e-9
                    )
            count = "modelops_prediction_value_count"
            await wait_until(
                lambda: in_process_metric(client, "modelops_inference_log_records_total"), lambda v: v == 30
            )
            assert await in_process_metric(client, count, model=packaged.name) == 30
            assert (
                await in_process_metric(client, "modelops_requests_total", endpoint="v1", status="400") == 11
            )

    asyncio.run(run())
    assert len(read_log(root, packaged)) == 30


@OVERFLOW
def test_the_batcher_fails_only_the_request_with_unusable_values(task_models) -> None:
    packaged = task_models("ridge")
    model = packaged.model
    settings = Settings()
    parts = [rows_from_values([r], None, model, settings) for r in packaged.rows[:5]]
    bad = rows_from_values([[300.0, 1.7e308, 28.0, "B"]], None, model, settings)
    sizes: list[int] = []

    async def run() -> list:
        batcher = Batcher(
            model.predict, max_batch_size=64, max_wait_ms=5, on_batch=lambda n, _: sizes.append(n)
        )
        await batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.predict(p) for p in [*parts[:2], bad, *parts[2:]]), return_exceptions=True
            )
        finally:
            await batcher.stop()

    results = asyncio.run(run())
    assert isinstance(results[2], ValueError) and "infinity" in str(results[2])
    for part, got in zip(parts, results[:2] + results[3:], strict=True):
        np.testing.assert_allclose(got, model.predict_pipeline(part), rtol=1e-9)
    assert sizes == [1] * 5, "the failed batch of 6 was predicted again request by request"


# ---- the inference log and the Seldon wrapper ----------------------------------------------------


@pytest.mark.parametrize("kind", SERVED)
def test_inference_log_lines_per_task(task_models, kind: str, tmp_path: Path) -> None:
    packaged = task_models(kind)
    rows = mixed_rows(packaged, 4)
    root = tmp_path / "log"

    async def run() -> list:
        async with in_process(packaged, dir=root, sample_rate=1.0) as client:
            r = await client.post(V1, json={"data": {"ndarray": rows}})
            assert r.status_code == 200
            await wait_until(
                lambda: in_process_metric(client, "modelops_inference_log_records_total"), lambda v: v == 4
            )
            return r.json()["data"]["ndarray"]

    answered = asyncio.run(run())
    lines = read_log(root, packaged)
    assert len(lines) == 4
    for line, sent, out in zip(lines, rows, answered, strict=True):
        assert line["inputs"] == dict(zip(FEATURES, sent, strict=True))
        assert (line["model"], line["version"], line["hash"]) == (
            packaged.name,
            packaged.version,
            packaged.content_hash,
        )
        if kind == REGRESSION:
            assert list(line) == ["model", "version", "hash", "ts", "request_id", "inputs", "prediction"]
            assert isinstance(line["prediction"], float) and line["prediction"] == out[0]
        else:
            assert list(line) == [
                "model",
                "version",
                "hash",
                "ts",
                "request_id",
                "inputs",
                "prediction",
                "probabilities",
            ]
            assert line["probabilities"] == dict(zip(GRADES, out, strict=True))
            assert line["prediction"] == GRADES[int(np.argmax(out))]


@OVERFLOW
@pytest.mark.parametrize("kind", [*SERVED, "ridge"])
def test_seldon_wrapper_in_process_per_task(task_models, kind: str) -> None:
    from modelops_serving.seldon import SeldonModel, SeldonRequestError

    packaged = task_models(kind)
    wrapper = SeldonModel(
        model_uri=str(packaged.path), expected_hash=packaged.content_hash, model_name=packaged.name
    )
    wrapper.load()
    rows = mixed_rows(packaged)
    got = wrapper.predict(rows, list(FEATURES))
    np.testing.assert_allclose(got, packaged.reference(rows), rtol=1e-9, atol=1e-12)
    assert wrapper.class_names() == list(packaged.model.outputs)
    metrics = {(m["key"], m["tags"].get("class")): m for m in wrapper.metrics()}
    assert metrics[("modelops_seldon_rows_total", None)]["value"] == len(rows)
    if packaged.task == "regression":
        gauge = metrics[("modelops_seldon_prediction_mean", None)]
        assert gauge["type"] == "GAUGE" and gauge["value"] == pytest.approx(got.mean())
    else:
        per_class = [metrics[("modelops_seldon_predicted_class_total", g)]["value"] for g in GRADES]
        assert per_class == np.bincount(got.argmax(axis=1), minlength=4).tolist()
    assert wrapper.predict({"instances": [dict(zip(FEATURES, rows[0], strict=True))]}).shape == got[:1].shape
    if kind == "ridge":
        with pytest.raises(SeldonRequestError, match="is not finite"):
            wrapper.predict([[300.0, 1e307, 28.0, "A"]], list(FEATURES))
        with pytest.raises(SeldonRequestError, match="cannot predict from these inputs"):
            wrapper.predict([[300.0, 1.7e308, 28.0, "A"]], list(FEATURES))
