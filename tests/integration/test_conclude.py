"""`modelops conclude` on real git: a clone of the project whose `origin` is a local bare repo, the
env's patch file holding a main predictor and a canary (or shadow) as `promote` writes them, and
hand-written analyses. The `gh` stand-in of the forge records pull requests (GitHub's API is the one
thing not run for real); everything else is the command as canary.yml runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from modelops.delivery.patches import Extra, Release, render_state
from modelops.runtime.forge import VENV_BIN, Forge
from tests import inprocess

MODEL, ENV = "credit-hgb", "staging"
PATCH = f"gitops/envs/{ENV}/{MODEL}.yaml"
PR_BRANCH, ABORT_BRANCH = f"canary/{ENV}/{MODEL}", f"canary-abort/{ENV}/{MODEL}"
REPORT = "## Canary analysis: credit-hgb in staging\n\n| check | canary | main |\n|---|---|---|\n"


def release(version: str, char: str) -> Release:
    digest = char * 64
    return Release(version, digest, f"file:///store/{MODEL}/{digest}/", "c0ffee", "run-1", "7")


MAIN, CANARY, NEWER = release("v1", "a"), release("v2", "b"), release("v3", "c")


class Site:
    """A forge whose staging patch for credit-hgb deploys `main` plus `extras`, and a place for analyses."""

    def __init__(self, tmp_path: Path) -> None:
        self.forge = Forge.from_project(tmp_path / "forge")
        self.analyses = tmp_path / "analysis"
        self.analyses.mkdir()
        self.before = self.deploy(MAIN, [])

    @property
    def work(self) -> Path:
        return self.forge.work

    def deploy(self, main: Release, extras: list[Extra], message: str = "") -> str:
        """Commit and push the patch file as `promote` would render this state; return its bytes."""
        path = self.work / PATCH
        text = render_state(path, MODEL, main, extras)
        path.write_text(text)
        self.forge.commit(message or f"deploy {main.version} + {[e.release.version for e in extras]}")
        self.forge.push("main")
        return text

    def analysis(
        self, decision: str, canary: Release = CANARY, kind: str = "canary", **changes: object
    ) -> Path:
        """Write DIR/credit-hgb.json and .md as `modelops analyze` would (plus fields conclude ignores)."""
        data = {
            "model": MODEL,
            "env": ENV,
            "decision": decision,
            "canary": {"kind": kind, "version": canary.version, "hash": canary.content_hash},
            "main": {"version": MAIN.version, "hash": MAIN.content_hash},
            "checks": [{"name": "error rate", "canary": 0.0, "main": 0.0}],
            "rule": {"alpha": 0.05, "beta": 0.1},
        } | changes
        path = self.analyses / f"{MODEL}.json"
        path.write_text(json.dumps(data))
        path.with_suffix(".md").write_text(f"{REPORT}| decision | {decision} | |\n")
        return path

    def conclude(self, analysis: Path, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`modelops conclude` in the clone, with the forge's `gh` stand-in and a token on PATH."""
        env = {
            "PATH": os.pathsep.join([str(self.forge.state / "bin"), str(VENV_BIN), os.environ["PATH"]]),
            "GH_TOKEN": "fake-token",
        }
        args = ["conclude", MODEL, "--env", ENV, "--analysis", str(analysis)]
        return inprocess.modelops(args, self.work, env, check=check)

    def gh(self) -> list[list[str]]:
        """The `gh` calls so far (argv)."""
        log = self.forge.state / "calls.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        return [c["argv"] for c in map(json.loads, lines) if c["tool"] == "gh"]

    def origin_refs(self) -> str:
        return self.forge.git("for-each-ref", "--format=%(refname) %(objectname)", cwd=self.forge.origin)

    def show(self, rev: str, path: str = PATCH) -> str:
        return self.forge.git("show", f"{rev}:{path}", cwd=self.forge.origin)

    def message(self, rev: str) -> str:
        return self.forge.git("log", "-1", "--format=%B", rev, cwd=self.forge.origin)

    def trailers(self, rev: str) -> dict[str, str]:
        text = self.forge.git("log", "-1", "--format=%(trailers:only,unfold)", rev, cwd=self.forge.origin)
        return dict(line.split(": ", 1) for line in text.splitlines())


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_promote_opens_one_pr_that_finishes_the_canary_and_a_rerun_reuses_it(site: Site) -> None:
    site.deploy(MAIN, [Extra("canary", CANARY, 10)])
    main = site.forge.origin_sha()
    analysis = site.analysis("promote")

    out = site.conclude(analysis).stdout

    assert f"promote: pull request https://github.com/acme/modelops/pull/1 from {PR_BRANCH}" in out
    # main is untouched; the branch is main plus one commit that touches the patch file only
    assert site.forge.origin_sha() == main
    assert site.forge.git("rev-parse", f"{PR_BRANCH}~1", cwd=site.forge.origin) == main
    files = site.forge.git("show", "--format=", "--name-only", PR_BRANCH, cwd=site.forge.origin)
    assert files == PATCH
    # merging it serves the canary alone: exactly the file `promote` writes for that state
    assert site.show(PR_BRANCH) + "\n" == render_state(site.work / PATCH, MODEL, CANARY, [])
    # the commit holds the analysis and the usual trailers, plus what was judged
    message = site.message(PR_BRANCH)
    assert message.startswith(f"promote({ENV}): {MODEL} v2 (canary finished)\n\n`modelops conclude` acted on")
    assert REPORT.strip() in message  # `#` headings kept: they are not comments here
    assert site.trailers(PR_BRANCH) == {
        "Mode": "finish",
        "Model": MODEL,
        "Version": "v2",
        "Env": ENV,
        "Hash": CANARY.content_hash,
        "Source-PR": "7",
        "Decision": "promote",
        "Analysed-Kind": "canary",
        "Analysed-Version": "v2",
        "Analysed-Hash": CANARY.content_hash,
    }
    [pr] = site.forge.gh_state["prs"]
    assert (pr["headRefName"], pr["baseRefName"], pr["state"]) == (PR_BRANCH, "main", "OPEN")
    assert pr["title"] == f"promote({ENV}): {MODEL} v2 (canary finished)"
    assert pr["body"] == analysis.with_suffix(".md").read_text().strip()
    # the clone is back on main, clean
    assert site.forge.git("rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert site.forge.git("status", "--porcelain", "--untracked-files=no") == ""

    # The same analysis again: the same PR is updated, its branch keeps the very same commit.
    refs = site.origin_refs()
    calls = len(site.gh())
    site.conclude(analysis)
    assert site.origin_refs() == refs
    assert [c[:2] for c in site.gh()[calls:]] == [["pr", "list"], ["pr", "edit"]]
    assert len(site.forge.gh_state["prs"]) == 1

    # A newer analysis of the same canary (more samples): same PR, its commit carries the new report.
    newer = site.analysis("promote")
    newer.with_suffix(".md").write_text(f"{REPORT}| requests | 900 | 900 |\n")
    site.conclude(newer)
    [pr] = site.forge.gh_state["prs"]
    assert "| requests | 900 | 900 |" in pr["body"] and "| requests | 900 | 900 |" in site.message(PR_BRANCH)
    assert site.forge.git("rev-parse", f"{PR_BRANCH}~1", cwd=site.forge.origin) == main

    # Once the PR is merged, the analysis has nothing left to do.
    site.forge.git("fetch", "-q", "origin")
    site.forge.git("merge", "-q", "--ff-only", f"origin/{PR_BRANCH}")
    site.forge.push("main")
    calls = len(site.gh())
    out = site.conclude(newer).stdout
    assert f"promote: {MODEL} in {ENV}: already finished ({PATCH}); nothing done" in out
    assert site.gh()[calls:] == []


def test_abort_commits_straight_to_main_and_a_revert_brings_the_canary_back(site: Site) -> None:
    with_canary = site.deploy(MAIN, [Extra("canary", CANARY, 10)])
    analysis = site.analysis("abort")

    out = site.conclude(analysis).stdout

    top = site.forge.origin_sha()
    assert f"abort: pushed {top[:12]} to origin/main: abort({ENV}): {MODEL} back to v1 only" in out
    assert site.forge.origin_log()[0] == f"abort({ENV}): {MODEL} back to v1 only"
    assert site.forge.git("show", "--format=", "--name-only", top, cwd=site.forge.origin) == PATCH
    # the canary is gone: the file is byte for byte what it was before the canary came
    assert site.show("main") + "\n" == site.before
    message = site.message("main")
    assert REPORT.strip() in message and "`git revert` of this commit undoes it" in message
    trailers = site.trailers("main")
    assert {k: trailers[k] for k in ("Mode", "Model", "Env", "Version", "Decision", "Analysed-Version")} == {
        "Mode": "abort",
        "Model": MODEL,
        "Env": ENV,
        "Version": "v1",  # what serves after the abort, as every promotion commit says
        "Decision": "abort",
        "Analysed-Version": "v2",
    }
    assert site.gh() == [] and site.forge.gh_state["prs"] == []
    assert site.forge.head() == top  # the clone is where origin is

    # Again: the abort already holds, nothing is committed twice.
    out = site.conclude(analysis).stdout
    assert f"abort: {MODEL} in {ENV}: already aborted ({PATCH}); nothing done" in out
    assert site.forge.origin_sha() == top

    # A reviewer disagrees: reverting the bot's commit restores the canary byte for byte.
    site.forge.git("revert", "--no-edit", "HEAD")
    assert (site.work / PATCH).read_text() == with_canary


def test_abort_under_the_pr_policy_opens_a_pr_and_leaves_main(site: Site) -> None:
    params = (site.work / "params.yaml").read_text()
    assert params.count("on_abort: commit") == 1, "params.yaml changed: update this substitution"
    (site.work / "params.yaml").write_text(params.replace("on_abort: commit", "on_abort: pr"))
    site.deploy(MAIN, [Extra("canary", CANARY, 10), Extra("shadow", NEWER, 0)], "on_abort: pr")
    main = site.forge.origin_sha()
    analysis = site.analysis("abort")

    out = site.conclude(analysis).stdout
    assert f"from {ABORT_BRANCH} aborts canary v2" in out
    assert site.forge.origin_sha() == main
    [pr] = site.forge.gh_state["prs"]
    assert pr["headRefName"] == ABORT_BRANCH and pr["title"] == f"abort({ENV}): {MODEL} back to v1 only"
    assert pr["body"].startswith(REPORT.strip())
    assert site.show(ABORT_BRANCH) + "\n" == site.before  # `--abort` drops the canary and the shadow

    refs = site.origin_refs()
    site.conclude(analysis)
    assert site.origin_refs() == refs and len(site.forge.gh_state["prs"]) == 1


def test_wait_does_nothing_and_says_so(site: Site) -> None:
    site.deploy(MAIN, [Extra("canary", CANARY, 10)])
    refs = site.origin_refs()
    out = site.conclude(site.analysis("wait")).stdout
    assert out.strip() == (
        f"wait: {MODEL} in {ENV}: canary v2 ({'b' * 12}) against main v1 ({'a' * 12}) "
        "needs more data; nothing done"
    )
    assert site.origin_refs() == refs and site.gh() == []


def test_a_stale_analysis_changes_nothing_and_names_both_canaries(site: Site) -> None:
    site.deploy(MAIN, [Extra("canary", NEWER, 10)])  # v3 replaced the v2 the analysis judged
    refs, head = site.origin_refs(), site.forge.head()
    for decision in ("promote", "abort"):
        proc = site.conclude(site.analysis(decision), check=False)
        assert proc.returncode == 9, proc.stderr
        assert (
            f"it judged canary v2 ({'b' * 12}) against main v1 ({'a' * 12}), but {PATCH} now deploys "
            f"main v1 ({'a' * 12}) + canary v3 ({'c' * 12}); nothing done"
        ) in proc.stderr
        assert site.origin_refs() == refs and site.forge.head() == head and site.gh() == []
        assert site.forge.git("status", "--porcelain") == ""


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "hpc-forest"}, f"is the analysis of hpc-forest in {ENV}, not of {MODEL} in {ENV}"),
        ({"env": "production"}, f"is the analysis of {MODEL} in production, not of {MODEL} in {ENV}"),
        ({"decision": "finish"}, "decision: Input should be 'promote', 'abort' or 'wait'"),
    ],
)
def test_an_analysis_of_something_else_is_refused(site: Site, changes: dict, message: str) -> None:
    site.deploy(MAIN, [Extra("canary", CANARY, 10)])
    refs = site.origin_refs()
    fields = {"decision": "abort"} | changes
    proc = site.conclude(site.analysis(fields.pop("decision"), **fields), check=False)
    assert proc.returncode == 9 and message in proc.stderr, proc.stderr
    assert site.origin_refs() == refs and site.gh() == []


def test_a_dirty_tree_is_refused_before_anything(site: Site) -> None:
    site.deploy(MAIN, [Extra("canary", CANARY, 10)])
    (site.work / "params.yaml").write_text((site.work / "params.yaml").read_text() + "# edited\n")
    proc = site.conclude(site.analysis("abort"), check=False)
    assert proc.returncode == 9 and "the work tree has uncommitted changes" in proc.stderr
    assert site.forge.origin_log()[0].startswith("deploy v1")


def test_a_shadow_alone_is_finished_but_not_past_a_canary(site: Site) -> None:
    site.deploy(MAIN, [Extra("shadow", CANARY, 0)])
    site.conclude(site.analysis("promote", kind="shadow"))
    assert site.forge.gh_state["prs"][0]["title"] == f"promote({ENV}): {MODEL} v2 (shadow finished)"
    assert site.show(PR_BRANCH) + "\n" == render_state(site.work / PATCH, MODEL, CANARY, [])

    # With a canary beside it, `--finish` would promote the canary: the shadow's analysis refuses.
    site.deploy(MAIN, [Extra("canary", NEWER, 10), Extra("shadow", CANARY, 0)])
    refs = site.origin_refs()
    proc = site.conclude(site.analysis("promote", kind="shadow"), check=False)
    assert proc.returncode == 9
    assert f"has a canary v3 ({'c' * 12}) beside the analysed shadow v2 ({'b' * 12})" in proc.stderr
    assert site.origin_refs() == refs


def test_an_abort_rebases_onto_a_newer_main_and_stops_if_someone_acted_first(site: Site) -> None:
    site.deploy(MAIN, [Extra("canary", CANARY, 10)])
    # Someone pushes an unrelated commit after the checkout: the abort lands on top of it.
    other = site.forge.clone("other")
    other.write("docs/NOTE.md", "unrelated\n")
    other.commit("docs: a note")
    other.push("main")
    site.conclude(site.analysis("abort"))
    assert site.forge.origin_log()[:2] == [f"abort({ENV}): {MODEL} back to v1 only", "docs: a note"]

    # Someone gives the same canary more traffic: the abort conflicts, is redone on top and lands.
    site.deploy(MAIN, [Extra("canary", CANARY, 10)], "canary again")
    other.git("pull", "-q", "--ff-only", "origin", "main")
    (other.work / PATCH).write_text(
        render_state(other.work / PATCH, MODEL, MAIN, [Extra("canary", CANARY, 30)])
    )
    other.commit("canary takes 30%")
    other.push("main")
    proc = site.conclude(site.analysis("abort"))
    assert "redoing the edit on top of origin/main" in proc.stderr
    assert site.forge.origin_log()[:2] == [f"abort({ENV}): {MODEL} back to v1 only", "canary takes 30%"]
    assert site.show("main") + "\n" == site.before

    # Someone aborts by hand first: the rebase finds the abort upstream, nothing is pushed.
    site.deploy(MAIN, [Extra("canary", CANARY, 10)], "canary again")
    before = site.forge.head()
    other.git("pull", "-q", "--ff-only", "origin", "main")
    (other.work / PATCH).write_text(site.before)
    other.commit("abort by hand")
    other.push("main")
    out = site.conclude(site.analysis("abort")).stdout
    assert f"abort: origin/main already aborted canary v2 ({'b' * 12})" in out
    assert "abort by hand); nothing pushed" in out
    assert site.forge.origin_log()[0] == "abort by hand"
    assert site.forge.head() == before  # the clone is as it was before the run

    # Someone finishes it by hand first: the abort conflicts, is redone on top of theirs, where the
    # analysis no longer describes what runs: refused, nothing pushed.
    site.forge.git("pull", "-q", "--ff-only", "origin", "main")
    site.deploy(MAIN, [Extra("canary", CANARY, 10)], "canary once more")
    before = site.forge.head()
    other.git("pull", "-q", "--ff-only", "origin", "main")
    (other.work / PATCH).write_text(render_state(other.work / PATCH, MODEL, CANARY, []))
    other.commit("finish by hand")
    other.push("main")
    proc = site.conclude(site.analysis("abort"), check=False)
    assert proc.returncode == 9, proc.stdout + proc.stderr
    assert f"is stale: it judged canary v2 ({'b' * 12})" in proc.stderr
    assert f"now deploys main v2 ({'b' * 12}); nothing done" in proc.stderr
    assert site.forge.origin_log()[0] == "finish by hand"
    assert site.forge.head() == before
