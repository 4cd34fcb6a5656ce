"""Train: a scikit-learn Pipeline built only from params, seeded, and pickled reproducibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from modelops.config import ESTIMATORS, ModelParams, SplitParams
from modelops.errors import PipelineError
from modelops.pipeline import dataset, ingest, prepare, train

SMALL = {
    "hist_gradient_boosting": {"max_iter": 20},
    "random_forest": {"n_estimators": 15, "max_depth": 6},
    "logistic_regression": {"max_iter": 500},
}


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with data/prepared/{train,test}.parquet from 600 synthetic rows."""
    root = tmp_path_factory.mktemp("train")
    raw = root / "credit.csv"
    ingest.synthesize(600, 0).to_csv(raw, index=False)
    prepare.prepare(SplitParams(), raw, root / dataset.TRAIN_FILE, root / dataset.TEST_FILE)
    return root


@pytest.fixture
def workdir(splits: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh working directory whose data/prepared is the shared split."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prepared").symlink_to(splits / "data" / "prepared")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def model(kind: str, **kw) -> ModelParams:
    """Small, single-threaded params for one estimator kind."""
    return ModelParams(estimator=kind, hyperparams=SMALL[kind], **{"threads": 1} | kw)


def test_every_configured_estimator_resolves_to_its_class() -> None:
    for kind, dotted in ESTIMATORS.items():
        cls = train.estimator_class(kind)
        assert f"{cls.__module__.split('.')[0]}.{cls.__name__}" == f"sklearn.{dotted.rpartition('.')[2]}"
    assert set(SMALL) == set(ESTIMATORS), "a new estimator needs a case here"


@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
def test_each_estimator_fits_and_predicts_probabilities(kind: str, splits: Path) -> None:
    frame = prepare.read_split(splits / dataset.TRAIN_FILE)
    pipeline = train.build_pipeline(model(kind))
    assert isinstance(pipeline.named_steps["model"], train.estimator_class(kind))
    pipeline.fit(dataset.to_features(frame), dataset.to_target(frame))
    proba = pipeline.predict_proba(dataset.to_features(frame.head(50)))
    assert proba.shape == (50, 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert ((proba >= 0) & (proba <= 1)).all()
    assert list(pipeline.classes_) == [0, 1]


def test_only_the_linear_model_scales_numbers() -> None:
    def scales(kind: str) -> bool:
        numeric = train.build_pipeline(model(kind)).named_steps["features"].transformers[0][1]
        return any(isinstance(step, StandardScaler) for _, step in numeric.steps)

    assert scales("logistic_regression")
    assert not scales("hist_gradient_boosting") and not scales("random_forest")


def test_seed_and_threads_are_injected_where_the_estimator_has_them() -> None:
    forest = train.make_estimator(model("random_forest", seed=7, threads=3))
    assert forest.get_params()["random_state"] == 7
    assert forest.get_params()["n_jobs"] == 3
    assert forest.get_params()["n_estimators"] == 15  # hyper-parameters pass through
    hgb = train.make_estimator(model("hist_gradient_boosting", seed=11))
    assert hgb.get_params()["random_state"] == 11
    assert "n_jobs" not in hgb.get_params()


def test_train_pickles_reproducibly_and_the_seed_matters(workdir: Path) -> None:
    params = model("random_forest", seed=3)
    train.train("forest", params)
    path = Path("models/forest/pipeline.pkl")
    first = path.read_bytes()
    train.train("forest", params)
    assert path.read_bytes() == first
    assert not list(path.parent.glob("*.tmp"))
    train.train("forest", model("random_forest", seed=4))
    assert path.read_bytes() != first


def test_load_pipeline_returns_what_train_fitted(workdir: Path) -> None:
    fitted = train.train("hgb", model("hist_gradient_boosting"))
    loaded = train.load_pipeline("hgb")
    x = dataset.to_features(prepare.read_split(dataset.TEST_FILE))
    np.testing.assert_array_equal(loaded.predict_proba(x), fitted.predict_proba(x))


@pytest.mark.parametrize("kind", ["hist_gradient_boosting", "logistic_regression"])
def test_unseen_categories_and_missing_values_at_predict_time(kind: str, workdir: Path) -> None:
    pipeline = train.train(kind.replace("_", "-"), model(kind))
    row = dataset.to_features(prepare.read_split(dataset.TEST_FILE).head(3))
    odd = row.copy()
    odd.loc[0, "job"] = "astronaut"  # never seen in training
    odd.loc[1, ["home", "marital"]] = np.nan
    odd.loc[2, ["income", "assets"]] = np.nan
    proba = pipeline.predict_proba(odd)
    assert proba.shape == (3, 2) and not np.isnan(proba).any()


def test_train_without_a_split_names_the_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="modelops prepare"):
        train.train("m", model("hist_gradient_boosting"))
    assert not Path("models/m").exists()


def test_load_pipeline_of_an_untrained_model_names_the_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r"models/nope/pipeline\.pkl: not found.*modelops train nope"):
        train.load_pipeline("nope")


def test_model_paths_are_per_model() -> None:
    assert train.pipeline_file("a") == Path("models/a/pipeline.pkl")
    assert train.model_dir("a") != train.model_dir("b")
