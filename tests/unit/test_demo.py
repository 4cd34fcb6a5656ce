"""The demo's choice of its two models and of the change its pull request proposes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelops.config import load_params
from modelops.runtime.demo import Demo, DemoError, proposal, served_models
from modelops.workspace import PROJECT_ROOT
from tests.gitops_models import add_manifests


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """params.yaml, the declarations and gitops/ of the project, in a scratch dir."""
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    for declaration in PROJECT_ROOT.glob("data/*/dataset.yaml"):
        dest = tmp_path / declaration.relative_to(PROJECT_ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(declaration, dest)
    shutil.copytree(PROJECT_ROOT / "gitops", tmp_path / "gitops")
    return tmp_path


def test_the_defaults_are_the_first_two_served_models_in_params_order(root: Path) -> None:
    models = list(load_params(root / "params.yaml").models)
    for model in models[1:]:
        add_manifests(root, model)
    assert served_models(load_params(root / "params.yaml"), root) == models
    demo = Demo(root / "ws")
    demo.choose(root)
    assert (demo.model, demo.other) == (models[0], models[1])
    assert demo.production_pr_branch == f"promote/production/{models[0]}"
    named = Demo(root / "ws", other=models[2])
    named.choose(root)
    assert (named.model, named.other) == (models[0], models[2])


def test_one_served_model_is_not_enough_and_says_what_to_do(root: Path) -> None:
    params = load_params(root / "params.yaml")
    for model in params.models:
        if model != "credit-hgb":
            for path in root.glob(f"gitops/**/{model}.yaml"):
                path.unlink()  # as before the other models ship manifests
    with pytest.raises(DemoError, match=r"needs two models with manifests.*served: credit-hgb.*--other"):
        Demo(root / "ws").choose(root)
    with pytest.raises(DemoError, match="hpc-forest has no manifests under gitops/envs/"):
        Demo(root / "ws", other="hpc-forest").choose(root)
    with pytest.raises(DemoError, match="unknown model 'nope'"):
        Demo(root / "ws", model="nope").choose(root)


def test_the_proposal_slows_learning_and_adds_rounds_or_names_what_is_missing(root: Path) -> None:
    params = load_params(root / "params.yaml")
    hyper = params.model("credit-hgb").hyperparams
    assert proposal(params, "credit-hgb") == {
        "learning_rate": pytest.approx(hyper["learning_rate"] * 0.6),
        "max_iter": int(hyper["max_iter"] * 1.5),
    }
    with pytest.raises(DemoError, match=r"models.hpc-forest.hyperparams needs learning_rate and max_iter"):
        proposal(params, "hpc-forest")
