"""MLflow tracking: every pipeline run of a model is logged with params, metrics, artifacts and tags.

Embedded default: a SQLite file and an artifact folder inside the repository (both git-ignored);
MLFLOW_TRACKING_URI points it at a team server instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from modelops.config import Params, cache_root

DB_FILE = Path("mlflow.db")
ARTIFACT_DIR = Path("mlartifacts")


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI if set, else the repository's SQLite file."""
    root = (root or Path.cwd()).resolve()
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / DB_FILE}"


def store_uri() -> str:
    """`tracking_uri()`, for a client about to open it: a missing SQLite file is seeded first.

    A fresh store runs all of MLflow's migrations (~1-1.5 CPU-s), and every CI job and test
    repository is a fresh checkout whose store is git-ignored. The seed is an empty store MLflow
    itself migrated, kept per machine user and MLflow version (see `config.cache_root`); its default
    experiment is removed, so MLflow creates it on first open with this checkout's artifact root,
    exactly as it would in a new file. Seeding is only a saving: if the cache or the copy fails
    (a read-only home, a filesystem without hard links), MLflow creates the store itself.
    """
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not (db := Path(uri.removeprefix("sqlite:///"))).exists():
        try:
            _seed(db)
        except (OSError, sqlite3.Error) as exc:
            logging.getLogger(__name__).debug("MLflow store %s not seeded (%s): MLflow creates it", db, exc)
    return uri


def _seed(db: Path) -> None:
    template = cache_root() / "mlflow-stores" / f"mlflow-{version('mlflow')}.db"
    if not template.exists():
        _build_template(template)
    db.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=db.parent, prefix=f".{db.name}.")
    os.close(fd)
    try:
        shutil.copyfile(template, tmp)
        os.link(tmp, db)  # never over a store another process created meanwhile
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _build_template(template: Path) -> None:
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    template.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=template.parent) as tmp:
        db = Path(tmp) / "mlflow.db"
        # One alembic chain migrates the tracking and the registry tables alike.
        mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM experiments")  # the default one: its artifact root is this folder
        conn.close()
        os.replace(db, template)  # atomic: a racing builder's template is as good as this one


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def git_tags() -> dict[str, str]:
    """Where the run happened: commit (with +dirty when the tree had changes) and branch."""
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git.commit": commit + ("+dirty" if dirty not in ("", "unknown") else ""),
        "git.branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
    }


def dvc_tags(name: str, dataset: str, lock: Path = Path("dvc.lock")) -> dict[str, str]:
    """The md5 of every output of this model's stages (and its dataset's stages) in dvc.lock."""
    if not lock.exists():
        return {}
    stages = yaml.safe_load(lock.read_text()).get("stages", {})
    wanted = {f"{s}@{dataset}" for s in ("ingest", "validate", "prepare")}
    wanted |= {f"train@{name}", f"evaluate@{name}"}
    tags = {}
    for stage, body in stages.items():
        if stage in wanted:
            for out in body.get("outs", []):
                tags[f"dvc.{out['path']}"] = str(out.get("md5", ""))
    return tags


def _experiment(client: Any, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACT_DIR).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def log_run(name: str, params: Params, outputs: dict[str, str]) -> str:
    """Log one model's run; return the MLflow run id."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)

    from modelops.pipeline.outputs import card_file, latency_file, metrics_file, package_dir, plots_dir

    uri = store_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment_id = _experiment(client, params.mlflow.experiment, uri)
    model, ds = params.model(name), params.dataset_of(name)
    split = params.split(ds.name)
    logged = {
        "estimator": model.estimator,
        "seed": model.seed,
        "threads": model.threads,
        "dataset": ds.name,
        "task": ds.task,
        "data.source": ds.source.kind,
        "split.test_fraction": split.test_fraction,
        "split.seed": split.seed,
    }
    if ds.source.kind == "synthetic":
        logged |= {"data.rows": ds.source.rows, "data.seed": ds.source.seed}
    logged |= {f"hp.{k}": v for k, v in model.hyperparams.items()}
    values = json.loads(metrics_file(name).read_text())
    if latency_file(name).exists():
        values |= json.loads(latency_file(name).read_text())
    tags = (
        {
            "model": name,
            "model.content_hash": outputs["content_hash"],
            "data.raw_md5": outputs["raw_md5"],
        }
        | git_tags()
        | dvc_tags(name, ds.name)
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run:
        mlflow.log_params(logged)
        mlflow.log_metrics({k: float(v) for k, v in values.items()})
        mlflow.log_artifact(str(card_file(name)))
        mlflow.log_artifacts(str(plots_dir(name)), "plots")
        mlflow.log_artifacts(str(package_dir(name)), "model")
    return run.info.run_id


def latest_runs(params: Params) -> dict[str, dict[str, Any]]:
    """The newest logged run of every model, for `modelops show`."""
    import mlflow

    uri = store_uri()
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(params.mlflow.experiment)
    result: dict[str, dict[str, Any]] = {}
    if found is None:
        return result
    for name in params.models:
        runs = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.model = '{name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if runs:
            run = runs[0]
            result[name] = {
                "run_id": run.info.run_id,
                "artifact_uri": run.info.artifact_uri,
                "tracking_uri": uri,
                "commit": run.data.tags.get("git.commit", ""),
            }
    return result
