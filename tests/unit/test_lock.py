"""`changed_models`: the rule that decides which models a pull request reports, gates and promotes."""

from __future__ import annotations

import pytest
import yaml

from modelops.errors import PipelineError
from modelops.pipeline import lock

MODELS = ["credit-hgb", "hpc-forest", "concrete-hgb"]


def lock_text(**models: tuple[str, str]) -> str:
    """A dvc.lock with a data stage and, per model, its evaluate and package outputs."""
    stages = {
        "ingest@credit": {
            "cmd": "modelops ingest credit",
            "outs": [{"path": "data/credit/raw.csv", "md5": "r"}],
        }
    }
    for name, (model_md5, metrics_md5) in models.items():
        model = name.replace("_", "-")
        stages[f"evaluate@{model}"] = {
            "outs": [
                {"path": f"models/{model}/metrics.json", "md5": metrics_md5},
                {"path": f"models/{model}/plots", "md5": "p.dir"},
            ]
        }
        stages[f"package@{model}"] = {
            "outs": [
                {"path": f"models/{model}/model", "md5": model_md5},
                {"path": f"models/{model}/MODEL_CARD.md", "md5": "card"},
            ]
        }
    return yaml.safe_dump({"schema": "2.0", "stages": stages})


def three(credit=("m1.dir", "x1"), hpc=("m2.dir", "x2"), concrete=("m3.dir", "x3")) -> str:
    return lock_text(credit_hgb=credit, hpc_forest=hpc, concrete_hgb=concrete)


BASE = three()


def test_nothing_changed_means_no_model() -> None:
    assert lock.changed_models(BASE, BASE, MODELS) == []


def test_a_new_packaged_model_or_new_metrics_changes_only_that_model() -> None:
    model = three(hpc=("m9.dir", "x2"))
    assert lock.changed_models(BASE, model, MODELS) == ["hpc-forest"]
    metrics = lock_text(
        credit_hgb=("m1.dir", "x1"), hpc_forest=("m2.dir", "x2"), concrete_hgb=("m3.dir", "x9")
    )
    assert lock.changed_models(BASE, metrics, MODELS) == ["concrete-hgb"]


def test_other_outputs_do_not_move_a_model() -> None:
    new = BASE.replace("md5: card", "md5: other-card").replace("md5: r\n", "md5: r2\n")
    assert new != BASE
    assert lock.changed_models(BASE, new, MODELS) == []


def test_a_model_the_base_never_built_is_new_and_the_order_is_the_callers() -> None:
    old = lock_text(credit_hgb=("m1.dir", "x1"))
    assert lock.changed_models(old, BASE, MODELS) == ["hpc-forest", "concrete-hgb"]
    assert lock.changed_models(None, BASE, list(reversed(MODELS))) == list(reversed(MODELS))
    assert lock.changed_models("", BASE, MODELS) == MODELS


def test_a_model_the_new_lock_does_not_record_is_not_reported() -> None:
    new = lock_text(credit_hgb=("m7.dir", "x1"))
    assert lock.changed_models(BASE, new, MODELS) == ["credit-hgb"]
    assert lock.changed_models(BASE, None, MODELS) == []


def test_an_old_single_model_lock_counts_as_no_record() -> None:
    old = "stages:\n  package:\n    outs:\n    - path: models/credit-hgb/model\n      md5: m1.dir\n"
    assert lock.changed_models(old, BASE, ["credit-hgb"]) == ["credit-hgb"]


def test_out_md5_and_a_broken_lock() -> None:
    assert lock.out_md5(BASE, "data/credit/raw.csv") == "r"
    assert lock.out_md5(BASE, "data/credit/raw.csv", stage="ingest@hpc") is None
    assert lock.fingerprint(BASE, "hpc-forest") == ("m2.dir", "x2")
    with pytest.raises(PipelineError, match=r"dvc\.lock: not valid YAML"):
        lock.changed_models("stages: [unclosed", BASE, MODELS)
    with pytest.raises(PipelineError, match="expected a mapping"):
        lock.stages("- a list")
