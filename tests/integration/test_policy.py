"""`modelops policy check` on real git history: each refusal tried, and what a pass reports.

A scratch repository holds the project's params, declarations and gitops/; promotions are written
with the same pure functions `modelops promote` uses (`patches.render_state`), committed on main
(what staging served) or on a pull-request branch (what the check judges against main).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelops.cli import app
from tests.conftest import run
from tests.gitops_models import write_release

ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit-hgb"
SERVED, NEVER, OLD, UNSIGNED = "a" * 64, "b" * 64, "c" * 64, "d" * 64
# The artifact store the releases point into (set by `history`): the shipped envs require signed
# models, and the check looks for each received release's signature beside it there.
STORE: dict[str, Path] = {}


def promote(repo: Path, env: str, digest: str, version: str, canary: int | None = None) -> None:
    write_release(repo, env, MODEL, digest, version, canary, store=STORE["path"].as_uri())


def commit(repo: Path, message: str) -> str:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message], repo)
    return run(["git", "rev-parse", "HEAD"], repo).stdout.strip()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """main: production once served OLD (before the policy), staging then served SERVED."""
    repo = tmp_path_factory.mktemp("policy") / "repo"
    repo.mkdir()
    STORE["path"] = repo.parent / "store"
    (STORE["path"] / MODEL).mkdir(parents=True)
    for digest in (SERVED, NEVER, OLD):  # published and signed; UNSIGNED was published unsigned
        (STORE["path"] / MODEL / f"{digest}.sig").write_text("{}")
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    for folder in ("data", "gitops"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("raw.csv", "prepared"))
    run(["git", "init", "-q", "-b", "main"], repo)
    commit(repo, "initial import")
    promote(repo, "production", OLD, "v1")
    commit(repo, "promote(production): credit-hgb v1")
    promote(repo, "staging", SERVED, "v2")
    commit(repo, "promote(staging): credit-hgb v2")
    return repo


@pytest.fixture
def repo(history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clone of the history, on a pull-request branch, as the working directory."""
    clone = tmp_path / "pr"
    run(["git", "clone", "-q", str(history), str(clone)], tmp_path)
    run(["git", "checkout", "-q", "-b", "pr"], clone)
    monkeypatch.chdir(clone)
    return clone


def check(repo: Path, base: str = "origin/main") -> tuple[int, str]:
    """`modelops policy check --base BASE` in-process; (exit code, stdout + stderr)."""
    result = CliRunner().invoke(app, ["policy", "check", "--base", base])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def unchanged(repo: Path) -> bool:
    """A refusal writes nothing: the work tree is what the last commit says."""
    return run(["git", "status", "--porcelain"], repo).stdout == ""


def test_production_may_receive_what_staging_served(repo: Path) -> None:
    promote(repo, "production", SERVED, "v2")
    sha = commit(repo, "promote(production): credit-hgb v2")
    code, out = check(repo)
    assert code == 0, out
    staging = run(["git", "log", "-1", "--format=%H", "origin/main"], repo).stdout.strip()
    assert (
        f"production receives {MODEL} v2 ({SERVED[:12]}, main): staging served it (commit {staging[:12]}"
        in out
    )
    assert "canary-share: no canary or shadow in any env" in out
    assert "image-digest: production runs ghcr.io/your-org/modelops-serving@sha256:" in out
    signature = STORE["path"] / MODEL / f"{SERVED}.sig"
    assert (
        f"signatures: production receives {MODEL} v2 ({SERVED[:12]}, main): signed ({signature.as_uri()})"
        in out
    )
    assert run(["git", "rev-parse", "HEAD"], repo).stdout.strip() == sha and unchanged(repo)


@pytest.mark.parametrize(
    "also_staging", [False, True], ids=["production-only", "with-its-own-staging-commit"]
)
def test_production_pr_for_a_version_staging_never_had_is_refused(repo: Path, also_staging: bool) -> None:
    if also_staging:  # staging in the same PR has served nothing yet
        promote(repo, "staging", NEVER, "v3")
    promote(repo, "production", NEVER, "v3")
    commit(repo, "promote(production): credit-hgb v3")
    code, out = check(repo)
    assert code == 22, out
    file = f"gitops/envs/production/{MODEL}.yaml"
    assert (
        f"[staging-first] {MODEL} in production ({file}): the main predictor would serve content hash {NEVER}"
        in out
    )
    assert f"which staging never served: no commit of gitops/envs/staging/{MODEL}.yaml on origin/main" in out
    assert f"To fix: promote it to staging first (`modelops promote {MODEL} --env staging`" in out
    assert unchanged(repo)


def test_a_canary_in_production_counts_as_received(repo: Path) -> None:
    promote(repo, "production", NEVER, "v3", canary=10)
    commit(repo, "canary(production): credit-hgb v3 takes 10%")
    code, out = check(repo)
    assert code == 22 and "the canary predictor would serve content hash" in out, out


def test_a_rollback_to_what_production_served_before_passes(repo: Path) -> None:
    promote(repo, "production", SERVED, "v2")
    merged = commit(repo, "promote(production): credit-hgb v2")  # the base the rollback PR targets
    promote(repo, "production", OLD, "v1")  # staging never had v1; production did
    commit(repo, "rollback(production): restore credit-hgb v1")
    code, out = check(repo, base=merged)
    assert code == 0 and f"{MODEL} v1 ({OLD[:12]}, main): production served it before" in out, out


@pytest.mark.parametrize(("share", "code"), [(50, 0), (51, 22)])
def test_canary_share_must_be_within_bounds(repo: Path, share: int, code: int) -> None:
    promote(repo, "staging", SERVED, "v2")  # staging already serves it as main: no hash rule involved
    promote(repo, "staging", NEVER, "v3", canary=share)
    commit(repo, f"canary(staging): credit-hgb v3 takes {share}%")
    got, out = check(repo)
    assert got == code, out
    if code:
        assert (
            f"[canary-share] {MODEL} in staging (gitops/envs/staging/{MODEL}.yaml): the canary takes "
            f"{share}% of the traffic; allowed: 1% to 50% (params.yaml policy.canary_share)" in out
        )
        assert f"`modelops promote {MODEL} --env staging --canary N`" in out and unchanged(repo)
    else:
        assert f"canary-share: {MODEL} in staging: canary v3 takes 50% (allowed: 1% to 50%)" in out


def test_a_tag_instead_of_a_digest_in_production_is_refused(repo: Path) -> None:
    kustomization = repo / "gitops/envs/production/kustomization.yaml"
    text = kustomization.read_text()
    kustomization.write_text(text.replace(f"digest: sha256:{'0' * 64}", 'newTag: "1.4.0"'))
    commit(repo, "production runs a tag")
    code, out = check(repo)
    assert code == 22, out
    refusal = (
        f"[image-digest] {MODEL} in production (gitops/envs/production/kustomization.yaml): "
        f"SeldonDeployment/{MODEL} spec.predictors[0].componentSpecs[0].spec.containers[{MODEL}].image: "
        "'ghcr.io/your-org/modelops-serving:1.4.0' is a tag without a digest"
    )
    assert refusal in out and "To fix: pin it in gitops/envs/production/kustomization.yaml" in out
    assert "CronJob/concrete-hgb-batch" in out  # the batch job's container too
    assert unchanged(repo)


def test_an_unsigned_release_where_signatures_are_required_is_refused(repo: Path) -> None:
    promote(repo, "staging", UNSIGNED, "v3")
    commit(repo, "promote(staging): credit-hgb v3, published without a signer")
    code, out = check(repo)
    assert code == 22, out
    file = f"gitops/envs/staging/{MODEL}.yaml"
    expected = STORE["path"] / MODEL / f"{UNSIGNED}.sig"
    assert f"[signatures] {MODEL} in staging ({file}): staging requires signed models" in out
    assert f"(expected {expected.as_uri()})" in out and "To fix: publish it through `modelops promote`" in out
    assert unchanged(repo)


@pytest.mark.parametrize("case", ["unknown-base", "shallow"])
def test_a_check_that_cannot_judge_says_why(repo: Path, tmp_path: Path, case: str, monkeypatch) -> None:
    if case == "unknown-base":
        code, out = check(repo, base="origin/nope")
        assert code == 23 and "--base origin/nope: no such commit in this clone" in out, out
        return
    shallow = tmp_path / "shallow"
    run(["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow)], tmp_path)
    monkeypatch.chdir(shallow)
    code, out = check(shallow, base="HEAD")
    assert code == 23 and "the clone is shallow" in out and "fetch-depth: 0" in out, out
