"""Tracking: the store MLflow logs to, the tags of a run, and reading runs back, on real MLflow."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from modelops.config import Params
from modelops.pipeline import tracking
from tests.conftest import credit_params

HYPER = {"max_iter": 20, "learning_rate": 0.1}
METRICS = {"accuracy": 0.8, "roc_auc": 0.75, "test_rows": 120}
LATENCY = {"predict_single_ms": 1.5, "predict_batch_ms": 9.25, "batch_rows": 10}
LOCK = """\
schema: '2.0'
stages:
  ingest@credit:
    cmd: modelops ingest credit
    outs:
    - path: data/credit/raw.csv
      md5: aaa
  prepare@credit:
    cmd: modelops prepare credit
    outs:
    - path: data/credit/prepared
      md5: bbb.dir
  ingest@other:
    outs:
    - path: data/other/raw.csv
      md5: fff
  train@m:
    outs:
    - path: models/m/pipeline.pkl
      md5: ccc
  train@other:
    outs:
    - path: models/other/pipeline.pkl
      md5: ddd
  package@m:
    outs:
    - path: models/m/model
      md5: eee.dir
"""


def params(*models: str) -> Params:
    spec = {"estimator": "hist_gradient_boosting", "seed": 3, "threads": 1, "hyperparams": HYPER}
    return credit_params(
        {
            "data": {"source": "synthetic", "rows": 600, "seed": 2},
            "mlflow": {"experiment": "unit"},
            "models": dict.fromkeys(models or ("m",), spec),
        }
    )


def write_outputs(root: Path, name: str) -> None:
    """What evaluate and package leave behind, as far as log_run reads it."""
    model = root / "models" / name
    (model / "plots").mkdir(parents=True)
    (model / "model").mkdir()
    (model / "metrics.json").write_text(json.dumps(METRICS))
    (model / "latency.json").write_text(json.dumps(LATENCY))
    (model / "MODEL_CARD.md").write_text(f"# Model card: {name}\n")
    (model / "plots" / "roc.json").write_text("[]\n")
    (model / "model" / "MLmodel").write_text("flavors: {}\n")


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables created once (migrations take seconds)."""
    import mlflow

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private copy of the store, named by MLFLOW_TRACKING_URI, with outputs of model m in cwd."""
    db = tmp_path / "tracking" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(empty_store, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    write_outputs(tmp_path, "m")
    return uri


OUTPUTS = {"content_hash": "c0ffee", "raw_md5": "abc123"}


def test_tracking_uri_honours_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.tracking_uri() == "http://mlflow.example:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.tracking_uri(tmp_path / "repo") == f"sqlite:///{tmp_path.resolve()}/repo/mlflow.db"


def test_dvc_tags_name_the_outputs_of_the_models_stages(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text(LOCK)
    assert tracking.dvc_tags("m", "credit", lock) == {
        "dvc.data/credit/raw.csv": "aaa",
        "dvc.data/credit/prepared": "bbb.dir",
        "dvc.models/m/pipeline.pkl": "ccc",
    }
    other = tracking.dvc_tags("other", "other", lock)
    assert other == {"dvc.models/other/pipeline.pkl": "ddd", "dvc.data/other/raw.csv": "fff"}
    assert tracking.dvc_tags("m", "credit", tmp_path / "missing.lock") == {}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_git_tags_name_commit_branch_and_a_dirty_tree(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert tracking.git_tags() == {"git.commit": "unknown", "git.branch": "unknown"}
    git(tmp_path, "init", "-q", "-b", "feature")
    (tmp_path / "a.txt").write_text("1\n")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "commit", "-q", "-m", "one")
    head = git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "untracked.txt").write_text("ignored by the dirty check\n")
    assert tracking.git_tags() == {"git.commit": head, "git.branch": "feature"}
    (tmp_path / "a.txt").write_text("2\n")
    assert tracking.git_tags()["git.commit"] == f"{head}+dirty"


def test_log_run_records_params_metrics_tags_and_artifacts(store: str, tmp_path: Path) -> None:
    import mlflow

    Path("dvc.lock").write_text(LOCK)
    run_id = tracking.log_run("m", params("m"), OUTPUTS)
    run = mlflow.MlflowClient(store).get_run(run_id)
    assert run.info.run_name == "m"
    assert run.data.params == {
        "estimator": "hist_gradient_boosting",
        "seed": "3",
        "threads": "1",
        "dataset": "credit",
        "task": "binary",
        "data.source": "synthetic",
        "data.rows": "600",
        "data.seed": "2",
        "split.test_fraction": "0.2",
        "split.seed": "0",
        "hp.max_iter": "20",
        "hp.learning_rate": "0.1",
    }
    assert run.data.metrics == {k: float(v) for k, v in (METRICS | LATENCY).items()}
    tags = run.data.tags
    assert tags["model"] == "m"
    assert tags["model.content_hash"] == "c0ffee"
    assert tags["data.raw_md5"] == "abc123"
    assert tags["dvc.models/m/pipeline.pkl"] == "ccc"
    assert tags["git.commit"] == "unknown"  # tmp_path is not a repository
    artifacts = tmp_path / "tracking" / "mlartifacts"  # beside the SQLite file
    files = [p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*") if p.is_file()]
    assert {f.split("/", 2)[-1] for f in files} == {"MODEL_CARD.md", "plots/roc.json", "model/MLmodel"}
    assert all(f.startswith(f"{run_id}/artifacts/") for f in files)
    assert run.info.artifact_uri.startswith(artifacts.resolve().as_uri())


def test_log_run_reuses_the_experiment(store: str) -> None:
    import mlflow

    first = tracking.log_run("m", params("m"), OUTPUTS)
    second = tracking.log_run("m", params("m"), OUTPUTS)
    client = mlflow.MlflowClient(store)
    assert client.get_run(first).info.experiment_id == client.get_run(second).info.experiment_id
    assert [e.name for e in client.search_experiments() if e.name == "unit"] == ["unit"]


def test_latest_runs_returns_the_newest_run_of_each_model(store: str, tmp_path: Path) -> None:
    p = params("m", "n", "never")
    assert tracking.latest_runs(p) == {}  # no experiment yet
    write_outputs(tmp_path, "n")
    tracking.log_run("m", p, OUTPUTS)
    n_run = tracking.log_run("n", p, OUTPUTS)
    newest = tracking.log_run("m", p, OUTPUTS | {"content_hash": "newer"})
    runs = tracking.latest_runs(p)
    assert set(runs) == {"m", "n"}
    assert runs["m"]["run_id"] == newest
    assert runs["n"]["run_id"] == n_run
    assert runs["m"]["tracking_uri"] == store
    assert runs["m"]["commit"] == "unknown"
    assert runs["m"]["artifact_uri"].endswith(f"{newest}/artifacts")


def _schema_and_rows(db: Path) -> tuple[set[tuple[str, ...]], dict[str, list[tuple]]]:
    """Each table's and index's definition as a sorted set of its clauses (MLflow's own migrations
    write a table's constraints in an order that varies from one process to the next), and the rows
    of every non-empty table."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        schema = {
            tuple(sorted(line.strip().rstrip(",").strip() for line in sql.splitlines()))
            for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")
        }
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {t: sorted(conn.execute(f"SELECT * FROM {t}")) for t in tables}
    conn.close()
    return schema, {t: r for t, r in rows.items() if r}


def test_a_missing_store_is_seeded_as_mlflow_would_create_it(
    empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MODELOPS_CACHE_DIR", str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    import mlflow

    uri = tracking.store_uri()
    assert uri == tracking.tracking_uri() and (repo / "mlflow.db").exists()
    [template] = (tmp_path / "cache" / "mlflow-stores").iterdir()
    assert template.name == f"mlflow-{mlflow.__version__}.db"
    mlflow.MlflowClient(uri).search_experiments()  # MLflow opens it without migrating
    seeded_schema, seeded = _schema_and_rows(repo / "mlflow.db")
    built_schema, built = _schema_and_rows(empty_store)  # a store MLflow created from nothing
    assert seeded_schema == built_schema
    [(exp_id, name, location, *_rest)] = seeded.pop("experiments")
    assert (exp_id, name, location) == (0, "Default", f"{repo.resolve()}/mlruns/0")  # this checkout's root
    built.pop("experiments")
    assert seeded == built  # alembic's head, the default workspace: nothing else differs

    # The template is built once and reused; an existing store is never replaced.
    stamp = template.stat().st_mtime_ns
    (repo / "mlflow.db").write_bytes(b"a team's store")
    assert tracking.store_uri() == uri and (repo / "mlflow.db").read_bytes() == b"a team's store"
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    tracking.store_uri()
    assert template.stat().st_mtime_ns == stamp
    assert (other / "mlflow.db").read_bytes() == template.read_bytes()
    assert sorted(p.name for p in other.iterdir()) == ["mlflow.db"]  # no temporary file left behind
    # A cache that cannot be written leaves the store to MLflow, as before seeding existed.
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("MODELOPS_CACHE_DIR", str(tmp_path / "not-a-folder"))
    third = tmp_path / "third"
    third.mkdir()
    monkeypatch.chdir(third)
    assert tracking.store_uri() == f"sqlite:///{third.resolve()}/mlflow.db" and not any(third.iterdir())
    # A server named by MLFLOW_TRACKING_URI is never touched.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.chdir(tmp_path)
    assert tracking.store_uri() == "http://mlflow.example:5000" and not (tmp_path / "mlflow.db").exists()
