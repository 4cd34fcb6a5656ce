"""Issue 11's acceptance for `modelops new`: in a scratch clone of a trained repo, a scaffolded model
(on an existing dataset, or on a dataset profiled from a CSV) reproduces with only its own stages,
no file under src/ changes, and every env still renders and validates."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tests.conftest import clone_with_outputs, run

SHIPPED_DATASETS = ("credit", "hpc", "concrete")


def ran(output: str) -> set[str]:
    """The stages `dvc repro` ran (not the ones it skipped as unchanged)."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def changed_files(repo: Path) -> list[str]:
    """Every path the scaffold and the repro changed or added, as `git diff --stat` names them."""
    run(["git", "add", "-A"], repo)
    stat = run(["git", "diff", "--cached", "--stat=400", "--stat-name-width=300"], repo).stdout
    return [line.split("|")[0].strip() for line in stat.splitlines() if "|" in line]


def lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


def check_envs(repo: Path) -> None:
    out = run([sys.executable, "-m", "modelops.delivery.manifests"], repo).stdout
    envs = len([d for d in (repo / "gitops/envs").iterdir() if d.is_dir()])
    assert envs >= 3 and f"{envs} env(s), argocd and monitoring rendered" in out


def test_new_model_on_an_existing_dataset_reproduces_only_its_stages(
    trained_repo: Path, tmp_path: Path
) -> None:
    repo, env = clone_with_outputs(trained_repo, tmp_path / "clone")
    before = lock(repo)

    run(
        ["modelops", "new", "model", "credit-rf", "--dataset", "credit", "--estimator", "random_forest"], repo
    )
    check_envs(repo)
    repro = run(["dvc", "repro"], repo, env=env)

    assert ran(repro.stdout) == {"train@credit-rf", "evaluate@credit-rf", "package@credit-rf"}
    after = lock(repo)
    assert {k: v for k, v in after.items() if not k.endswith("@credit-rf")} == before
    assert (repo / "models/credit-rf/model/MLmodel").is_file()
    files = changed_files(repo)
    assert not [f for f in files if f.startswith("src/")], files
    assert "gitops/envs/production/credit-rf.yaml" in files and ".github/CODEOWNERS" in files
    check_envs(repo)


def _churn_csv(path: Path, rows: int = 400) -> Path:
    """A team's own export: an id, two numbers (one with gaps), a category and a 0/1 label."""
    rng = np.random.default_rng(7)
    tenure = rng.integers(0, 60, rows)
    spend = rng.gamma(2.0, 30.0, rows).round(2)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    logit = 0.04 * (30 - tenure) + 0.01 * (spend - 60) + np.where(plan == "basic", 0.8, -0.4)
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"id": np.arange(1000, 1000 + rows), "tenure": tenure, "spend": spend, "plan": plan})
    frame["churned"] = churned
    frame.loc[rng.choice(rows, 12, replace=False), "spend"] = np.nan
    frame.to_csv(path, index=False)
    return path


def test_new_dataset_from_a_csv_then_a_model_reproduce_only_their_stages(
    trained_repo: Path, tmp_path: Path
) -> None:
    repo, env = clone_with_outputs(trained_repo, tmp_path / "clone")
    before = lock(repo)
    csv = _churn_csv(tmp_path / "churn-export.csv")

    run(["modelops", "new", "dataset", "churn", "--from", str(csv), "--target", "churned"], repo)
    run(["modelops", "params"], repo)  # the declaration loads at once
    run(
        [
            "modelops",
            "new",
            "model",
            "churn-hgb",
            "--dataset",
            "churn",
            "--estimator",
            "hist_gradient_boosting",
        ],
        repo,
    )
    check_envs(repo)
    repro = run(["dvc", "repro"], repo, env=env)

    new = {"ingest@churn", "validate@churn", "prepare@churn"}
    new |= {"train@churn-hgb", "evaluate@churn-hgb", "package@churn-hgb"}
    stages = ran(repro.stdout)
    # Every dataset's ingest depends on the data/sources folder (dvc.yaml), which the new CSV is
    # added to: DVC re-runs those ingests, they rewrite the same bytes, and nothing after them runs.
    assert stages - {f"ingest@{d}" for d in SHIPPED_DATASETS} == new
    after = lock(repo)
    for stage, entry in before.items():
        if stage.startswith("ingest@"):
            assert after[stage]["outs"] == entry["outs"], stage
        else:
            assert after[stage] == entry, stage
    metrics = yaml.safe_load((repo / "models/churn-hgb/metrics.json").read_text())
    assert set(metrics) >= {"roc_auc", "f1"}
    files = changed_files(repo)
    assert not [f for f in files if f.startswith("src/")], files
    assert {"data/sources/churn.csv", "data/churn/dataset.yaml", "data/churn/expectations.json"} <= set(files)
    check_envs(repo)
