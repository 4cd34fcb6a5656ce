"""Which models a change moved: two dvc.lock texts in, the changed models out (invariant 9)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelops.errors import PipelineError
from modelops.pipeline.lock import changed_models, lock_at, outputs
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


def test_identical_locks_change_nothing() -> None:
    assert changed_models(BASE, BASE, MODELS) == []


def test_a_new_packaged_model_changes_only_that_model() -> None:
    new = lock(**{"credit-hgb": ("a2", "m1"), "hpc-forest": ("b", "m2"), "concrete-hgb": ("c", "m3")})
    assert changed_models(BASE, new, MODELS) == ["credit-hgb"]


def test_new_metrics_alone_count_as_a_change() -> None:
    new = lock(**{"credit-hgb": ("a", "m1"), "hpc-forest": ("b", "m2b"), "concrete-hgb": ("c", "m3")})
    assert changed_models(BASE, new, MODELS) == ["hpc-forest"]


def test_a_model_new_to_the_lock_is_changed_and_order_follows_the_models_given() -> None:
    old = lock(**{"credit-hgb": ("a", "m1")})
    assert changed_models(old, BASE, ["concrete-hgb", "credit-hgb", "hpc-forest"]) == [
        "concrete-hgb",
        "hpc-forest",
    ]


def test_no_old_lock_means_every_built_model_changed() -> None:
    assert changed_models(None, BASE, MODELS) == MODELS
    assert changed_models("", BASE, MODELS) == MODELS


def test_a_model_the_new_lock_does_not_build_is_not_changed() -> None:
    assert changed_models(BASE, lock(**{"credit-hgb": ("a", "m1")}), MODELS) == []


def test_outputs_reads_the_two_paths() -> None:
    assert outputs(BASE, "hpc-forest") == {
        "models/hpc-forest/model": "b.dir",
        "models/hpc-forest/metrics.json": "m2",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stages: [1, 2", "not valid YAML"),
        ("schema: '2.0'\n", "no `stages:` mapping"),
        ("stages:\n  package@credit-hgb:\n    cmd: x\n", "stage 'package@credit-hgb' has no `outs:` list"),
    ],
)
def test_a_malformed_lock_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(PipelineError, match="dvc.lock \\(new\\).*" + message.replace("[", "\\[")):
        changed_models(BASE, text, ["credit-hgb"])


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
