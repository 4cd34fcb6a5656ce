"""Static checks on GitHub workflows and composite actions (DESIGN invariant 8).

Runs the same linters as the pre-commit hooks (actionlint, zizmor --offline,
check-jsonschema) and asserts the structural rules the linters do not enforce on
their own: SHA pins with a version comment, job timeouts, read-only top-level
permissions, checkout without persisted credentials, no expressions in scripts.
Every `.github/workflows/*.yml` is discovered, so new workflows are covered too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
GITHUB_DIR = REPO_ROOT / ".github"
WORKFLOWS = sorted([*GITHUB_DIR.glob("workflows/*.yml"), *GITHUB_DIR.glob("workflows/*.yaml")])
ACTIONS = sorted([*GITHUB_DIR.glob("actions/**/action.yml"), *GITHUB_DIR.glob("actions/**/action.yaml")])

SHA_PIN = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")
DOCKER_DIGEST_PIN = re.compile(r"^docker://[^@\s]+@sha256:[0-9a-f]{64}$")
# `uses: owner/repo@<40 hex> # v1.2.3` (the comment is what Dependabot/Renovate update).
PINNED_LINE = re.compile(r"uses:\s*['\"]?[^@\s'\"]+@[0-9a-f]{40}['\"]?\s+#\s*v\d+(\.\d+)*\b")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*['\"]?(?P<ref>[^\s'\"#]+)")


def _rel(path: Path) -> str:
    """Path relative to the repository root, for messages and tool arguments."""
    return path.relative_to(REPO_ROOT).as_posix()


def _ids(paths: list[Path]) -> list[str]:
    """Readable parametrize ids."""
    return [_rel(p) for p in paths]


def _tool(name: str) -> str:
    """Find a dev tool on PATH, else next to the running interpreter (the venv)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} not found on PATH or in {Path(sys.executable).parent}; run `uv sync`")
    return found


def _run(args: list[str]) -> None:
    """Run a linter from the repository root and fail with its output on a non-zero exit."""
    proc = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        pytest.fail(
            f"`{' '.join(args)}` exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )


def _load(path: Path) -> dict[str, Any]:
    """Parse a workflow or action file into a mapping."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{_rel(path)}: top level is not a mapping"
    return data


def _jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `jobs:` mapping of a workflow."""
    jobs = workflow.get("jobs")
    assert isinstance(jobs, dict) and jobs, "workflow has no jobs"
    return jobs


def _steps(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every step of a workflow (all jobs) or of a composite action, with a label."""
    if "jobs" in doc:
        for job_id, job in _jobs(doc).items():
            for i, step in enumerate(job.get("steps") or []):
                yield f"jobs.{job_id}.steps[{i}]", step
    else:
        for i, step in enumerate((doc.get("runs") or {}).get("steps") or []):
            yield f"runs.steps[{i}]", step


def _uses(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every `uses:` reference: steps, plus jobs that call reusable workflows."""
    for label, step in _steps(doc):
        if "uses" in step:
            yield label, str(step["uses"])
    for job_id, job in (doc.get("jobs") or {}).items():
        if "uses" in job:
            yield f"jobs.{job_id}", str(job["uses"])


def test_there_is_a_workflow_to_check() -> None:
    assert WORKFLOWS, "no .github/workflows/*.yml found"
    assert ACTIONS, "no .github/actions/*/action.yml found"


# --- the linters, as pre-commit runs them -------------------------------------


def test_actionlint() -> None:
    _run([_tool("actionlint"), "-shellcheck=", "-pyflakes=", *_ids(WORKFLOWS)])


def test_zizmor_offline() -> None:
    _run(
        [
            _tool("zizmor"),
            "--offline",
            "--strict-collection",
            "--no-progress",
            "--color=never",
            ".github/",
        ]
    )


def test_workflows_match_github_schema() -> None:
    _run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *_ids(WORKFLOWS)])


def test_actions_match_github_schema() -> None:
    _run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", *_ids(ACTIONS)])


# --- structural rules ---------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=_ids(WORKFLOWS + ACTIONS))
def test_remote_uses_are_pinned_to_a_commit_sha(path: Path) -> None:
    doc = _load(path)
    unpinned = [
        f"{label}: {ref}"
        for label, ref in _uses(doc)
        if not ref.startswith("./") and not SHA_PIN.match(ref) and not DOCKER_DIGEST_PIN.match(ref)
    ]
    assert not unpinned, f"{_rel(path)}: pin these to a full 40-hex commit SHA:\n" + "\n".join(unpinned)


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=_ids(WORKFLOWS + ACTIONS))
def test_sha_pins_carry_a_version_comment(path: Path) -> None:
    missing = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = USES_LINE.match(line)
        if match and SHA_PIN.match(match["ref"]) and not PINNED_LINE.search(line):
            missing.append(f"line {lineno}: {line.strip()}")
    assert not missing, (
        f"{_rel(path)}: add the release tag as a comment, e.g. `@<sha> # v4.2.2`:\n" + "\n".join(missing)
    )


@pytest.mark.parametrize("path", WORKFLOWS, ids=_ids(WORKFLOWS))
def test_every_job_has_a_timeout(path: Path) -> None:
    # A job that calls a reusable workflow cannot set timeout-minutes; its jobs do.
    missing = [
        job_id
        for job_id, job in _jobs(_load(path)).items()
        if "uses" not in job and "timeout-minutes" not in job
    ]
    assert not missing, f"{_rel(path)}: jobs without timeout-minutes: {missing}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=_ids(WORKFLOWS))
def test_top_level_permissions_grant_no_write(path: Path) -> None:
    workflow = _load(path)
    assert "permissions" in workflow, (
        f"{_rel(path)}: declare top-level `permissions: {{}}` (or `contents: read`) and grant more per job"
    )
    permissions = workflow["permissions"]
    assert isinstance(permissions, dict), (
        f"{_rel(path)}: top-level permissions must be a mapping, not {permissions!r}"
    )
    writes = sorted(scope for scope, level in permissions.items() if level == "write")
    assert not writes, f"{_rel(path)}: top-level permissions grant write to {writes}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=_ids(WORKFLOWS))
def test_job_permissions_are_never_write_all(path: Path) -> None:
    broad = [
        job_id
        for job_id, job in _jobs(_load(path)).items()
        if isinstance(job.get("permissions"), str) and job["permissions"] != "read-all"
    ]
    assert not broad, f"{_rel(path)}: jobs with write-all permissions: {broad}"


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=_ids(WORKFLOWS + ACTIONS))
def test_checkout_does_not_persist_credentials(path: Path) -> None:
    persisted = [
        label
        for label, step in _steps(_load(path))
        if str(step.get("uses", "")).startswith("actions/checkout@")
        and str((step.get("with") or {}).get("persist-credentials", "true")).lower() != "false"
    ]
    assert not persisted, f"{_rel(path)}: set `with: persist-credentials: false` on checkout: {persisted}"


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=_ids(WORKFLOWS + ACTIONS))
def test_run_scripts_take_no_expressions(path: Path) -> None:
    # `${{ }}` in a script is template injection waiting to happen; pass values via env:.
    interpolated = [label for label, step in _steps(_load(path)) if "${{" in str(step.get("run", ""))]
    assert not interpolated, f"{_rel(path)}: move `${{{{ }}}}` out of run: into env: in {interpolated}"


def test_ci_runs_on_prs_and_main_and_cancels_superseded_runs() -> None:
    ci = _load(GITHUB_DIR / "workflows" / "ci.yml")
    # PyYAML (YAML 1.1) reads the bare key `on` as the boolean True.
    triggers = ci.get("on", ci.get(True))
    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"]
    concurrency = ci["concurrency"]
    assert "github.ref" in concurrency["group"]
    assert concurrency["cancel-in-progress"]
    runs = [str(step.get("run", "")).strip() for _, step in _steps(ci)]
    assert any(run.startswith("make test") for run in runs), "CI must run the README's `make test`"


def test_canary_grants_write_and_tokens_only_to_the_step_that_concludes() -> None:
    canary = _load(GITHUB_DIR / "workflows" / "canary.yml")
    triggers = canary.get("on", canary.get(True))
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    inputs = triggers["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"env", "model"} and inputs["model"]["required"] is False
    assert inputs["env"]["type"] == "choice"
    jobs = _jobs(canary)
    writes = {
        job_id: sorted(scope for scope, level in (job.get("permissions") or {}).items() if level == "write")
        for job_id, job in jobs.items()
    }
    assert writes == {"analyze": [], "conclude": ["contents", "pull-requests"]}
    assert jobs["conclude"]["needs"] == "analyze"
    # One model's failed analysis must not keep another's abort from landing.
    assert "!cancelled()" in jobs["conclude"]["if"]
    # The push token reaches one step; the Prometheus URL (maybe with credentials) another job's.
    holders: dict[str, list[str]] = {"token": [], "prometheus": []}
    for label, step in _steps(canary):
        values = " ".join(str(v) for v in (step.get("env") or {}).values())
        if "secrets.GITHUB_TOKEN" in values or "MODELOPS_PR_TOKEN" in values:
            holders["token"].append(f"{label.split('.')[1]}: {step.get('name')}")
        if "MODELOPS_PROMETHEUS_URL" in values:
            holders["prometheus"].append(f"{label.split('.')[1]}: {step.get('name')}")
    assert holders == {
        "token": ["conclude: Conclude each analysis"],
        "prometheus": ["analyze: Analyse every canary and shadow"],
    }
    # Queued, never cancelled: a cancelled run could leave a pushed branch without its PR.
    assert canary["concurrency"] == {"group": "canary", "cancel-in-progress": False}
    scripts = {job_id: " ".join(str(s.get("run", "")) for s in job["steps"]) for job_id, job in jobs.items()}
    assert "modelops canaries" in scripts["analyze"] and "modelops analyze" in scripts["analyze"]
    assert "modelops conclude" in scripts["conclude"] and "modelops analyze" not in scripts["conclude"]
    # analyze's answers are exit codes: 0 promote, 20 abort, 21 wait; any other is an error.
    assert all(f"{code})" in scripts["analyze"] for code in (0, 20, 21)) and "*)" in scripts["analyze"]


def test_only_the_jobs_that_sign_can_mint_an_oidc_token() -> None:
    """Keyless signing needs `id-token: write`: promote.yml's staging job, which publishes and signs
    models, and image.yml's build job, which attests the image's provenance; no other job (a token
    there could sign anything as this repository's workflow)."""
    minting = [
        (path.name, job_id)
        for path in WORKFLOWS
        for job_id, job in _jobs(_load(path)).items()
        if (job.get("permissions") or {}).get("id-token") == "write"
    ]
    assert sorted(minting) == [("image.yml", "build"), ("promote.yml", "staging")]
    signing = [label for label, step in _steps(_load(GITHUB_DIR / "workflows" / "promote.yml"))
               if "MODELOPS_SIGNING_KEYLESS" in (step.get("env") or {})]  # fmt: skip
    assert len(signing) == 1 and signing[0].startswith("jobs.staging."), signing


def test_make_test_runs_the_pre_commit_hooks() -> None:
    # CI relies on `make test` for the hooks; losing them there would silently drop checks.
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^test:.*\n((?:\t.*\n?)+)", makefile, flags=re.MULTILINE)
    assert recipe, "Makefile has no `test:` target"
    assert "pre-commit run --all-files" in recipe[1]
