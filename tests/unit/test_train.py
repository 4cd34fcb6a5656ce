"""Train: a scikit-learn Pipeline built only from params, seeded, and pickled reproducibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from modelops import tasks
from modelops.config import ModelParams, SplitParams
from modelops.errors import PipelineError
from modelops.pipeline import dataset, ingest, outputs, prepare, train
from modelops.pipeline.evaluate import predict
from tests.conftest import shipped_dataset

DS = shipped_dataset()
BY_TASK = {"binary": DS, "multiclass": shipped_dataset("hpc"), "regression": shipped_dataset("concrete")}

SMALL = {
    "hist_gradient_boosting": {"max_iter": 20},
    "random_forest": {"n_estimators": 15, "max_depth": 6},
    "extra_trees": {"n_estimators": 15, "max_depth": 6},
    "logistic_regression": {"max_iter": 500},
    "ridge": {"alpha": 2.0},
}


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with data/prepared/{train,test}.parquet from 600 synthetic rows."""
    root = tmp_path_factory.mktemp("train")
    for ds in BY_TASK.values():
        raw = root / f"{ds.name}.csv"
        ingest.synthesize(ds, 600, 0).to_csv(raw, index=False)
        prepare.prepare(ds, SplitParams(), raw, root / ds.train_file, root / ds.test_file)
    return root


@pytest.fixture
def workdir(splits: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh working directory whose data/ holds the shared splits."""
    (tmp_path / "data").symlink_to(splits / "data")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def model(kind: str, **kw) -> ModelParams:
    """Small, single-threaded params for one estimator kind."""
    return ModelParams(dataset="credit", estimator=kind, hyperparams=SMALL[kind], **{"threads": 1} | kw)


def test_every_estimator_resolves_to_its_class_per_task() -> None:
    for kind, by_family in tasks.ESTIMATORS.items():
        for family, dotted in by_family.items():
            task = "regression" if family == "regression" else "binary"
            cls = tasks.estimator_class(kind, task)
            assert f"{cls.__module__.split('.')[0]}.{cls.__name__}" == f"sklearn.{dotted.rpartition('.')[2]}"
    assert set(SMALL) == set(tasks.ESTIMATORS), "a new estimator needs a case here"
    assert tasks.fitting("regression") == ["hist_gradient_boosting", "random_forest", "extra_trees", "ridge"]
    with pytest.raises(KeyError):
        tasks.estimator_class("ridge", "binary")


CASES = [(kind, task) for task in BY_TASK for kind in tasks.fitting(task)]


@pytest.mark.parametrize(("kind", "task"), CASES)
def test_each_estimator_fits_its_tasks(kind: str, task: str, splits: Path) -> None:
    ds = BY_TASK[task]
    frame = prepare.read_split(splits / ds.train_file)
    pipeline = train.build_pipeline(model(kind), ds)
    assert isinstance(pipeline.named_steps["model"], tasks.estimator_class(kind, task))
    pipeline.fit(dataset.to_features(ds, frame), dataset.to_target(ds, frame))
    out = predict(pipeline, task, dataset.to_features(ds, frame.head(50)))
    if task == "regression":
        assert out.shape == (50,) and np.isfinite(out).all()
        return
    assert out.shape == (50, len(ds.classes))
    assert np.allclose(out.sum(axis=1), 1.0)
    assert list(pipeline.classes_) == list(range(len(ds.classes)))


def test_only_the_linear_model_scales_numbers() -> None:
    def scales(kind: str) -> bool:
        ds = BY_TASK["regression" if kind == "ridge" else "binary"]
        numeric = train.build_pipeline(model(kind), ds).named_steps["features"].transformers[0][1]
        return any(isinstance(step, StandardScaler) for _, step in numeric.steps)

    assert scales("logistic_regression") and scales("ridge")
    assert not scales("hist_gradient_boosting") and not scales("random_forest")


def test_seed_and_threads_are_injected_where_the_estimator_has_them() -> None:
    def make(p: ModelParams):
        return tasks.make_estimator(p.estimator, "binary", p.hyperparams, p.seed, p.threads)

    forest = make(model("random_forest", seed=7, threads=3))
    assert forest.get_params()["random_state"] == 7
    assert forest.get_params()["n_jobs"] == 3
    assert forest.get_params()["n_estimators"] == 15  # hyper-parameters pass through
    hgb = make(model("hist_gradient_boosting", seed=11))
    assert hgb.get_params()["random_state"] == 11
    assert "n_jobs" not in hgb.get_params()


def test_train_pickles_reproducibly_and_the_seed_matters(workdir: Path) -> None:
    params = model("random_forest", seed=3)
    train.train("forest", params, DS)
    path = Path("models/forest/pipeline.pkl")
    first = path.read_bytes()
    train.train("forest", params, DS)
    assert path.read_bytes() == first
    assert not list(path.parent.glob("*.tmp"))
    train.train("forest", model("random_forest", seed=4), DS)
    assert path.read_bytes() != first


def test_load_pipeline_returns_what_train_fitted(workdir: Path) -> None:
    fitted = train.train("hgb", model("hist_gradient_boosting"), DS)
    loaded = train.load_pipeline("hgb")
    x = dataset.to_features(DS, prepare.read_split(DS.test_file))
    np.testing.assert_array_equal(loaded.predict_proba(x), fitted.predict_proba(x))


@pytest.mark.parametrize("kind", ["hist_gradient_boosting", "logistic_regression"])
def test_unseen_categories_and_missing_values_at_predict_time(kind: str, workdir: Path) -> None:
    pipeline = train.train(kind.replace("_", "-"), model(kind), DS)
    row = dataset.to_features(DS, prepare.read_split(DS.test_file).head(3))
    odd = row.copy()
    odd.loc[0, "job"] = "astronaut"  # never seen in training
    odd.loc[1, ["home", "marital"]] = np.nan
    odd.loc[2, ["income", "assets"]] = np.nan
    proba = pipeline.predict_proba(odd)
    assert proba.shape == (3, 2) and not np.isnan(proba).any()


def test_train_without_a_split_names_the_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="modelops prepare"):
        train.train("m", model("hist_gradient_boosting"), DS)
    assert not Path("models/m").exists()


def test_load_pipeline_of_an_untrained_model_names_the_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r"models/nope/pipeline\.pkl: not found.*modelops train nope"):
        train.load_pipeline("nope")


def test_model_paths_are_per_model() -> None:
    assert outputs.pipeline_file("a") == Path("models/a/pipeline.pkl")
    assert outputs.model_dir("a") != outputs.model_dir("b")
