"""Registry: versions of a real packaged model in a real MLflow (SQLite) registry, and env aliases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from modelops_serving.integrity import tree_hash

from modelops.config import Params
from modelops.delivery import publish, registry
from modelops.delivery.registry import RegistryError
from modelops.pipeline import outputs, tracking
from tests.conftest import make_params, train_and_package

NAME = "tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
METRICS = {"accuracy": 0.8125, "roc_auc": 0.734567, "log_loss": 0.51, "test_rows": 120}


def params() -> Params:
    hyper = {"max_iter": 10, "max_depth": 2}
    return make_params(
        {NAME: {"estimator": "hist_gradient_boosting", "threads": 1, "hyperparams": hyper}},
        evaluate={"latency_repeats": 1, "importance_rows": 100, "importance_repeats": 1},
        mlflow={"experiment": "registry-test"},
    )


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained and packaged for real, with what log_run reads beside it."""
    root = tmp_path_factory.mktemp("registry")
    train_and_package(root, NAME, params(), 300, METRICS)
    return root


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables created once (the migrations take seconds)."""
    import mlflow

    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def env(packaged: Path, empty_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A private registry (MLFLOW_TRACKING_URI), a private artifact store, the model published to it."""
    db = tmp_path / "tracking" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(empty_db, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.chdir(packaged)
    published = publish.publish(outputs.package_dir(NAME), NAME, str(tmp_path / "artifacts"))
    return {"published": published, "store": str(tmp_path / "artifacts"), "tmp": tmp_path}


def log_run(content_hash: str) -> str:
    return tracking.log_run(NAME, params(), {"content_hash": content_hash, "raw_md5": "abc"})


def other_version(env: dict) -> publish.Published:
    """The same model with one more file: other content, so another content hash."""
    other = env["tmp"] / "other-model"
    shutil.copytree(outputs.package_dir(NAME), other)
    (other / "NOTICE").write_text("retrained\n")
    return publish.publish(other, NAME, env["store"])


def test_register_links_the_run_that_logged_the_hash_and_tags_the_version(env: dict) -> None:
    published = env["published"]
    assert published.content_hash == tree_hash(outputs.package_dir(NAME))
    log_run("f" * 64)  # another model content: must not be picked
    run_id = log_run(published.content_hash)
    version = registry.register(NAME, published.uri, published.content_hash, COMMIT, source_pr="42")
    assert version == "1"
    [v] = registry.versions(NAME)
    assert v == registry.Version(
        model=NAME,
        version="1",
        source=published.uri,
        run_id=run_id,
        content_hash=published.content_hash,
        git_commit=COMMIT,
        source_pr="42",
        aliases=(),
    )
    assert registry.find_run(NAME, published.content_hash) == run_id


def test_registering_the_same_content_again_reuses_its_version(env: dict) -> None:
    published = env["published"]
    first = registry.register(NAME, published.uri, published.content_hash, COMMIT, source_pr="42")
    again = registry.register(NAME, published.uri, published.content_hash, "f" * 40, source_pr=None)
    assert again == first
    [v] = registry.versions(NAME)
    assert (v.git_commit, v.source_pr) == (COMMIT, "42")  # the first registration's origin is kept


def test_a_version_without_a_logged_run_is_registered_unlinked(env: dict) -> None:
    published = env["published"]
    version = registry.register(NAME, published.uri, published.content_hash, COMMIT)
    [v] = registry.versions(NAME)
    assert v.version == version and v.run_id is None and v.source_pr is None


def test_an_explicit_run_must_have_logged_this_model(env: dict) -> None:
    published = env["published"]
    wrong = log_run("e" * 64)
    with pytest.raises(RegistryError, match=f"run {wrong} logged content hash e+, not"):
        registry.register(NAME, published.uri, published.content_hash, COMMIT, run_id=wrong)
    with pytest.raises(RegistryError, match="no MLflow run 'nope'"):
        registry.register(NAME, published.uri, published.content_hash, COMMIT, run_id="nope")
    right = log_run(published.content_hash)
    version = registry.register(NAME, published.uri, published.content_hash, COMMIT, run_id=right)
    assert registry.versions(NAME)[0].run_id == right and version == "1"


def test_aliases_follow_set_alias_one_env_at_a_time(env: dict) -> None:
    first = env["published"]
    second = other_version(env)
    v1 = registry.register(NAME, first.uri, first.content_hash, COMMIT)
    v2 = registry.register(NAME, second.uri, second.content_hash, COMMIT)
    assert (v1, v2) == ("1", "2")
    assert registry.alias_version(NAME, "staging") is None
    assert registry.set_alias(NAME, "staging", v1) is None
    assert registry.set_alias(NAME, "production", v1) is None
    assert registry.set_alias(NAME, "staging", v2) == v1
    assert registry.alias_version(NAME, "staging") == v2
    assert registry.alias_version(NAME, "production") == v1
    assert [(v.version, v.aliases) for v in registry.versions(NAME)] == [
        ("1", ("production",)),
        ("2", ("staging",)),
    ]
    assert registry.set_alias(NAME, "staging", v2) == v2  # already there: nothing moves
    # git rolled staging back to unpromoted: the alias goes, production's stays
    assert registry.remove_alias(NAME, "staging") == v2
    assert registry.alias_version(NAME, "staging") is None
    assert registry.remove_alias(NAME, "staging") is None  # nothing left to remove
    assert registry.alias_version(NAME, "production") == v1


def test_bad_requests_are_clear_errors(env: dict) -> None:
    published = env["published"]
    version = registry.register(NAME, published.uri, published.content_hash, COMMIT)
    with pytest.raises(RegistryError, match="unknown env 'qa'"):
        registry.set_alias(NAME, "qa", version)
    with pytest.raises(RegistryError, match="no registered version '9'"):
        registry.set_alias(NAME, "staging", "9")
    with pytest.raises(RegistryError, match="not a sha256"):
        registry.register(NAME, published.uri, "abc", COMMIT)
    with pytest.raises(RegistryError, match="not a sha256"):
        registry.find_run(NAME, "' or '1' = '1")
    with pytest.raises(RegistryError, match="must match"):
        registry.versions("x' or name != '")
    assert registry.alias_version(NAME, "staging") is None


def test_an_unknown_model_has_no_versions_and_no_alias(env: dict) -> None:
    assert registry.versions("ghost") == []
    assert registry.alias_version("ghost", "production") is None
    assert registry.remove_alias("ghost", "production") is None
    assert registry.find_run("ghost", "0" * 64) is None
