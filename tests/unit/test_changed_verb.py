"""`modelops changed --base REV`: the models promote.yml promotes, from a real git history."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelops.errors import PipelineError
from modelops.pipeline.lock import lock_at
from tests.conftest import run

MODELS = ["credit-hgb", "hpc-forest", "concrete-hgb"]


def lock(**models: tuple[str, str]) -> str:
    """A dvc.lock text with evaluate@/package@ stages: model -> (model md5, metrics md5)."""
    stages = {}
    for name, (model_md5, metrics_md5) in models.items():
        stages[f"evaluate@{name}"] = {
            "cmd": f"modelops evaluate {name}",
            "outs": [
                {"path": f"models/{name}/metrics.json", "hash": "md5", "md5": metrics_md5},
                {"path": f"models/{name}/plots", "hash": "md5", "md5": "p.dir"},
            ],
        }
        stages[f"package@{name}"] = {
            "cmd": f"modelops package {name}",
            "outs": [{"path": f"models/{name}/model", "hash": "md5", "md5": model_md5 + ".dir"}],
        }
    stages["train@credit-hgb-extra"] = {"outs": [{"path": "x", "md5": "1"}]}
    return yaml.safe_dump({"schema": "2.0", "stages": stages})


BASE = lock(**{"credit-hgb": ("a", "m1"), "hpc-forest": ("b", "m2"), "concrete-hgb": ("c", "m3")})


def test_changed_verb_compares_with_a_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`modelops changed --base REV` against a real git history: one model per line."""
    repo = tmp_path / "repo"
    repo.mkdir()
    project = Path(__file__).resolve().parents[2]
    run(["git", "init", "-q"], repo)
    (repo / "params.yaml").write_text((project / "params.yaml").read_text())
    subprocess.run(["cp", "-r", str(project / "data"), str(repo)], check=True)
    (repo / "dvc.lock").write_text(BASE)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "base"], repo)
    base = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    (repo / "dvc.lock").write_text(
        lock(**{"credit-hgb": ("a", "m1"), "hpc-forest": ("b", "m2"), "concrete-hgb": ("c2", "m3")})
    )
    modelops = [sys.executable, "-m", "modelops.cli"]
    assert run([*modelops, "changed", "--base", base], repo).stdout == "concrete-hgb\n"
    # a push that created the branch has an all-zero `before`: everything is new
    assert run([*modelops, "changed", "--base", "0" * 40], repo).stdout.split() == MODELS
    assert run([*modelops, "changed", "--base", ""], repo).stdout.split() == MODELS
    unknown = run([*modelops, "changed", "--base", "f" * 40], repo, check=False)
    assert unknown.returncode == PipelineError.exit_code
    assert "no such commit" in unknown.stderr
    monkeypatch.chdir(repo)
    assert lock_at(base) == BASE
    run(["git", "rm", "-qf", "dvc.lock"], repo)
    run(["git", "commit", "-q", "-m", "no lock"], repo)
    assert lock_at("HEAD") is None
