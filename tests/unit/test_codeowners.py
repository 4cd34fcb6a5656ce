"""`.github/CODEOWNERS`: production and each model's files are owned, and `modelops new model` keeps
it so (its block above the production block) or refuses a file it cannot keep so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelops.changeset import ScaffoldError
from modelops.config import load_params
from modelops.delivery import codeowners, scaffold

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / codeowners.PATH).read_text()
ML, RELEASE, PLATFORM = "@your-org/ml-team", "@your-org/release-team", "@your-org/platform-team"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """What `new model` reads and writes, CODEOWNERS included."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    for folder in ("data", "gitops"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("raw.csv", "prepared"))
    (root / ".github").mkdir()
    (root / codeowners.PATH).write_text(SHIPPED)
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_shipped_file_protects_production_and_every_models_files() -> None:
    rules = codeowners.parse(SHIPPED)
    for model in load_params(ROOT / "params.yaml").models:
        for path in codeowners.model_paths(model, ["staging", "production"]):
            expected = RELEASE if path.startswith("gitops/envs/production/") else ML
            assert codeowners.owners_of(rules, path) == (expected,), path
    for path in (
        "gitops/envs/production/kustomization.yaml",
        "gitops/envs/production/batch/concrete-hgb.yaml",
    ):
        assert codeowners.owners_of(rules, path) == (RELEASE,)
    for path in (".github/workflows/promote.yml", ".github/CODEOWNERS", "src/modelops/delivery/policy.py"):
        assert codeowners.owners_of(rules, path) == (PLATFORM,)
    assert codeowners.owners_of(rules, "gitops/envs/staging/kustomization.yaml") == (PLATFORM,)
    assert codeowners.owners_of(rules, "src/modelops/pipeline/train.py") is None
    # The production block is the file's last rule, so nothing above can take production from it.
    assert rules[-1].pattern == codeowners.PROTECTED


def test_new_model_adds_its_block_above_the_production_block(repo: Path) -> None:
    scaffold.new_model("credit-rf", "credit", "random_forest", "@acme/risk", root=repo)
    text = (repo / codeowners.PATH).read_text()
    assert text.startswith(SHIPPED[: SHIPPED.index("# Production")])  # the rest is untouched
    assert text.endswith(
        codeowners.model_block("credit-rf", "credit", "@acme/risk") + "\n" + codeowners.PRODUCTION_BLOCK
    )
    rules = codeowners.parse(text)
    assert codeowners.owners_of(rules, "gitops/envs/staging/credit-rf.yaml") == ("@acme/risk",)
    assert codeowners.owners_of(rules, "models/credit-rf/model/MLmodel") == ("@acme/risk",)
    assert codeowners.owners_of(rules, "gitops/envs/production/credit-rf.yaml") == (RELEASE,)
    assert codeowners.owners_of(rules, "gitops/envs/staging/credit-hgb.yaml") == (ML,)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/models/x/ ml-team", "'ml-team' is not an owner"),
        ("!/models/x/ @acme/ml", "negation (!) is not supported"),
        ("/models/[ab]/ @acme/ml", "character ranges ([...]) are not supported"),
    ],
)
def test_a_malformed_file_is_refused_naming_its_line(repo: Path, line: str, message: str) -> None:
    (repo / codeowners.PATH).write_text(SHIPPED.replace("/gitops/schemas/", f"{line}\n/gitops/schemas/", 1))
    number = SHIPPED[: SHIPPED.index("/gitops/schemas/")].count("\n") + 1
    before = tree(repo)
    with pytest.raises(ScaffoldError) as info:
        scaffold.new_model("credit-rf", "credit", "random_forest", root=repo)
    assert f".github/CODEOWNERS:{number}: {line!r}: {message}" in str(info.value)
    assert "nothing was written" in str(info.value) and tree(repo) == before


def test_a_rule_below_that_would_take_the_new_models_files_is_refused(repo: Path) -> None:
    (repo / codeowners.PATH).write_text(SHIPPED + "* @acme/everyone\n")
    before = tree(repo)
    with pytest.raises(
        ScaffoldError, match=r"CODEOWNERS:\d+: '\*' comes after the model blocks and would own"
    ):
        scaffold.new_model("credit-rf", "credit", "random_forest", root=repo)
    assert tree(repo) == before


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("/gitops/envs/*/m.yaml", "gitops/envs/production/m.yaml", True),
        ("/gitops/envs/*/m.yaml", "gitops/envs/production/batch/m.yaml", False),
        ("/models/m/", "models/m/model/MLmodel", True),
        ("/models/m/", "other/models/m/x", False),
        ("docs/", "a/docs/x.md", True),
        ("*.md", "a/b/c.md", True),
        ("/a/**/z", "a/b/c/z", True),
    ],
)
def test_patterns_match_as_github_does(pattern: str, path: str, hit: bool) -> None:
    rules = [codeowners.Rule(1, pattern, ("@o",))]
    assert (codeowners.owners_of(rules, path) is not None) is hit
