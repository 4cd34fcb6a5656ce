"""Merge to deploy, revert to roll back: `modelops promote/rollback/history/status` on real git (a bare
origin), real DVC outputs, real MLflow on SQLite and a local artifact store."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import inprocess
from tests.conftest import clone_with_outputs, run
from tests.gitops_models import add_manifests

STAGING = "gitops/envs/staging/credit-hgb.yaml"


@pytest.fixture
def deploy(trained_repo: Path, tmp_path: Path) -> dict:
    """A clone of the trained repo with a bare origin, its DVC outputs, an empty store and registry."""
    origin = tmp_path / "origin.git"
    work, env = clone_with_outputs(trained_repo, tmp_path / "work", origin)
    return {"work": work, "origin": origin, "env": env, "store": tmp_path / "store", "tmp": tmp_path}


def modelops(d: dict, *args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return inprocess.modelops(list(args), cwd or d["work"], d["env"], check=check)


def head(repo: Path) -> str:
    return run(["git", "rev-parse", "HEAD"], repo).stdout.strip()


def gitops_bytes(repo: Path) -> dict[str, bytes]:
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in sorted((repo / "gitops").rglob("*"))
        if p.is_file()
    }


def test_promote_publishes_registers_edits_only_values_and_commits_with_trailers(deploy: dict) -> None:
    work = deploy["work"]
    before = head(work)
    out = modelops(deploy, "promote", "credit-hgb", "--env", "staging", "--source-pr", "12", "--push").stdout
    assert "promote(staging): credit-hgb v1" in out
    changed = run(["git", "diff", "--name-only", before, "HEAD"], work).stdout.split()
    assert changed == [STAGING]
    diff = run(["git", "diff", "-U0", before, "HEAD"], work).stdout
    edited = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert edited and all(ln[1:].lstrip().startswith(("value:", "modelops.dev/")) for ln in edited), edited
    digest = run(
        [
            "python",
            "-c",
            "from modelops_serving.integrity import tree_hash;print(tree_hash('models/credit-hgb/model'))",
        ],
        work,
    ).stdout.strip()
    assert (deploy["store"] / "credit-hgb" / digest / "MLmodel").exists()
    assert (deploy["store"] / "credit-hgb" / f"{digest}.sig").exists()  # signed: staging requires it
    body = run(["git", "log", "-1", "--format=%B"], work).stdout
    for trailer in ("Model: credit-hgb", "Version: v1", "Env: staging", f"Hash: {digest}", "Source-PR: 12"):
        assert trailer in body
    assert run(["git", "--git-dir", str(deploy["origin"]), "rev-parse", "main"], work).stdout.strip() == head(
        work
    )
    status = modelops(deploy, "status").stdout
    assert "| staging | credit-hgb | v1 | v1 | yes |" in status
    assert "| production | credit-hgb | unpromoted | none | yes |" in status


def test_promoting_what_is_deployed_makes_no_commit(deploy: dict) -> None:
    modelops(deploy, "promote", "credit-hgb", "--env", "staging")
    before = head(deploy["work"])
    out = modelops(deploy, "promote", "credit-hgb", "--env", "staging").stdout
    assert "already deployed" in out and head(deploy["work"]) == before


def test_revert_of_a_promotion_restores_gitops_byte_for_byte(deploy: dict) -> None:
    work = deploy["work"]
    before = gitops_bytes(work)
    modelops(deploy, "promote", "credit-hgb", "--env", "staging")
    assert gitops_bytes(work) != before
    run(["git", "revert", "--no-edit", "HEAD"], work)
    assert gitops_bytes(work) == before
    # and through the command, which also says what it reverted
    modelops(deploy, "promote", "credit-hgb", "--env", "production")
    modelops(deploy, "rollback", "--env", "production")
    assert gitops_bytes(work) == before
    assert "Rollback-Of:" in run(["git", "log", "-1", "--format=%B"], work).stdout
    history = modelops(deploy, "history", "--env", "production").stdout
    assert "(rollback of" in history and "| v1 |" in history


def test_dry_run_prints_the_diff_and_writes_nothing(deploy: dict) -> None:
    work = deploy["work"]
    before, files = head(work), gitops_bytes(work)
    out = modelops(deploy, "promote", "credit-hgb", "--env", "production", "--dry-run").stdout
    assert "-  value: unpromoted://credit-hgb/" in out and "+  value: file://" in out
    assert head(work) == before and gitops_bytes(work) == files and not deploy["store"].exists()


def test_canary_shadow_abort_and_finish_keep_traffic_at_100(deploy: dict) -> None:
    work = deploy["work"]
    modelops(deploy, "promote", "credit-hgb", "--env", "staging")
    promoted = gitops_bytes(work)
    # a canary of the same content is still a canary: the manifest, not the artifact, says what runs
    modelops(deploy, "promote", "credit-hgb", "--env", "staging", "--canary", "25")
    modelops(deploy, "promote", "credit-hgb", "--env", "staging", "--shadow")
    rendered = yaml.safe_load_all(run(["kubectl", "kustomize", "gitops/envs/staging"], work).stdout)
    (sdep,) = [
        o for o in rendered if o["kind"] == "SeldonDeployment" and o["metadata"]["name"] == "credit-hgb"
    ]
    traffic = {p["name"]: (p["traffic"], p.get("shadow", False)) for p in sdep["spec"]["predictors"]}
    assert traffic == {"main": (75, False), "canary": (25, False), "shadow": (0, True)}
    modelops(deploy, "promote", "credit-hgb", "--env", "staging", "--abort")
    assert gitops_bytes(work) == promoted
    modelops(deploy, "promote", "credit-hgb", "--env", "staging", "--canary", "10")
    modelops(deploy, "promote", "credit-hgb", "--env", "staging", "--finish")
    assert gitops_bytes(work) == promoted  # the canary (same release) became the whole deployment
    bad = modelops(deploy, "promote", "credit-hgb", "--env", "staging", "--canary", "100", check=False)
    assert bad.returncode != 0 and "between 1 and 99" in bad.stderr


@pytest.mark.parametrize(
    ("args", "setup", "message"),
    [
        (["nope", "--env", "staging"], None, "no model 'nope'"),
        (["credit-hgb", "--env", "qa"], None, "unknown env 'qa'"),
        (["credit-hgb", "--env", "staging"], "unpackaged", "no packaged model"),
        (["credit-hgb", "--env", "staging"], "malformed", "not valid YAML"),
        (["credit-hgb", "--env", "staging"], "dirty", "uncommitted changes"),
        (["credit-hgb", "--env", "staging"], "detached", "HEAD is detached"),
        (["credit-hgb", "--env", "staging"], "unrenderable", "would break gitops/envs/staging"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(deploy: dict, args, setup, message) -> None:
    work = deploy["work"]
    if setup == "unpackaged":
        shutil.rmtree(work / "models/credit-hgb/model")
    elif setup in ("malformed", "dirty"):
        (work / STAGING).write_text("- op: [unclosed\n" if setup == "malformed" else "# edited\n")
        if setup == "malformed":
            run(["git", "commit", "-qam", "break the manifest"], work)
    elif setup == "detached":
        run(["git", "checkout", "-q", "--detach"], work)
    elif setup == "unrenderable":  # the base no longer has the env var the patch's `test` guards
        base = work / "gitops/base/credit-hgb.yaml"
        base.write_text(base.read_text().replace("MODELOPS_EXPECTED_HASH", "MODELOPS_HASH"))
        run(["git", "commit", "-qam", "rename an env var in the base"], work)
    before, files = head(work), gitops_bytes(work)
    proc = modelops(deploy, "promote", *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert head(work) == before and gitops_bytes(work) == files


def test_an_env_that_requires_signatures_refuses_an_unsigned_model_and_changes_nothing(
    deploy: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped envs require the promote workflow's keyless signature, for which the session's
    key stands in here (MODELOPS_LOCAL_SIGNER_KEY): no signer, or another key, is refused before
    anything is published, registered or committed."""
    from modelops.delivery.promote import PromoteError, promote
    from modelops.delivery.signing import generate_key

    work, store = deploy["work"], deploy["store"]
    stranger, _ = generate_key(deploy["tmp"] / "stranger")
    monkeypatch.chdir(work)
    for key, value in deploy["env"].items():
        monkeypatch.setenv(key, value)
    before, files = head(work), gitops_bytes(work)
    for signing_key, message in [
        ("", "unsigned, and no signer is configured"),
        (str(stranger), f"the key {stranger} (MODELOPS_SIGNING_KEY) makes signatures made with the private"),
    ]:
        monkeypatch.setenv("MODELOPS_SIGNING_KEY", signing_key)
        with pytest.raises(PromoteError) as refused:
            promote("credit-hgb", "staging")
        text = str(refused.value)
        assert refused.value.exit_code == 9
        assert "credit-hgb to staging REFUSED: gitops/envs/staging requires signed models" in text
        assert message in text and "standing in for keyless signatures of" in text
        assert text.endswith("Nothing was registered in MLflow and gitops/ is unchanged")
        assert head(work) == before and gitops_bytes(work) == files
        assert not store.exists()  # refused before publishing
        assert not (deploy["tmp"] / "mlflow.db").exists()  # nor registered


def test_two_racing_promotions_both_land_in_order(deploy: dict) -> None:
    """Invariant 5: the loser of a push race rebases (redoing its edit on a conflict) and lands too."""
    work, tmp = deploy["work"], deploy["tmp"]
    other = tmp / "other"
    run(["git", "clone", "-q", str(deploy["origin"]), str(other)], tmp)
    shutil.copytree(work / ".dvc/cache", other / ".dvc/cache")
    params = yaml.safe_load((other / "params.yaml").read_text())
    params["models"]["credit-hgb"]["hyperparams"]["learning_rate"] = 0.08
    (other / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro", "-q"], other)
    run(["git", "add", "-A"], other)
    run(["git", "commit", "-qm", "tune"], other)
    run(["git", "push", "-q", "origin", "HEAD:main"], other)  # the tuned model merges first
    modelops(deploy, "promote", "credit-hgb", "--env", "staging", "--push", cwd=other)
    # `work` still sits on the old base: its push is rejected, it rebases and lands after
    modelops(deploy, "promote", "credit-hgb", "--env", "staging", "--push")
    log = run(["git", "--git-dir", str(deploy["origin"]), "log", "--format=%s", "-3", "main"], work).stdout
    # the tuned model registered first (v1); the racer's own model became v2 and landed on top
    assert log.splitlines() == ["promote(staging): credit-hgb v2", "promote(staging): credit-hgb v1", "tune"]
    final = run(["git", "--git-dir", str(deploy["origin"]), "show", f"main:{STAGING}"], work).stdout
    assert "value: v2" in final and "value: v1" not in final


def test_status_sync_moves_the_alias_to_what_a_merged_pr_deployed(deploy: dict) -> None:
    """A production PR merges by git alone; `status --sync` (sync-aliases.yml) makes MLflow follow."""
    work = deploy["work"]
    modelops(deploy, "promote", "credit-hgb", "--env", "production", "--branch", "promote/prod")
    assert "| production | credit-hgb | unpromoted | none | yes |" in modelops(deploy, "status").stdout
    run(["git", "merge", "-q", "--ff-only", "promote/prod"], work)
    assert "| production | credit-hgb | v1 | none | NO |" in modelops(deploy, "status").stdout
    assert "| production | credit-hgb | v1 | v1 | yes |" in modelops(deploy, "status", "--sync").stdout


def test_every_model_promotes_and_one_rolls_back_alone(deploy: dict) -> None:
    """Each shipped model (manifests copied from credit-hgb's where it has none yet) promotes as its
    own one-file commit; `rollback --model` reverts that model's patch and no other."""
    work = deploy["work"]
    models = list(yaml.safe_load((work / "params.yaml").read_text())["models"])
    assert len(models) >= 3
    if any([add_manifests(work, m) for m in models]):
        run(["git", "add", "-A"], work)
        run(["git", "commit", "-qm", "gitops: manifests for every model"], work)
    before = gitops_bytes(work)
    for model in models:
        start = head(work)
        out = modelops(deploy, "promote", model, "--env", "staging").stdout
        assert f"promote(staging): {model} v1" in out
        changed = run(["git", "diff", "--name-only", start, "HEAD"], work).stdout.split()
        assert changed == [f"gitops/envs/staging/{model}.yaml"]
    status = modelops(deploy, "status").stdout
    for model in models:
        assert f"| staging | {model} | v1 | v1 | yes |" in status
    promoted = gitops_bytes(work)
    first, last = models[0], models[-1]
    # the latest promotion is the last model's; --model picks the first model's instead
    out = modelops(deploy, "rollback", "--env", "staging", "--model", first).stdout
    assert f'Revert "promote(staging): {first} v1"' in out
    after = gitops_bytes(work)
    patch = f"gitops/envs/staging/{first}.yaml"
    assert after[patch] == before[patch]
    assert {k for k in after if after[k] != promoted[k]} == {patch}
    assert f"| staging | {first} | unpromoted | none | yes |" in modelops(deploy, "status").stdout
    # --to names a version; several models have a v1, so it needs --model
    ambiguous = modelops(deploy, "rollback", "--env", "staging", "--to", "1", check=False)
    assert ambiguous.returncode == 9 and "name one" in ambiguous.stderr
    unknown = modelops(deploy, "rollback", "--env", "staging", "--model", "nope", check=False)
    assert unknown.returncode != 0 and "nope" in unknown.stderr and "Traceback" not in unknown.stderr
    assert f"| staging | {last} | v1 | v1 | yes |" in modelops(deploy, "status").stdout
