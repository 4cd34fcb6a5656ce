"""params.yaml validation: every bad value fails before work, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelops.config import load_params, parse_params
from modelops.errors import ParamsError

ROOT = Path(__file__).resolve().parents[2]


def shipped() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_shipped_params_are_valid() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.data.source == "credit"
    assert list(params.models) == ["credit-hgb"]
    assert params.model("credit-hgb").estimator == "hist_gradient_boosting"


@pytest.mark.parametrize(
    ("edit", "key", "why"),
    [
        (
            lambda p: p["data"].update(colour="blue"),
            "data.colour",
            "Extra inputs are not permitted",
        ),
        (lambda p: p.update(trian={}), "trian", "Extra inputs are not permitted"),
        (lambda p: p["split"].update(test_fraction="a lot"), "split.test_fraction", "valid number"),
        (lambda p: p["split"].update(test_fraction=1.5), "split.test_fraction", "less than 1"),
        (lambda p: p["data"].update(rows=5), "data.rows", "greater than or equal to 100"),
        (lambda p: p["data"].update(source="s3"), "data.source", "'credit', 'synthetic' or 'file'"),
        (
            lambda p: p["models"]["credit-hgb"].update(estimator="xgb"),
            "models.credit-hgb.estimator",
            "Input should be",
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
        (
            lambda p: p["models"].update({"Bad_Name": p["models"]["credit-hgb"]}),
            "models",
            "Bad_Name",
        ),
        (lambda p: p.update(models={}), "models", "at least one model"),
    ],
)
def test_bad_params_name_the_key(edit, key: str, why: str) -> None:
    raw = shipped()
    edit(raw)
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert key in str(err.value)
    assert why in str(err.value)


def test_unknown_hyperparameter_is_named_with_the_valid_ones() -> None:
    raw = shipped()
    raw["models"]["credit-hgb"]["hyperparams"]["max_depht"] = 3
    with pytest.raises(ParamsError, match=r"models\.credit-hgb\.hyperparams\.max_depht: unknown") as err:
        parse_params(raw)
    assert "max_depth" in str(err.value)


def test_hyperparameter_out_of_range_is_checked_by_scikit_learn() -> None:
    raw = shipped()
    raw["models"]["credit-hgb"]["hyperparams"]["learning_rate"] = -1
    with pytest.raises(ParamsError, match=r"models\.credit-hgb\.hyperparams: .*learning_rate"):
        parse_params(raw)


def test_file_source_needs_a_path_under_data_sources() -> None:
    raw = shipped()
    raw["data"]["source"] = "file"
    with pytest.raises(ParamsError, match=r"data\.path"):
        parse_params(raw)
    raw["data"]["path"] = "/etc/passwd"
    with pytest.raises(ParamsError, match="under data/sources/"):
        parse_params(raw)


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


def test_unknown_model_lists_the_known_ones() -> None:
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(ParamsError, match=r"no model 'nope'.*credit-hgb"):
        params.model("nope")


def test_a_passed_hyperparameter_check_is_remembered_per_content(tmp_path: Path, monkeypatch) -> None:
    """Stages that never build a model skip importing scikit-learn once the params passed."""
    import modelops.config as config

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc/tmp").mkdir(parents=True)
    raw = shipped()
    parse_params(raw)
    assert len(list(config.VERDICTS.iterdir())) == 1
    raw["models"]["credit-hgb"]["hyperparams"]["learning_rate"] = -1  # new content: checked again
    with pytest.raises(ParamsError, match="learning_rate"):
        parse_params(raw)
    assert len(list(config.VERDICTS.iterdir())) == 1  # a failure is never remembered


def test_no_verdict_is_written_outside_a_dvc_repository(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    parse_params(shipped())
    assert not (tmp_path / ".dvc").exists()


def test_gate_names_unknown_metrics_and_negative_bounds() -> None:
    raw = shipped()
    raw["gate"]["minimum"]["auc"] = 0.7
    with pytest.raises(ParamsError, match=r"gate\.minimum: .*unknown metric 'auc'"):
        parse_params(raw)
    raw = shipped()
    raw["gate"]["max_regression"]["f1"] = -0.1
    with pytest.raises(ParamsError, match=r"gate\.max_regression: .*f1: must be >= 0"):
        parse_params(raw)
    assert load_params(ROOT / "params.yaml").gate.minimum["roc_auc"] == 0.75
