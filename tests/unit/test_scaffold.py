"""`modelops new model` and `modelops new dataset`: what they write, and that refused input writes nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from modelops import changeset
from modelops.changeset import ScaffoldError
from modelops.cli import app
from modelops.config import load_params
from modelops.delivery import manifests, platforms, scaffold, seldon_template
from modelops.pipeline import profile, suite

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A scratch copy of what `new` reads and writes: params, declarations, gitops."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    for folder in ("data", "gitops"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("raw.csv", "prepared"))
    return root


def yamllint(paths: list[Path]) -> None:
    """The repository's own YAML lint (a pre-commit hook) passes on what was written."""
    files = [str(p) for p in paths if p.suffix == ".yaml"]
    lint = Path(sys.executable).with_name("yamllint")
    proc = subprocess.run(
        [lint, "--strict", "-c", ROOT / ".yamllint.yaml", *files], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes: what "nothing written" is compared with."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def churn_csv(path: Path, rows: int = 300, **columns: object) -> Path:
    """A small CSV of the kind a team brings: id, numbers, a category, a text label."""
    rng = np.random.default_rng(0)
    spend = rng.normal(50, 10, rows).round(2)
    frame = pd.DataFrame(
        {
            "id": np.arange(1, rows + 1),
            "tenure": rng.integers(0, 40, rows),
            "spend": spend,
            "plan": rng.choice(["basic", "no", "pro"], rows),
            "churn": np.where(spend + rng.normal(0, 5, rows) > 50, "stayed", "left"),
        }
    )
    frame.loc[3, "spend"] = np.nan
    for name, values in columns.items():
        frame[name] = values
    frame.to_csv(path, index=False)
    return path


# --- new model -----------------------------------------------------------------------------------


def test_new_model_writes_params_manifests_and_codeowners(repo: Path) -> None:
    before = (repo / "params.yaml").read_text()
    written = scaffold.new_model("credit-rf", "credit", "random_forest", "@acme/risk", root=repo)

    assert {str(p.relative_to(repo)) for p in written} == {
        "params.yaml",
        ".github/CODEOWNERS",
        "gitops/base/credit-rf.yaml",
        "gitops/base/kustomization.yaml",
        "gitops/envs/staging/credit-rf.yaml",
        "gitops/envs/staging/kustomization.yaml",
        "gitops/envs/production/credit-rf.yaml",
        "gitops/envs/production/kustomization.yaml",
        # every model has a KServe base too; the KServe env gets a KServe patch (params platforms:)
        "gitops/base/kserve/credit-rf.yaml",
        "gitops/base/kserve/kustomization.yaml",
        "gitops/envs/staging-kserve/credit-rf.yaml",
        "gitops/envs/staging-kserve/kustomization.yaml",
    }
    after = (repo / "params.yaml").read_text()
    # round trip: every line that was there (comments included) is still there, in order
    assert after.startswith(before.rstrip("\n"))
    model = load_params(repo / "params.yaml").model("credit-rf")
    assert (model.dataset, model.estimator, model.seed, model.threads, model.hyperparams) == (
        "credit",
        "random_forest",
        0,
        2,
        {},
    )
    assert (repo / "gitops/base/credit-rf.yaml").read_text() == seldon_template.BASE.substitute(
        model="credit-rf"
    )
    owners = (repo / ".github/CODEOWNERS").read_text()
    assert owners.startswith(scaffold.CODEOWNERS_HEADER)
    assert "/gitops/envs/*/credit-rf.yaml @acme/risk\n" in owners
    assert "/models/credit-rf/ @acme/risk\n" in owners

    manifests.check_all(repo / "gitops")
    yamllint(written)
    for env, replicas in (("staging", 1), ("production", 3)):
        (obj,) = [o for o in manifests.render(env, repo / "gitops") if o["metadata"]["name"] == "credit-rf"]
        main = obj["spec"]["predictors"][0]
        assert main["replicas"] == replicas  # the env's convention, from its existing patches
        assert main["graph"]["modelUri"] == "unpromoted://credit-rf/"
        assert obj["metadata"]["annotations"]["modelops.dev/model"] == "credit-rf"
    (isvc,) = [
        o for o in manifests.render("staging-kserve", repo / "gitops") if o["metadata"]["name"] == "credit-rf"
    ]
    assert isvc["kind"] == "InferenceService" and isvc["spec"]["predictor"]["minReplicas"] == 1
    assert isvc["metadata"]["annotations"]["modelops.dev/storage-uri"] == "unpromoted://credit-rf/"


def test_codeowners_is_appended_to(repo: Path) -> None:
    (repo / ".github").mkdir()
    (repo / ".github/CODEOWNERS").write_text("* @acme/everyone")  # no final newline
    scaffold.new_model("hpc-et", "hpc", "extra_trees", root=repo)
    lines = (repo / ".github/CODEOWNERS").read_text().splitlines()
    assert lines[0] == "* @acme/everyone"
    assert f"/models/hpc-et/ {scaffold.DEFAULT_OWNER}" in lines


def test_shipped_manifests_are_what_the_scaffold_writes() -> None:
    gitops = ROOT / "gitops"
    for layout in platforms.LAYOUTS.values():
        for name in ("credit-hgb", "hpc-forest", "concrete-hgb"):
            base = layout.base_template.substitute(model=name)
            assert (gitops / layout.base / f"{name}.yaml").read_text() == base
    for env in manifests.envs(gitops):
        layout = platforms.of_env(env, ROOT)
        env_dir = gitops / "envs" / env
        for name in ("hpc-forest", "concrete-hgb"):
            base = layout.base_template.substitute(model=name)
            expected = scaffold.env_patch(name, env, *scaffold.env_sizing(env_dir, base, layout), layout)
            assert (env_dir / f"{name}.yaml").read_text() == expected
        # credit-hgb's hand-written patches say the same as the template (only a comment rule differs)
        made = scaffold.env_patch("credit-hgb", env, *scaffold.env_sizing(env_dir, "", layout), layout)
        assert yaml.safe_load(made) == yaml.safe_load((env_dir / "credit-hgb.yaml").read_text())


def test_an_env_without_models_takes_the_base_sizing(repo: Path) -> None:
    env = repo / "gitops/envs/dev"
    env.mkdir()
    (env / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: modelops-dev\n"
        "resources:\n  - ../../base\n"
        # every env says which build of the server it runs
        f"images:\n  - name: modelops-serving\n    newName: ghcr.io/your-org/modelops-serving\n"
        f"    digest: sha256:{'0' * 64}\n"
    )
    scaffold.write_manifests("hpc-et", root=repo)
    objects = {o["metadata"]["name"]: o for o in manifests.render("dev", repo / "gitops")}
    assert objects["hpc-et"]["spec"]["predictors"][0]["replicas"] == 1
    assert (
        yaml.safe_load((env / "kustomization.yaml").read_text())["patches"][0]["target"]["name"] == "hpc-et"
    )


@pytest.mark.parametrize(
    ("name", "dataset", "estimator", "owner", "message"),
    [
        (
            "credit-rf",
            "churn",
            "random_forest",
            "@a/b",
            r"unknown dataset 'churn' \(known: concrete, credit, hpc\)",
        ),
        ("credit-rf", "credit", "ridge", "@a/b", r"'ridge' does not fit dataset 'credit', a binary task"),
        ("concrete-lr", "concrete", "logistic_regression", "@a/b", r"does not fit dataset 'concrete'"),
        ("credit-rf", "credit", "svm", "@a/b", r"unknown estimator 'svm' \(known: hist_gradient_boosting"),
        (
            "credit-hgb",
            "credit",
            "random_forest",
            "@a/b",
            r"'credit-hgb' is taken: .*models.credit-hgb exists",
        ),
        ("Credit_RF", "credit", "random_forest", "@a/b", r"invalid model name 'Credit_RF'"),
        ("credit-rf", "credit", "random_forest", "risk team", r"--owner 'risk team': expected"),
    ],
)
def test_new_model_refuses_bad_input_and_writes_nothing(
    repo: Path, name: str, dataset: str, estimator: str, owner: str, message: str
) -> None:
    before = tree(repo)
    with pytest.raises(ScaffoldError, match=message):
        scaffold.new_model(name, dataset, estimator, owner, root=repo)
    assert tree(repo) == before


def test_a_manifest_left_behind_takes_the_name(repo: Path) -> None:
    (repo / "gitops/envs/production/credit-rf.yaml").write_text("[]\n")
    before = tree(repo)
    with pytest.raises(ScaffoldError, match=r"'credit-rf' is taken: .*envs/production/credit-rf.yaml"):
        scaffold.new_model("credit-rf", "credit", "random_forest", root=repo)
    assert tree(repo) == before


def test_manifests_that_do_not_render_write_nothing(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a template whose guard no longer matches the base: kustomize itself refuses the patch
    broken = seldon_template.PATCH.template.replace("value: MODELOPS_MODEL_VERSION", "value: WRONG")
    monkeypatch.setattr(seldon_template, "PATCH", type(seldon_template.PATCH)(broken))
    before = tree(repo)
    with pytest.raises(ScaffoldError, match=r"would not render and validate; nothing was written"):
        scaffold.new_model("credit-rf", "credit", "random_forest", root=repo)
    assert tree(repo) == before


def test_write_all_undoes_everything_when_one_write_fails(tmp_path: Path) -> None:
    kept = tmp_path / "kept.txt"
    kept.write_text("old\n")
    (tmp_path / "blocker").write_text("a file where a folder is needed")
    changes = {
        kept: "new\n",
        tmp_path / "fresh" / "deep" / "new.txt": "x",
        tmp_path / "blocker" / "inside.txt": "y",
    }
    before = tree(tmp_path)
    with pytest.raises(OSError):
        changeset.write_all(changes)
    assert tree(tmp_path) == before
    assert not (tmp_path / "fresh").exists()


def test_add_entry_keeps_comments_and_the_gap_before_the_next_section() -> None:
    text = "# head\nitems:\n  a:\n    x: 1  # why x\n\n# next section\nother: 2\n"
    out = changeset.add_entry(text, "items", "b", {"x": 2, "h": {}}, "f.yaml")
    assert (
        out
        == "# head\nitems:\n  a:\n    x: 1  # why x\n  b:\n    x: 2\n    h: {}\n\n# next section\nother: 2\n"
    )
    with pytest.raises(ScaffoldError, match=r"f.yaml: items.a already exists"):
        changeset.add_entry(text, "items", "a", {}, "f.yaml")


# --- new dataset ---------------------------------------------------------------------------------


def test_new_dataset_profiles_a_csv_into_a_declaration_that_loads(repo: Path, tmp_path: Path) -> None:
    csv = churn_csv(tmp_path / "export.csv")
    written = profile.new_dataset("churn", csv, "churn", root=repo)

    assert {str(p.relative_to(repo)) for p in written} == {
        "data/sources/churn.csv",
        "data/churn/dataset.yaml",
        "data/churn/expectations.json",
        "data/churn/.gitignore",
        "params.yaml",
    }
    assert (repo / "data/sources/churn.csv").read_bytes() == csv.read_bytes()
    assert (repo / "data/churn/.gitignore").read_text() == "/raw.csv\n/prepared\n"
    ds = load_params(repo / "params.yaml").dataset("churn")
    assert (ds.source.kind, ds.source.path) == ("file", "data/sources/churn.csv")
    assert (ds.id, ds.target, ds.task, ds.classes) == ("id", "churn", "binary", ["left", "stayed"])
    text = (repo / "data/churn/dataset.yaml").read_text()
    assert "CHECK that 'stayed' is the class" in text  # the reviewer is told which class is positive
    tenure, spend, plan = ds.features["tenure"], ds.features["spend"], ds.features["plan"]
    assert (tenure.kind, tenure.integer, tenure.nullable, tenure.min, tenure.max) == (
        "numeric",
        True,
        False,
        0,
        39,
    )
    assert (spend.kind, spend.integer, spend.nullable) == ("numeric", False, True)
    frame = pd.read_csv(csv)
    assert spend.min <= frame.spend.min() and spend.max >= frame.spend.max()
    assert (plan.kind, plan.values) == ("categorical", ["basic", "no", "pro"])
    assert (repo / "data/churn/expectations.json").read_text() == suite.render(suite.build(ds))
    yamllint(written)


def test_a_csv_already_in_data_sources_is_used_in_place(repo: Path) -> None:
    csv = churn_csv(repo / "data/sources/churn.csv")
    written = profile.new_dataset("churn", csv, "churn", root=repo)
    assert repo / "data/sources/churn.csv" not in written
    assert load_params(repo / "params.yaml").dataset("churn").source.path == "data/sources/churn.csv"
    # another file already there under the new name is not overwritten
    other = churn_csv(repo / "other.csv")
    shutil.copy(other, repo / "data/sources/churn2.csv")
    with pytest.raises(ScaffoldError, match=r"'churn2' is taken: .*data/sources/churn2.csv exists"):
        profile.new_dataset("churn2", other, "churn", root=repo)


def test_new_dataset_infers_regression_and_multiclass(repo: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    csv = churn_csv(tmp_path / "a.csv", value=rng.normal(100, 30, 300).round(3), band=rng.integers(1, 5, 300))
    profile.new_dataset("spend", csv, "value", id_col="id", root=repo)
    profile.new_dataset("bands", csv, "band", root=repo)
    params = load_params(repo / "params.yaml")
    assert params.dataset("spend").task == "regression"
    assert params.dataset("spend").classes is None
    assert (params.dataset("bands").task, params.dataset("bands").classes) == (
        "multiclass",
        ["1", "2", "3", "4"],
    )
    assert list(params.datasets)[-2:] == ["spend", "bands"]


@pytest.mark.parametrize(
    ("low", "high", "bounds"),
    [
        (19, 75, (19, 75)),
        (6.2, 959, (0, 960)),
        (0.123, 0.987, (0.12, 0.99)),
        (-3.5, 2.25, (-3.5, 2.3)),
        (1990, 2024, (1990, 2024)),
        (5, 5, (5, 5)),
    ],
)
def test_bounds_are_rounded_outward(low: float, high: float, bounds: tuple[float, float]) -> None:
    assert profile._outward(low, high) == bounds
    assert profile._outward(3, 7, whole=True) == (3, 7)  # never a fractional step for whole numbers


def _bad(tmp_path: Path, case: str) -> tuple[dict, str]:
    csv = tmp_path / "in.csv"
    if case == "target missing":
        return {"csv": churn_csv(csv), "target": "status"}, (
            r"--target 'status' is not a column \(columns: id, tenure, spend, plan, churn\)"
        )
    if case == "semicolons":
        csv.write_text("id;x;y\n" + "".join(f"{i};1;2\n" for i in range(200)))
        return {"csv": csv, "target": "y"}, r"';'-delimited"
    if case == "empty":
        csv.write_text("")
        return {"csv": csv, "target": "y"}, r"cannot read --from CSV: .*empty"
    if case == "no file":
        return {"csv": tmp_path / "nope.csv", "target": "y"}, r"--from .*nope.csv: no such file"
    if case == "no id":
        frame = pd.read_csv(churn_csv(csv)).rename(columns={"id": "customer"})
        frame.to_csv(csv, index=False)
        return {"csv": csv, "target": "churn"}, r"no column named 'id'; say which column .* with --id"
    if case == "task mismatch":
        return {"csv": churn_csv(csv), "target": "plan", "task": "binary"}, r"--task binary: .* 3 distinct"
    if case == "name taken":
        return {"csv": churn_csv(csv), "target": "churn", "name": "credit"}, r"dataset name 'credit' is taken"
    if case == "invalid name":
        return {"csv": churn_csv(csv), "target": "churn", "name": "Churn!"}, r"invalid dataset name 'Churn!'"
    if case == "true/false column":
        return {
            "csv": churn_csv(csv, promo=[True, False] * 150),
            "target": "churn",
        }, r"\['promo'\] hold True/False"
    if case == "too few rows":
        return {"csv": churn_csv(csv, rows=40), "target": "churn"}, r"40 rows; at least 100"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "target missing",
        "semicolons",
        "empty",
        "no file",
        "no id",
        "task mismatch",
        "name taken",
        "invalid name",
        "too few rows",
        "true/false column",
    ],
)
def test_new_dataset_refuses_bad_input_and_writes_nothing(repo: Path, tmp_path: Path, case: str) -> None:
    kwargs, message = _bad(tmp_path, case)
    name = kwargs.pop("name", "churn")
    before = tree(repo)
    with pytest.raises(ScaffoldError, match=message):
        profile.new_dataset(name, root=repo, **kwargs)
    assert tree(repo) == before


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_new_model_and_its_refusal(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    runner = CliRunner()
    refused = runner.invoke(
        app, ["new", "model", "x-rf", "--dataset", "concrete", "--estimator", "logistic_regression"]
    )
    assert refused.exit_code == ScaffoldError.exit_code
    assert "error: estimator 'logistic_regression' does not fit dataset 'concrete'" in refused.output
    done = runner.invoke(
        app, ["new", "model", "concrete-et", "--dataset", "concrete", "--estimator", "extra_trees"]
    )
    assert done.exit_code == 0, done.output
    assert "wrote gitops/envs/production/concrete-et.yaml" in done.output
    assert load_params(repo / "params.yaml").model("concrete-et").estimator == "extra_trees"
