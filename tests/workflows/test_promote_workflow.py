"""promote.yml under act: merge deploys what changed (DESIGN invariants 2, 3, 4, 5, 9).

The real pipeline trains once per module (`dvc repro` of every shipped model, then a second
param variant of credit-hgb, which retrains credit-hgb only) into a DVC remote that is a tmp
dir; every test then builds its own forge whose committed `.dvc/config` points at that remote (a
gitignored `config.local` would not reach the job: act copies the work tree minus ignored files)
and "merges" a training commit by writing the variant's params.yaml, dvc.lock and git-tracked
outputs. The job pulls the rest, as on GitHub. The artifact store and the MLflow SQLite file are
per-test tmp paths, handed to the job as the repository variables the workflow maps into its env.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from modelops.delivery import manifests
from modelops.runtime.forge import DVC_CONFIG, PROJECT_ROOT, ActResult, Forge, copy_files, tool_env
from tests.gitops_models import add_manifests, remove_manifests

pytestmark = pytest.mark.slow

MODEL = "credit-hgb"
# A second model with manifests, and a third whose manifests the test takes out (still under review).
OTHER = "hpc-forest"
UNSERVED = "concrete-hgb"
WORKFLOW = ".github/workflows/promote.yml"
STAGING = f"gitops/envs/staging/{MODEL}.yaml"
PRODUCTION = f"gitops/envs/production/{MODEL}.yaml"
PR_BRANCH = f"promote/production/{MODEL}"
SOURCE_PR = 7
# Two param variants of the shipped model; fewer boosting rounds than params.yaml keeps training short.
VARIANTS = {"a": 60, "b": 80}
# Both variants also retrain the other two models (the same way), so merging `a` changes every
# model against the committed dvc.lock and `b` after `a` changes credit-hgb alone.
OTHERS = {"n_estimators: 50": "n_estimators: 40", "max_iter: 300": "max_iter: 250"}


@dataclass(frozen=True)
class Variant:
    """A trained model: the files its training commit changes, and its packaged content hash."""

    max_iter: int
    files: dict[str, bytes]
    content_hash: str


@dataclass(frozen=True)
class Trained:
    remote: Path
    variants: dict[str, Variant]


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, trained_repo: Path) -> Trained:
    """Train each variant once with the real pipeline and push its DVC outputs to a tmp remote.

    The DVC cache starts as the session's trained repo's (linked, read-only): the datasets'
    stages are unchanged, so `dvc repro` checks their outputs out instead of running them again.
    """
    from modelops_serving.integrity import tree_hash

    root = tmp_path_factory.mktemp("trained")
    remote, repo = root / "dvc-remote", root / "repo"
    repo.mkdir()
    copy_files(PROJECT_ROOT, repo)
    (repo / ".dvc").mkdir(exist_ok=True)
    cache = [str(trained_repo / ".dvc/cache"), str(repo / ".dvc/cache")]
    subprocess.run(["cp", "-a", "--link", *cache], check=True)
    (repo / ".dvc/config").write_text(DVC_CONFIG.format(remote=remote))
    env = tool_env(f"sqlite:///{root}/mlflow.db")
    _run("git", "init", "-q", "-b", "main", cwd=repo)
    _run("git", "add", "-A", cwd=repo)
    _run("git", "commit", "-q", "-m", "base", cwd=repo)
    base = _run("git", "rev-parse", "HEAD", cwd=repo)
    params = (repo / "params.yaml").read_text()
    assert params.count("max_iter: 200") == 1, "params.yaml changed: update VARIANTS' substitution"
    for old, new in OTHERS.items():
        assert params.count(old) == 1, f"params.yaml changed: update OTHERS ({old})"
        params = params.replace(old, new)
    variants = {}
    for name, max_iter in VARIANTS.items():
        (repo / "params.yaml").write_text(params.replace("max_iter: 200", f"max_iter: {max_iter}"))
        _run("dvc", "repro", cwd=repo, env=env)
        _run("dvc", "push", cwd=repo, env=env)
        _run("git", "add", "-A", cwd=repo)
        _run("git", "commit", "-q", "-m", f"train {name}", cwd=repo)
        changed = _run("git", "diff", "--name-only", base, "HEAD", cwd=repo).splitlines()
        assert "dvc.lock" in changed, changed
        files = {rel: (repo / rel).read_bytes() for rel in changed}
        variants[name] = Variant(max_iter, files, tree_hash(repo / f"models/{MODEL}/model"))
    assert len({v.content_hash for v in variants.values()}) == len(variants)
    return Trained(remote, variants)


@dataclass
class Site:
    """A forge plus the per-test artifact store and MLflow store its jobs use."""

    forge: Forge
    store: Path
    tracking_uri: str

    @property
    def variables(self) -> dict[str, str]:
        return {"MODELOPS_ARTIFACT_STORE": str(self.store), "MLFLOW_TRACKING_URI": self.tracking_uri}


def make_site(tmp_path: Path, trained: Trained, *served: str) -> Site:
    """A forge whose committed DVC remote is the trained one (pushed to origin main), with
    manifests for the `served` models beside credit-hgb's, and none for any other."""
    forge = Forge.from_project(tmp_path / "forge")
    forge.write(".dvc/config", DVC_CONFIG.format(remote=trained.remote))
    for model in served:
        add_manifests(forge.work, model)
    for path in forge.work.glob("gitops/base/*.yaml"):
        if path.stem not in (MODEL, *served, "kustomization"):
            remove_manifests(forge.work, path.stem)
    forge.commit("DVC remote: a local directory")
    forge.push("main")
    return Site(forge, tmp_path / "artifacts", f"sqlite:///{tmp_path}/mlflow.db")


def merge_training(forge: Forge, variant: Variant, pr: int = SOURCE_PR) -> str:
    """Commit a variant's training outputs on main as a merged PR would, push, answer `gh api`."""
    for rel, content in variant.files.items():
        (forge.work / rel).parent.mkdir(parents=True, exist_ok=True)
        (forge.work / rel).write_bytes(content)
    sha = forge.commit(f"Train {MODEL} with max_iter {variant.max_iter} (#{pr})")
    forge.push("main")
    forge.set_api_response(f"repos/{forge.repository}/commits/{sha}/pulls", [{"number": pr}])
    return sha


def ops(text: str) -> dict[str, object]:
    """A patch file's operations, `path` -> `value` (the replace/test ops of the main predictor)."""
    return {op["path"]: op.get("value") for op in yaml.safe_load(text)}


def release(text: str) -> dict[str, str]:
    """What a staging/production patch says it serves: version, hash, URI."""
    values = ops(text)
    env = "/spec/predictors/0/componentSpecs/0/spec/containers/0/env"
    return {
        "version": str(values[f"{env}/1/value"]),
        "hash": str(values[f"{env}/2/value"]),
        "uri": str(values["/spec/predictors/0/graph/modelUri"]),
        "annotated": str(values["/metadata/annotations"]["modelops.dev/version"]),  # type: ignore[index]
    }


def show(forge: Forge, rev: str, path: str) -> str:
    return forge.git("show", f"{rev}:{path}", cwd=forge.origin)


def trailers(forge: Forge, rev: str) -> dict[str, str]:
    text = forge.git("log", "-1", "--format=%(trailers:only,unfold)", rev, cwd=forge.origin)
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def changed_lines(forge: Forge, rev: str) -> list[str]:
    """The +/- lines of a commit's diff (no context, no headers)."""
    diff = forge.git("show", "--format=", "-U0", rev, cwd=forge.origin)
    return [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def alias_version(site: Site, env: str) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=site.tracking_uri, registry_uri=site.tracking_uri)
    return str(client.get_model_version_by_alias(MODEL, env).version)


def gh_pr_commands(result: ActResult) -> list[list[str]]:
    return [c["argv"][:2] for c in result.gh_calls if c["argv"][0] == "pr"]


def test_promotion_commits_never_retrigger_the_workflow() -> None:
    """The loop guard, statically: act does not apply `paths:` filters, GitHub does."""
    workflow = yaml.safe_load((PROJECT_ROOT / WORKFLOW).read_text())
    push = workflow.get("on", workflow.get(True))["push"]
    assert push["branches"] == ["main"]
    for touched in (STAGING, PRODUCTION, "gitops/envs/staging/kustomization.yaml"):
        assert not [p for p in push["paths"] if fnmatch(touched, p)], touched
    assert fnmatch("dvc.lock", push["paths"][0])
    staging = workflow["jobs"]["staging"]
    assert staging["concurrency"] == {"group": "promote-staging", "cancel-in-progress": False}
    assert "Model: " in staging["if"]


def test_merge_promotes_each_changed_model_and_opens_one_production_pr_each(
    tmp_path: Path, trained: Trained
) -> None:
    site = make_site(tmp_path, trained, OTHER)
    forge, variant = site.forge, trained.variants["a"]
    before = forge.origin_sha()
    train_sha = merge_training(forge, variant)

    first = forge.run_workflow(
        WORKFLOW, "push", forge.push_event(before=before), variables=site.variables, timeout=400
    ).check()

    # The first training changed every model: one promotion commit per model that has manifests,
    # in params order, each touching its own patch file's values only; the third is named, skipped.
    assert forge.origin_log()[:2] == [f"promote(staging): {OTHER} v1", f"promote(staging): {MODEL} v1"]
    assert forge.git("rev-parse", "main~2", cwd=forge.origin) == train_sha
    assert (
        f"{UNSERVED}: changed, but gitops/envs/staging/{UNSERVED}.yaml does not exist: skipped" in first.log
    )
    promo, other_promo = forge.origin_sha("main~1"), forge.origin_sha()
    for sha, model in ((promo, MODEL), (other_promo, OTHER)):
        files = forge.git("show", "--format=", "--name-only", sha, cwd=forge.origin).splitlines()
        assert files == [f"gitops/envs/staging/{model}.yaml"]
        lines = changed_lines(forge, sha)
        assert lines and all(re.match(r"^[+-]\s+(value: |modelops\.dev/[\w-]+: )", ln) for ln in lines), lines
        assert sum(ln.startswith("+") for ln in lines) == sum(ln.startswith("-") for ln in lines)
        assert trailers(forge, sha)["Model"] == model
        # Committed as the workflow's bot, not as whoever ran the harness (the forge scrubs GIT_*).
        bot = "github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>"
        assert forge.git("log", "-1", "--format=%an <%ae>|%cn <%ce>", sha, cwd=forge.origin) == f"{bot}|{bot}"

    # The manifest names exactly the new release: URI, hash, version (server env and annotations).
    store_dir = site.store / MODEL / variant.content_hash
    staged = release(show(forge, promo, STAGING))
    assert staged == {
        "version": "v1",
        "hash": variant.content_hash,
        "uri": store_dir.resolve().as_uri() + "/",
        "annotated": "v1",
    }
    expected = {"Model": MODEL, "Version": "v1", "Env": "staging", "Hash": variant.content_hash}
    assert (expected | {"Source-PR": str(SOURCE_PR)}).items() <= trailers(forge, promo).items()
    # Production is untouched on main; everything else in gitops/ too.
    assert forge.git("diff", "--stat", train_sha, promo, "--", "gitops/", cwd=forge.origin).count("|") == 1

    # The artifact is where the URI says, with the content the hash names (invariant 2).
    from modelops_serving.integrity import tree_hash

    assert tree_hash(store_dir) == variant.content_hash
    # Signed beside it when the staging job published it (with the session's key under act: the
    # keyless identity cannot be had here), as staging and production require.
    from modelops.delivery import signing

    accepted = signing.policy_for(manifests.render("staging", PROJECT_ROOT / "gitops"), MODEL)
    signing.check(store_dir.resolve().as_uri() + "/", accepted)
    # The alias followed git (invariant 3).
    assert alias_version(site, "staging") == "1"

    # One production PR per promoted model, each from a branch whose only change is its patch.
    assert gh_pr_commands(first)[-4:] == [["pr", "list"], ["pr", "create"]] * 2
    assert sorted(p["headRefName"] for p in forge.gh_state["prs"]) == [
        PR_BRANCH,
        f"promote/production/{OTHER}",
    ]
    pr = next(p for p in forge.gh_state["prs"] if p["headRefName"] == PR_BRANCH)
    assert (pr["baseRefName"], pr["state"]) == ("main", "OPEN")
    branch_files = forge.git("diff", "--name-only", f"main...{PR_BRANCH}", cwd=forge.origin).splitlines()
    assert branch_files == [PRODUCTION]
    assert release(show(forge, PR_BRANCH, PRODUCTION))["hash"] == variant.content_hash
    assert release(show(forge, PR_BRANCH, PRODUCTION))["version"] == "v1"  # the staging version, reused
    token_calls = [c for c in first.gh_calls if c["argv"][0] == "pr"]
    assert all(c["tokens"]["GH_TOKEN"] for c in token_calls)

    # The promotion commit itself does not promote again (the `Model:` trailer guard).
    forge.git("pull", "-q", "--ff-only", "origin", "main")
    guard_event = forge.push_event(before=train_sha)
    guarded = forge.run_workflow(
        WORKFLOW, "push", guard_event, variables=site.variables, extra_args=["-v"]
    ).check()
    assert "Skipping job 'promote to staging'" in guarded.log
    assert forge.origin_sha() == other_promo and not guarded.calls

    # A re-run on main (workflow_dispatch; the PR job and what it needs): the PRs are updated, not doubled.
    dispatch = {"ref": "refs/heads/main", "inputs": {}, "repository": forge.push_event()["repository"]}
    second = forge.run_workflow(
        WORKFLOW, "workflow_dispatch", dispatch, job="production-pr", variables=site.variables, timeout=400
    ).check()
    # act runs the job's `needs:` too: staging finds nothing new (no commit), the PRs are edited.
    assert "is already deployed to staging" in second.log
    assert forge.origin_sha() == other_promo
    assert gh_pr_commands(second) == [["pr", "list"], ["pr", "edit"]] * 2
    assert len(forge.gh_state["prs"]) == 2

    # A merge that retrains credit-hgb only promotes credit-hgb only: one commit, its PR updated.
    top = forge.origin_sha()
    retrain = merge_training(forge, trained.variants["b"], pr=SOURCE_PR + 1)
    only = forge.run_workflow(
        WORKFLOW, "push", forge.push_event(before=top), variables=site.variables, timeout=400
    ).check()
    assert forge.git("rev-parse", "main~1", cwd=forge.origin) == retrain
    assert forge.origin_log()[0] == f"promote(staging): {MODEL} v2"
    assert trailers(forge, "main")["Hash"] == trained.variants["b"].content_hash
    assert gh_pr_commands(only) == [["pr", "list"], ["pr", "edit"]]  # credit-hgb's PR, nobody else's
    assert OTHER not in " ".join(" ".join(c["argv"]) for c in only.gh_calls)

    # A merge that changes no model's outputs promotes nothing.
    top = forge.origin_sha()
    forge.git("pull", "-q", "--ff-only", "origin", "main")
    forge.write("docs/NOTE.md", "A merge that touches no model.\n")
    forge.commit("docs: a note")
    forge.push("main")
    nothing = forge.run_workflow(
        WORKFLOW, "push", forge.push_event(before=top), variables=site.variables, timeout=400
    ).check()
    assert forge.origin_log()[0] == "docs: a note"
    assert gh_pr_commands(nothing) == []
    runs = (first, guarded, second, only, nothing)
    print(
        "timings: push {:.1f}s, guarded {:.1f}s, re-run {:.1f}s, one model {:.1f}s, none {:.1f}s".format(
            *(r.duration for r in runs)
        )
    )


def test_racing_promotions_both_land_in_order(tmp_path: Path, trained: Trained) -> None:
    """Two act runs at once (act ignores `concurrency:`, so this is the push's rebase-and-retry alone)."""
    site = make_site(tmp_path, trained)
    forge = site.forge
    train_a = merge_training(forge, trained.variants["a"], pr=11)
    # A team's tracking server exists before any job: create the SQLite schema once (two jobs
    # migrating a fresh file at the same moment collide, which no real deployment does).
    import mlflow

    mlflow.MlflowClient(tracking_uri=site.tracking_uri).search_experiments()
    racer = forge.clone("racer")
    train_b = merge_training(racer, trained.variants["b"], pr=12)
    # forge.work is at train_a (the first merge's push), racer.work at train_b (the second's).
    assert forge.head() == train_a and racer.head() == train_b == forge.origin_sha()
    first_push = {
        **racer.push_event(before=forge.head("HEAD~1")),
        "after": train_a,
        "head_commit": {"id": train_a, "message": forge.git("log", "-1", "--format=%B").strip()},
    }
    events = [(forge, first_push), (racer, racer.push_event(before=train_a))]

    def run(pair: tuple[Forge, dict]) -> ActResult:
        who, event = pair
        return who.run_workflow(WORKFLOW, "push", event, job="staging", variables=site.variables, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, events))
    for r in results:
        r.check()

    # Both promotions landed, each its own commit, one after the other on top of train_b.
    top, below = forge.origin_sha(), forge.origin_sha("main~1")
    assert forge.git("rev-parse", "main~2", cwd=forge.origin) == train_b
    landed = [trailers(forge, top), trailers(forge, below)]
    assert {t["Hash"] for t in landed} == {v.content_hash for v in trained.variants.values()}
    assert all(t["Env"] == "staging" for t in landed)
    assert landed[0]["Version"] != landed[1]["Version"]
    for sha in (top, below):
        assert forge.git("show", "--format=", "--name-only", sha, cwd=forge.origin).splitlines() == [STAGING]
    # The final manifest names the later one.
    final = release(show(forge, "main", STAGING))
    assert (final["version"], final["hash"]) == (landed[0]["Version"], landed[0]["Hash"])
    durations = ", ".join(f"{r.duration:.1f}s" for r in results)
    print(f"timings: racing runs {durations}; landed {[t['Version'] for t in reversed(landed)]}")


def test_reverting_a_promotion_restores_gitops_byte_for_byte(tmp_path: Path, trained: Trained) -> None:
    """`git revert` of the latest promotion gives back every gitops/ file exactly (invariant 4)."""
    site = make_site(tmp_path, trained)
    forge = site.forge
    env = tool_env(site.tracking_uri, site.store)

    def snapshot() -> dict[str, bytes]:
        files = (p for p in forge.work.glob("gitops/**/*") if p.is_file())
        return {str(p.relative_to(forge.work)): p.read_bytes() for p in files}

    for name in ("a", "b"):
        merge_training(forge, trained.variants[name])
        _run("dvc", "pull", "-q", cwd=forge.work, env=env)
        before = snapshot()
        _run("modelops", "promote", MODEL, "--env", "staging", "--push", cwd=forge.work, env=env)
    promo = forge.head()
    assert trailers(forge, promo)["Hash"] == trained.variants["b"].content_hash

    forge.git("revert", "--no-edit", promo)

    after = snapshot()
    assert after.keys() == before.keys()
    assert [rel for rel in after if after[rel] != before[rel]] == []
    assert forge.git("diff", f"{promo}~1", "HEAD", "--", "gitops/") == ""
