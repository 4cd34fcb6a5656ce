"""params.yaml + declarations validation: every bad value fails before work, naming file and key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelops.config import load_params, parse_params
from modelops.errors import DeclarationError, ParamsError
from tests.conftest import declaration

ROOT = Path(__file__).resolve().parents[2]
DECLS = {name: declaration(name) for name in ("credit", "hpc", "concrete")}


def shipped() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def parse(raw: dict, decls: dict | None = None):
    return parse_params(raw, declarations=decls if decls is not None else DECLS)


def test_shipped_params_and_declarations_are_valid() -> None:
    params = load_params(ROOT / "params.yaml")
    assert set(params.datasets) == {"credit", "hpc", "concrete"}
    assert {params.dataset_of(m).task for m in params.models} == {"binary", "multiclass", "regression"}
    assert params.model("credit-hgb").estimator == "hist_gradient_boosting"
    assert params.models_of("credit") == ["credit-hgb"]


@pytest.mark.parametrize(
    ("edit", "key", "why"),
    [
        (lambda p: p.update(trian={}), "trian", "Extra inputs are not permitted"),
        (lambda p: p.update(data={"source": "credit"}), "data", "Extra inputs are not permitted"),
        (
            lambda p: p["datasets"]["credit"]["split"].update(test_fraction="a lot"),
            "datasets.credit.split.test_fraction",
            "valid number",
        ),
        (
            lambda p: p["datasets"]["credit"]["split"].update(test_fraction=1.5),
            "datasets.credit.split.test_fraction",
            "less than 1",
        ),
        (
            lambda p: p["models"]["credit-hgb"].update(estimator="xgb"),
            "models.credit-hgb.estimator",
            "unknown estimator 'xgb'",
        ),
        (
            lambda p: p["models"]["credit-hgb"].update(threads=0),
            "models.credit-hgb.threads",
            "greater than or equal to 1",
        ),
        (
            lambda p: p["models"]["credit-hgb"]["hyperparams"].update(random_state=3),
            "models.credit-hgb.hyperparams",
            "seed",
        ),
        (lambda p: p["models"].update({"Bad_Name": p["models"]["credit-hgb"]}), "models", "Bad_Name"),
        (
            lambda p: p["policy"]["canary_share"].update(min=60),
            "policy.canary_share",
            "min (60) is more than max (50)",
        ),
        (
            lambda p: p["policy"].update(order=["staging", "staging"]),
            "policy.order",
            "an env is listed twice",
        ),
        (lambda p: p.update(models={}), "models", "at least one model"),
        (lambda p: p["models"]["credit-hgb"].pop("dataset"), "models.credit-hgb.dataset", "Field required"),
        (
            lambda p: p["models"]["credit-hgb"].update(dataset="churn"),
            "models.credit-hgb.dataset",
            "unknown dataset 'churn'",
        ),
        (
            lambda p: p["models"]["concrete-hgb"].update(estimator="logistic_regression"),
            "models.concrete-hgb.estimator",
            "does not fit dataset 'concrete', a regression task",
        ),
        (
            lambda p: p["models"]["credit-hgb"].update(estimator="ridge"),
            "models.credit-hgb.estimator",
            "does not fit dataset 'credit', a binary task",
        ),
        (
            lambda p: p["models"]["credit-hgb"]["gate"]["minimum"].update(rmse=3),
            "models.credit-hgb.gate.minimum.rmse",
            "not a binary metric",
        ),
        (
            lambda p: p["gate"]["regression"]["minimum"].update(f1=0.3),
            "gate.regression.minimum.f1",
            "not a regression metric",
        ),
        (
            lambda p: p["gate"]["binary"]["minimum"].update(auc=0.7),
            "gate.binary.minimum",
            "unknown metric 'auc'",
        ),
        (
            lambda p: p["gate"]["binary"]["max_regression"].update(f1=-0.1),
            "gate.binary.max_regression",
            "f1: must be >= 0",
        ),
        (
            lambda p: p["gate"]["bootstrap"].update(rounds=10),
            "gate.bootstrap.rounds",
            "greater than or equal to 100",
        ),
        (
            lambda p: p["gate"]["bootstrap"].update(rounds="many"),
            "gate.bootstrap.rounds",
            "valid integer",
        ),
        (
            lambda p: p["gate"]["bootstrap"].update(level=0.05),
            "gate.bootstrap.level",
            "greater than or equal to 0.5",
        ),
        (lambda p: p["gate"]["bootstrap"].update(level=1), "gate.bootstrap.level", "less than 1"),
        (
            lambda p: p["gate"]["bootstrap"].update(seed=-1),
            "gate.bootstrap.seed",
            "greater than or equal to 0",
        ),
        (lambda p: p["gate"]["bootstrap"].update(alpha=0.05), "gate.bootstrap.alpha", "Extra inputs"),
        (
            lambda p: p["gate"]["binary"].update(significant_regression="maybe"),
            "gate.binary.significant_regression",
            "valid boolean",
        ),
        (
            lambda p: p["gate"]["binary"].update(require_improvement="roc_auc"),
            "gate.binary.require_improvement",
            "valid list",
        ),
        (
            lambda p: p["gate"]["binary"].update(require_improvement=["auc"]),
            "gate.binary.require_improvement",
            "unknown metric 'auc'",
        ),
        (
            lambda p: p["gate"]["binary"].update(require_improvement=["f1", "f1"]),
            "gate.binary.require_improvement",
            "listed twice",
        ),
        (
            lambda p: p["gate"]["regression"].update(require_improvement=["f1"]),
            "gate.regression.require_improvement.f1",
            "not a regression metric",
        ),
        (
            lambda p: p["models"]["credit-hgb"]["gate"].update(require_improvement=["rmse"]),
            "models.credit-hgb.gate.require_improvement.rmse",
            "not a binary metric",
        ),
    ],
)
def test_bad_params_name_the_key(edit, key: str, why: str) -> None:
    raw = shipped()
    edit(raw)
    with pytest.raises(ParamsError) as err:
        parse(raw)
    assert key in str(err.value)
    assert why in str(err.value)


def test_unknown_hyperparameter_is_named_with_the_valid_ones() -> None:
    raw = shipped()
    raw["models"]["credit-hgb"]["hyperparams"]["max_depht"] = 3
    with pytest.raises(ParamsError, match=r"models\.credit-hgb\.hyperparams\.max_depht: unknown") as err:
        parse(raw)
    assert "max_depth" in str(err.value)


def test_hyperparameters_are_checked_by_scikit_learn_for_the_task() -> None:
    raw = shipped()
    raw["models"]["credit-hgb"]["hyperparams"]["learning_rate"] = -1
    with pytest.raises(ParamsError, match=r"models\.credit-hgb\.hyperparams: .*learning_rate"):
        parse(raw)
    raw = shipped()  # a classifier-only loss on the regressor is refused by the regressor itself
    raw["models"]["concrete-hgb"]["hyperparams"]["loss"] = "log_loss"
    with pytest.raises(ParamsError, match=r"models\.concrete-hgb\.hyperparams: .*loss"):
        parse(raw)


def test_gate_policy_is_the_task_default_with_the_model_overrides() -> None:
    params = load_params(ROOT / "params.yaml")
    credit = params.gate_policy("credit-hgb")
    assert credit.minimum == {"roc_auc": 0.75, "f1": 0.45}  # task default + the model's own floor
    assert credit.max_latency_ratio == 2.0
    assert params.gate_policy("concrete-hgb").minimum == {"r2": 0.5}
    assert "macro_f1" in params.gate_policy("hpc-forest").minimum
    # regressions must be significant to fail, and no improvement is required, unless params say so
    for model in params.models:
        policy = params.gate_policy(model)
        assert policy.significant_regression is True and policy.require_improvement is None
    assert params.gate.bootstrap.model_dump() == {"rounds": 1000, "seed": 0, "level": 0.95}


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ParamsError, match="expected a mapping"):
        load_params(bad)


def test_unknown_model_and_dataset_list_the_known_ones() -> None:
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(ParamsError, match=r"no model 'nope'.*credit-hgb"):
        params.model("nope")
    with pytest.raises(ParamsError, match=r"no dataset 'nope'.*concrete, credit, hpc"):
        params.dataset("nope")


def test_a_passed_hyperparameter_check_is_remembered_per_content(tmp_path: Path, monkeypatch) -> None:
    """Stages and verbs that never build a model skip importing scikit-learn once the params passed."""
    import modelops.config as config

    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "cache"))
    raw = shipped()
    parse(raw)
    assert len(list(config.verdicts_dir().iterdir())) == 1
    raw["models"]["credit-hgb"]["hyperparams"]["learning_rate"] = -1  # new content: checked again
    with pytest.raises(ParamsError, match="learning_rate"):
        parse(raw)
    assert len(list(config.verdicts_dir().iterdir())) == 1  # a failure is never remembered


def test_a_verdict_holds_in_another_checkout_which_then_never_imports_sklearn(tmp_path: Path) -> None:
    """A CI job or a test repository is a fresh checkout: the verdict is per machine user, so the
    second checkout's process loads params.yaml without scikit-learn (and no .dvc/ is created)."""
    env = {**os.environ, "MODELOPS_CACHE_DIR": str(tmp_path / "cache")}
    probe = (
        "import sys; from modelops.config import load_params; load_params('params.yaml'); "
        "print('sklearn' in sys.modules)"
    )
    answers = []
    for checkout in ("one", "two"):
        (tmp_path / checkout).mkdir()
        shutil.copy(ROOT / "params.yaml", tmp_path / checkout / "params.yaml")
        no_data = shutil.ignore_patterns("*.csv", "prepared")
        shutil.copytree(ROOT / "data", tmp_path / checkout / "data", ignore=no_data)
        out = subprocess.run(
            [sys.executable, "-c", probe], cwd=tmp_path / checkout, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        answers.append(out.stdout.strip())
        assert not (tmp_path / checkout / ".dvc").exists()
    assert answers == ["True", "False"]


def test_an_unwritable_cache_only_means_checking_again(tmp_path: Path, monkeypatch) -> None:
    import modelops.config as config

    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path / "file" / "cache"))
    parse(shipped())  # passes; nothing remembered, nothing raised
    bad = shipped()
    bad["models"]["credit-hgb"]["hyperparams"]["learning_rate"] = -1
    with pytest.raises(ParamsError, match="learning_rate"):
        parse(bad)


# ---- the files on disk: params.yaml and data/<d>/dataset.yaml together -------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of params.yaml and the declarations, as a repository holds them."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    for name in DECLS:
        (tmp_path / "data" / name).mkdir(parents=True)
        shutil.copy(ROOT / "data" / name / "dataset.yaml", tmp_path / "data" / name / "dataset.yaml")
    return tmp_path


def edit_decl(repo: Path, name: str, edit) -> None:
    path = repo / "data" / name / "dataset.yaml"
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.parametrize(
    ("edit", "key", "why"),
    [
        (lambda d: d["features"]["age"].update(kind="text"), "features.age", "'numeric', 'categorical'"),
        (lambda d: d["features"]["home"].pop("values"), "features.home.values", "Field required"),
        (lambda d: d["features"]["home"].update(values=[]), "features.home.values", "at least 1 item"),
        (lambda d: d["features"]["job"].update(values=["a", "a"]), "features.job", "values repeat"),
        (lambda d: d["features"].update(status={"kind": "numeric"}), "target:", "duplicate column"),
        (lambda d: d["features"].update(id={"kind": "numeric"}), "id:", "duplicate column"),
        (lambda d: d.update(task="ranking"), "task", "'binary', 'multiclass' or 'regression'"),
        (lambda d: d.update(classes=["good", "bad", "ugly"]), "classes", "exactly 2"),
        (lambda d: d.update(name="other"), "name", "its folder"),
        (lambda d: d["source"].update(kind="s3"), "source", "'packaged', 'file', 'synthetic'"),
        (lambda d: d["features"]["age"].update(min=10, max=1), "features.age", "greater than max"),
    ],
)
def test_bad_declarations_name_the_file_and_key(repo: Path, edit, key: str, why: str) -> None:
    edit_decl(repo, "credit", edit)
    with pytest.raises(DeclarationError) as err:
        load_params(repo / "params.yaml")
    assert str(err.value).startswith(str(repo / "data/credit/dataset.yaml"))
    assert key in str(err.value)
    assert why in str(err.value)


def test_a_feature_declared_twice_is_refused_not_overwritten(repo: Path) -> None:
    path = repo / "data/credit/dataset.yaml"
    path.write_text(path.read_text() + "  age:\n    kind: categorical\n    values: [young]\n")
    with pytest.raises(
        DeclarationError, match=r"(?s)dataset\.yaml: not valid YAML: duplicate key 'age'.*line 9"
    ):
        load_params(repo / "params.yaml")


def test_target_must_be_a_column_of_a_file_source(repo: Path) -> None:
    sources = repo / "data/sources"
    sources.mkdir()
    (sources / "credit.csv").write_text("id,outcome,age\n1,good,30\n")
    edit_decl(repo, "credit", lambda d: d.update(source={"kind": "file", "path": "data/sources/credit.csv"}))
    with pytest.raises(
        DeclarationError, match=r"credit/dataset\.yaml: target: 'status' is not a column of"
    ) as e:
        load_params(repo / "params.yaml")
    assert "id, outcome, age" in str(e.value)


def test_two_datasets_writing_one_path_are_refused(repo: Path) -> None:
    edit_decl(repo, "hpc", lambda d: d.update(raw="data/credit/raw.csv"))
    with pytest.raises(
        DeclarationError, match=r"hpc/dataset\.yaml: raw: datasets 'credit' and 'hpc' both write"
    ):
        load_params(repo / "params.yaml")


def test_declaration_and_params_must_agree(repo: Path) -> None:
    (repo / "data/churn").mkdir()
    shutil.copy(repo / "data/credit/dataset.yaml", repo / "data/churn/dataset.yaml")
    with pytest.raises(
        DeclarationError, match=r"churn/dataset\.yaml: dataset 'churn' is declared but not listed"
    ):
        load_params(repo / "params.yaml")
    shutil.rmtree(repo / "data/churn")
    shutil.rmtree(repo / "data/hpc")
    with pytest.raises(DeclarationError, match=r"datasets\.hpc: no declaration at .*hpc/dataset\.yaml"):
        load_params(repo / "params.yaml")


def test_a_bad_declaration_fails_the_first_stage_before_it_writes(repo: Path) -> None:
    """`dvc repro` runs `modelops ingest <d>` first: the check is in load_params, so no stage writes."""
    import subprocess
    import sys

    edit_decl(repo, "concrete", lambda d: d["features"]["age"].update(kind="text"))
    proc = subprocess.run(
        [sys.executable, "-m", "modelops.cli", "ingest", "credit"], cwd=repo, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "data/concrete/dataset.yaml: invalid dataset declaration" in proc.stderr
    assert "features.age" in proc.stderr
    assert not (repo / "data/credit/raw.csv").exists()
