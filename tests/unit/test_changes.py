"""What a branch changed against its base, read from a small real git repository and dvc.lock texts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelops.review import changes
from tests.conftest import declaration, make_params, run

DATASETS = {"credit": declaration("credit"), "concrete": declaration("concrete")}
PARAMS = make_params(
    {
        "a": {"dataset": "credit", "estimator": "random_forest"},
        "b": {"dataset": "credit", "estimator": "random_forest"},
        "r": {"dataset": "concrete", "estimator": "ridge"},
    },
    DATASETS,
)


def lock(**models: str) -> str:
    """dvc.lock with each model's packaged-model md5 (metrics md5 fixed) and the credit raw file."""
    stages = {"ingest@credit": {"outs": [{"path": "data/credit/raw.csv", "md5": "raw1"}]}}
    for model, md5 in models.items():
        stages[f"package@{model}"] = {"outs": [{"path": f"models/{model}/model", "md5": md5}]}
        stages[f"evaluate@{model}"] = {"outs": [{"path": f"models/{model}/metrics.json", "md5": "x"}]}
    return yaml.safe_dump({"stages": stages})


# --------------------------------------------------------------------------- which models


def test_affected_are_the_changed_and_new_models_with_why() -> None:
    old, new = lock(a="1", b="2"), lock(a="1", b="9", r="3")
    assert changes.affected(PARAMS, old, new, {}) == {
        "b": [changes.MODEL_CHANGED],
        "r": [changes.NEW_MODEL],
    }
    assert changes.affected(PARAMS, new, new, {}) == {}


def test_a_gate_change_re_gates_the_models_it_applies_to() -> None:
    built = lock(a="1", b="2", r="3")
    task_default = {"gate.binary.minimum.roc_auc": {"old": 0.75, "new": 0.8}}
    assert changes.affected(PARAMS, built, built, task_default) == {
        "a": [changes.GATE_CHANGED],
        "b": [changes.GATE_CHANGED],
    }
    own = {"models.r.gate.minimum.r2": {"old": None, "new": 0.6}}
    assert changes.affected(PARAMS, built, built, own) == {"r": [changes.GATE_CHANGED]}
    everyone = {"gate.max_latency_ratio": {"old": 2.0, "new": 3.0}}
    assert changes.gate_changed(PARAMS, everyone) == ["a", "b", "r"]
    # the bootstrap behind every interval can change any verdict
    assert changes.gate_changed(PARAMS, {"gate.bootstrap.rounds": {"old": 1000, "new": 2000}}) == [
        "a",
        "b",
        "r",
    ]
    # a model the branch has not built is not re-gated: there is nothing to gate
    assert changes.affected(PARAMS, lock(a="1"), lock(a="1"), everyone) == {"a": [changes.GATE_CHANGED]}


def test_params_of_a_model_are_its_own_its_datasets_evaluation_and_its_tasks_gate() -> None:
    diff = {
        key: {"old": 1, "new": 2}
        for key in (
            "models.a.seed",
            "models.b.seed",
            "datasets.credit.split.seed",
            "datasets.concrete.split.seed",
            "evaluate.importance_rows",
            "gate.binary.minimum.f1",
            "gate.regression.minimum.r2",
            "gate.bootstrap.level",
            "monitor.psi",
        )
    }
    assert list(changes.params_of("a", PARAMS, diff)) == [
        "models.a.seed",
        "datasets.credit.split.seed",
        "evaluate.importance_rows",
        "gate.binary.minimum.f1",
        "gate.bootstrap.level",
    ]
    assert list(changes.params_of("r", PARAMS, diff)) == [
        "datasets.concrete.split.seed",
        "evaluate.importance_rows",
        "gate.regression.minimum.r2",
        "gate.bootstrap.level",
    ]
    assert changes.params_of("a", PARAMS, None) is None


def test_flatten_keeps_lists_as_values() -> None:
    flat = changes.flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}})
    assert flat == {"a.b": 1, "a.c": [1, 2], "d": None, "e": {}}
    assert changes.flatten({}) == {}


# --------------------------------------------------------------------------- from git


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """main: params, a model's metrics, a validation summary; then a branch that edits them."""
    monkeypatch.chdir(tmp_path)
    run(["git", "init", "-q", "-b", "main"], tmp_path)
    Path("params.yaml").write_text("models:\n  a:\n    seed: 0\n    hyperparams: {max_iter: 200}\n")
    Path("models/a").mkdir(parents=True)
    Path("models/a/metrics.json").write_text(json.dumps({"f1": 0.5}))
    Path("data/credit").mkdir(parents=True)
    Path("data/credit/validation.json").write_text(json.dumps({"rows": 900}))
    Path("README.md").write_text("x\n")
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "main"], tmp_path)
    run(["git", "checkout", "-qb", "pr"], tmp_path)
    Path("params.yaml").write_text("models:\n  a:\n    seed: 1\n    hyperparams: {max_iter: 50}\n  b: {}\n")
    Path("README.md").write_text("y\n")
    Path("src").mkdir()
    Path("src/x.py").write_text("")
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "pr"], tmp_path)
    return tmp_path


def test_base_files_params_and_code_paths_from_git(repo: Path) -> None:
    assert changes.resolve_base("main") == "main"
    assert changes.resolve_base("no-such-branch") is None
    assert changes.params_diff("main") == {
        "models.a.hyperparams.max_iter": {"old": 200, "new": 50},
        "models.a.seed": {"old": 0, "new": 1},
        "models.b": {"old": None, "new": {}},
    }
    assert changes.params_diff(None) is None
    assert changes.base_metrics("main", "a") == {"f1": 0.5}
    assert changes.base_metrics("main", "b") is None
    assert changes.base_metrics(None, "a") is None
    assert changes.code_paths("main") == ["params.yaml", "src/x.py"]
    assert changes.code_paths(None) is None


def test_data_diff_reads_md5_from_the_locks_and_rows_from_the_summaries(repo: Path) -> None:
    ds = PARAMS.dataset("credit")
    old, new = lock(a="1"), lock(a="1").replace("raw1", "raw2")
    diff = changes.data_diff(ds, "main", new, old, {"rows": 950, "md5": "ignored"})
    assert diff["file"] == "data/credit/raw.csv" and diff["dataset"] == "credit"
    assert diff["current"] == {"md5": "raw2", "rows": 950, "prepared_md5": None}
    assert diff["base"] == {"md5": "raw1", "rows": 900, "prepared_md5": None}
    assert "ids" not in diff  # the base file is not in a DVC cache here
    alone = changes.data_diff(ds, None, None, None, {"md5": "m", "rows": 3})
    assert alone["current"] == {"md5": "m", "rows": 3, "prepared_md5": None} and alone["base"] == {}


def test_row_changes_by_the_declared_id(tmp_path: Path) -> None:
    old = pd.DataFrame({"key": [1, 2, 3, 4], "age": [30, 40, 50, 60]})
    new = pd.DataFrame({"key": [2, 3, 4, 5, 6], "age": [40, 51, 60, 20, 21]})
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)
    assert changes.row_changes(tmp_path / "old.csv", tmp_path / "new.csv", "key") == {
        "added": 2,
        "removed": 1,
        "changed": 1,
    }
