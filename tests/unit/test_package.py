"""Package: an MLflow model directory that is byte-for-byte reproducible, loadable, and carded."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml
from modelops_serving.integrity import file_sha256, tree_hash

from modelops import tasks
from modelops.config import Params
from modelops.errors import PipelineError
from modelops.pipeline import dataset, outputs, package, prepare, train
from tests.conftest import credit_params, shipped_dataset, train_and_package

DS = shipped_dataset()

NAME = "tiny"
METRICS = {"accuracy": 0.8125, "roc_auc": 0.734567, "log_loss": 0.51, "test_rows": 120}


def params(learning_rate: float = 0.05) -> Params:
    hyper = {"max_iter": 20, "max_depth": 2, "learning_rate": learning_rate}
    return credit_params(
        {
            "data": {"source": "synthetic", "rows": 600, "seed": 0},
            "models": {NAME: {"estimator": "hist_gradient_boosting", "threads": 1, "hyperparams": hyper}},
        }
    )


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model packaged twice in the same directory, plus a second model with other weights."""
    root = tmp_path_factory.mktemp("package")
    p = params()
    first = train_and_package(root, NAME, p, 600, METRICS)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        snapshot = files(outputs.package_dir(NAME)) | {"card": outputs.card_file(NAME).read_bytes()}
        second = package.package(NAME, p)
        # the same shape and size of model with other weights, for the uuid test
        train.train("other", params(learning_rate=0.06).model(NAME), DS)
    return {"root": root, "first": first, "second": second, "files": snapshot}


@pytest.fixture
def in_root(packaged: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(packaged["root"])
    return packaged["root"]


def mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def test_two_runs_give_the_same_bytes_and_hash(packaged: dict, in_root: Path) -> None:
    first, second = packaged["first"], packaged["second"]
    assert first == second
    assert first["content_hash"] == tree_hash(outputs.package_dir(NAME))
    now = files(outputs.package_dir(NAME)) | {"card": outputs.card_file(NAME).read_bytes()}
    assert now == packaged["files"]
    assert first["card_sha256"] == file_sha256(outputs.card_file(NAME))
    assert first["raw_md5"] == hashlib.md5(DS.raw_file.read_bytes()).hexdigest()
    assert not Path("models", NAME, "model.tmp").exists()


def test_mlmodel_has_no_wall_clock_or_random_fields(in_root: Path) -> None:
    doc = mlmodel(outputs.package_dir(NAME))
    assert doc["utc_time_created"] == package.PINNED_CREATED
    assert "model_id" not in doc
    assert re.fullmatch(r"[0-9a-f]{32}", doc["model_uuid"])
    assert doc["flavors"]["sklearn"]["serialization_format"] == "pickle"
    assert doc["flavors"]["python_function"]["predict_fn"] == "predict_proba"
    inputs = json.loads(doc["signature"]["inputs"])
    assert [col["name"] for col in inputs] == list(tuple(DS.features))


def test_model_uuid_tells_different_models_apart(in_root: Path, tmp_path: Path) -> None:
    """The uuid is derived from the whole content, not from MLmodel alone (equal for equal sizes)."""
    import shutil

    base, other = outputs.package_dir(NAME), tmp_path / "other"
    shutil.copytree(base, other)
    pickled = bytearray((other / "model.pkl").read_bytes())
    pickled[-2] ^= 1  # other weights, same size: only the content tells the two apart
    (other / "model.pkl").write_bytes(bytes(pickled))
    package._pin_mlmodel(other)
    assert mlmodel(other)["model_size_bytes"] == mlmodel(base)["model_size_bytes"]
    assert tree_hash(other) != tree_hash(base)
    assert mlmodel(other)["model_uuid"] != mlmodel(base)["model_uuid"]


def test_requirements_are_pinned_to_the_installed_versions(in_root: Path) -> None:
    lines = (outputs.package_dir(NAME) / "requirements.txt").read_text().split()
    for dist in package.RUNTIME_REQUIREMENTS:
        assert f"{dist}=={metadata.version(dist)}" in lines


def test_the_saved_model_predicts_like_the_pipeline(in_root: Path) -> None:
    import mlflow.pyfunc
    from mlflow.models import Model

    path = outputs.package_dir(NAME)
    example = Model.load(path).load_input_example(str(path))
    assert list(example.columns) == list(tuple(DS.features))
    assert len(example) == package.EXAMPLE_ROWS
    loaded = mlflow.pyfunc.load_model(str(path))
    expected = train.load_pipeline(NAME).predict_proba(dataset.to_features(DS, example))
    np.testing.assert_allclose(np.asarray(loaded.predict(example)), expected)


def test_the_card_names_metrics_hashes_and_params(packaged: dict, in_root: Path) -> None:
    card = outputs.card_file(NAME).read_text()
    assert card.startswith(f"# Model card: {NAME}\n")
    for metric, value in METRICS.items():
        assert f"| {metric} | {value} |" in card
    assert packaged["first"]["content_hash"] in card
    assert packaged["first"]["raw_md5"] in card
    assert '`{"learning_rate": 0.05, "max_depth": 2, "max_iter": 20}`' in card
    assert "source `synthetic`" in card and "test split 20%" in card
    assert "hist_gradient_boosting" in card


def test_packaging_an_untrained_model_names_the_command(in_root: Path) -> None:
    spec = params().model(NAME).model_dump(exclude={"dataset", "gate"})
    p = credit_params({"data": {"source": "synthetic", "rows": 600}, "models": {"ghost": spec}})
    with pytest.raises(PipelineError, match="modelops train ghost"):
        package.package("ghost", p)
    assert not Path("models/ghost").exists()


def test_package_times_the_packaged_model_outside_the_hashed_directory(in_root: Path) -> None:
    from modelops.pipeline.outputs import latency_file

    timing = json.loads(latency_file(NAME).read_text())
    test_rows = len(prepare.read_split(DS.test_file))
    assert timing["predict_single_ms"] > 0 and timing["predict_batch_ms"] > 0
    assert timing["batch_rows"] == min(test_rows, params().evaluate.latency_batch_rows)
    assert not list(outputs.package_dir(NAME).rglob("latency*"))


def test_the_served_pickle_is_the_trained_pickle_byte_for_byte(in_root: Path) -> None:
    """Re-pickling a loaded object depends on process state; the train stage's bytes do not."""
    packaged_bytes = (outputs.package_dir(NAME) / "model.pkl").read_bytes()
    assert packaged_bytes == outputs.pipeline_file(NAME).read_bytes()
    assert mlmodel(outputs.package_dir(NAME))["model_size_bytes"] == sum(
        f.stat().st_size for f in outputs.package_dir(NAME).rglob("*") if f.name != "MLmodel"
    )


def test_mlmodel_names_the_task_and_the_probability_columns(in_root: Path) -> None:
    meta = mlmodel(outputs.package_dir(NAME))["metadata"]
    assert meta == {"task": "binary", "dataset": "credit", "class_names": ["good", "bad"]}
    assert meta["class_names"][1] == DS.positive  # column 1 is y == 1


def test_the_model_carries_reference_statistics_of_its_own_data(in_root: Path) -> None:
    """reference.json is inside the hashed directory: it travels, and is verified, with the model."""
    from modelops.pipeline import reference

    ref = reference.load(outputs.package_dir(NAME) / reference.REFERENCE_FILE)
    train_rows = len(prepare.read_split(DS.train_file))
    test_rows = len(prepare.read_split(DS.test_file))
    assert set(ref["features"]) == set(tuple(DS.features))
    for stats in ref["features"].values():
        assert stats["rows"] == train_rows
        counted = sum(stats["counts"]) if stats["kind"] == "numeric" else sum(stats["counts"].values())
        assert counted + stats["missing"] == train_rows
    assert sum(ref["prediction"]["classes"].values()) == test_rows
    assert ref["prediction"]["probability"]["rows"] == test_rows
    # the test split's metrics, evaluate's own: what monitor holds online metrics to (concept drift)
    from modelops.pipeline.outputs import metrics_file

    scores = json.loads(metrics_file(NAME).read_text())
    assert ref["test_metrics"] == {m: scores[m] for m in tasks.METRICS["binary"] if m in scores}
    assert ref["test_metrics"] and set(scores) - set(ref["test_metrics"]) <= {"test_rows", "positive_rate"}


def test_the_model_carries_its_dataset_declaration(in_root: Path) -> None:
    """declaration.json is inside the hashed directory: the batch engine checks input files against
    the declaration the model was trained on, verified with the model."""
    doc = json.loads((outputs.package_dir(NAME) / package.DECLARATION_FILE).read_text())
    assert (doc["dataset"], doc["id"], doc["target"], doc["task"]) == (DS.name, DS.id, DS.target, DS.task)
    assert doc["classes"] == list(DS.classes)
    assert list(doc["features"]) == list(DS.features)
    for name, spec in DS.features.items():
        assert doc["features"][name] == spec.model_dump(mode="json", exclude={"description"})
    assert not any("description" in f for f in doc["features"].values())
