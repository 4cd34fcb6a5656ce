"""The real pipeline under real DVC, git and MLflow, in temporary repositories."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import yaml

from tests.conftest import ROOT, make_pipeline_repo, run


def lock_outs(repo: Path) -> dict[str, str]:
    """path -> md5 for every output recorded in dvc.lock."""
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {o["path"]: o["md5"] for body in stages.values() for o in body.get("outs", [])}


def test_repro_produces_a_packaged_model_per_task(trained_repo: Path) -> None:
    tasks = {}
    for name in ("credit-hgb", "hpc-forest", "concrete-hgb"):
        meta = yaml.safe_load((trained_repo / f"models/{name}/model/MLmodel").read_text())["metadata"]
        tasks[meta["task"]] = json.loads((trained_repo / f"models/{name}/metrics.json").read_text())
    assert tasks["multiclass"]["macro_f1"] > 0.6 and tasks["regression"]["r2"] > 0.8
    model = trained_repo / "models/credit-hgb"
    mlmodel = yaml.safe_load((model / "model/MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "pickle"
    assert "signature" in mlmodel and (model / "model/input_example.json").exists()
    scores = json.loads((model / "metrics.json").read_text())
    assert set(scores) >= {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    assert 0.7 < scores["roc_auc"] <= 1.0
    for plot in ("roc", "prc", "confusion", "importance"):
        assert (model / f"plots/{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (model / "MODEL_CARD.md").read_text()
    assert f"{scores['roc_auc']}" in card and "hist_gradient_boosting" in card
    timing = json.loads((model / "latency.json").read_text())
    assert timing["predict_single_ms"] > 0 and timing["predict_batch_ms"] > 0


def test_second_repro_does_nothing(trained_repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "c"
    shutil.copytree(trained_repo, clone, symlinks=True)
    before = (clone / "dvc.lock").read_bytes()
    out = run(["dvc", "repro"], clone).stdout
    assert "Running stage" not in out
    assert (clone / "dvc.lock").read_bytes() == before
    assert "up to date" in run(["dvc", "status"], clone).stdout


def test_fresh_clone_reproduces_the_same_lock(trained_repo: Path) -> None:
    """Invariant 1: a clean clone (own empty DVC cache) + dvc repro gives identical hashes.

    trained_repo is that clean clone: the project's files in a new repository with an empty cache
    and no run-cache, so every stage really ran. Its lock must be the committed one, byte for byte
    (a lock made elsewhere, earlier): a second build here would only compare this machine to itself.
    """
    committed = ROOT / "dvc.lock"
    assert lock_outs(trained_repo) == lock_outs(ROOT)
    assert (trained_repo / "dvc.lock").read_bytes() == committed.read_bytes(), (
        "dvc.lock is not what a fresh clone reproduces (stale after a change to code, params or "
        "data?): run `dvc repro` and commit dvc.lock"
    )
    assert run(["git", "status", "--porcelain"], trained_repo).stdout == ""


def with_outputs(clone: Path) -> Path:
    """Fill a clone's DVC cache from the trained repo it was cloned from, and check out outputs."""
    trained = Path(run(["git", "remote", "get-url", "origin"], clone).stdout.strip())
    shutil.copytree(trained / ".dvc/cache", clone / ".dvc/cache", dirs_exist_ok=True)
    run(["dvc", "checkout"], clone)
    return trained


def test_push_then_pull_restores_every_output(repo_copy: Path) -> None:
    trained = with_outputs(repo_copy)
    run(["dvc", "push"], repo_copy)
    shutil.rmtree(repo_copy / ".dvc/cache")
    shutil.rmtree(repo_copy / "models/credit-hgb/model")
    (repo_copy / "data/credit/raw.csv").unlink()
    run(["dvc", "pull"], repo_copy)
    raw = "data/credit/raw.csv"
    assert (repo_copy / raw).read_bytes() == (trained / raw).read_bytes()
    mlmodel = "models/credit-hgb/model/MLmodel"
    assert (repo_copy / mlmodel).read_bytes() == (trained / mlmodel).read_bytes()
    assert "up to date" in run(["dvc", "status"], repo_copy).stdout


def test_mlflow_run_is_logged_with_tags_metrics_and_artifacts(trained_repo: Path) -> None:
    db = sqlite3.connect(trained_repo / "mlflow.db")
    (run_id,) = db.execute("select run_uuid from runs where name = 'credit-hgb'").fetchone()
    assert db.execute("select count(*) from runs").fetchone() == (3,)  # one per model
    tags = dict(db.execute("select key, value from tags where run_uuid = ?", (run_id,)))
    logged = dict(db.execute("select key, value from metrics where run_uuid = ?", (run_id,)))
    params = dict(db.execute("select key, value from params where run_uuid = ?", (run_id,)))
    commit = run(["git", "rev-list", "--max-parents=0", "HEAD"], trained_repo).stdout.strip()
    assert tags["git.commit"].startswith(commit)  # the commit the run started from
    assert tags["git.branch"] == "main"
    assert tags["model"] == "credit-hgb"
    assert tags["dvc.data/credit/raw.csv"] == lock_outs(trained_repo)["data/credit/raw.csv"]
    scores = json.loads((trained_repo / "models/credit-hgb/metrics.json").read_text())
    assert logged["roc_auc"] == scores["roc_auc"]
    assert params["estimator"] == "hist_gradient_boosting"
    artifacts = trained_repo / "mlartifacts"
    assert list(artifacts.rglob("model/MLmodel")) and list(artifacts.rglob("MODEL_CARD.md"))
    shown = run(["modelops", "show"], trained_repo).stdout
    assert run_id in shown and f"{scores['roc_auc']:.4f}" in shown


def ran_stages(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}


def test_a_second_model_trains_alone(repo_copy: Path) -> None:
    trained = with_outputs(repo_copy)
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["models"]["credit-lr"] = {
        "dataset": "credit",
        "estimator": "logistic_regression",
        "seed": 0,
        "threads": 1,
        "hyperparams": {"C": 0.5, "max_iter": 500},
    }
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], repo_copy).stdout
    assert ran_stages(out) == {"train@credit-lr", "evaluate@credit-lr", "package@credit-lr"}
    assert (repo_copy / "models/credit-lr/model/MLmodel").exists()
    assert lock_outs(repo_copy)["models/credit-hgb/model"] == lock_outs(trained)["models/credit-hgb/model"]


def test_only_what_changed_moves(repo_copy: Path) -> None:
    """Invariant 9: one model's params re-run its stages only; one dataset's split, its models'."""
    trained = with_outputs(repo_copy)
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["models"]["concrete-hgb"]["hyperparams"]["max_iter"] = 150
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], repo_copy).stdout
    assert ran_stages(out) == {"train@concrete-hgb", "evaluate@concrete-hgb", "package@concrete-hgb"}
    params["datasets"]["hpc"]["split"]["seed"] = 1
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], repo_copy).stdout
    assert ran_stages(out) == {"prepare@hpc", "train@hpc-forest", "evaluate@hpc-forest", "package@hpc-forest"}
    assert lock_outs(repo_copy)["models/credit-hgb/model"] == lock_outs(trained)["models/credit-hgb/model"]


def test_bad_data_fails_validation_and_trains_nothing(tmp_path: Path) -> None:
    repo = make_pipeline_repo(tmp_path / "repo")
    source = repo / "data/sources/applications.csv"
    run(["modelops", "ingest", "credit"], repo)
    lines = (repo / "data/credit/raw.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = lines[5].split(",")
    row[header.index("job")] = "astronaut"
    lines[5] = ",".join(row)
    source.write_text("\n".join(lines) + "\n")
    decl = yaml.safe_load((repo / "data/credit/dataset.yaml").read_text())
    decl["source"] = {"kind": "file", "path": "data/sources/applications.csv"}
    (repo / "data/credit/dataset.yaml").write_text(yaml.safe_dump(decl, sort_keys=False))
    proc = run(["dvc", "repro", "--glob", "*@credit*"], repo, check=False)
    assert proc.returncode != 0
    assert "job" in proc.stderr and "astronaut" in proc.stderr
    assert not (repo / "models/credit-hgb/pipeline.pkl").exists()
    assert not (repo / "models/credit-hgb/model").exists()
    result = json.loads((repo / "data/credit/validation.json").read_text())
    assert result["success"] is False


def test_bad_params_fail_before_any_work(tmp_path: Path) -> None:
    repo = make_pipeline_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["datasets"]["hpc"]["split"]["test_fraction"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(["dvc", "repro"], repo, check=False)
    assert proc.returncode != 0
    assert "datasets.hpc.split.test_fraction" in proc.stderr
    assert not list((repo / "data").glob("*/raw.csv"))


def test_a_bad_declaration_fails_before_any_stage_writes(tmp_path: Path) -> None:
    repo = make_pipeline_repo(tmp_path / "repo")
    decl = yaml.safe_load((repo / "data/concrete/dataset.yaml").read_text())
    decl["features"]["cement"]["kind"] = "text"
    (repo / "data/concrete/dataset.yaml").write_text(yaml.safe_dump(decl, sort_keys=False))
    proc = run(["dvc", "repro"], repo, check=False)
    assert proc.returncode != 0
    assert "data/concrete/dataset.yaml: invalid dataset declaration" in proc.stderr
    assert "features.cement" in proc.stderr
    assert not list((repo / "data").glob("*/raw.csv"))
