"""The act harness itself: stand-ins mapped by pin, pushes reach origin, gh/cml are recorded.

The workflows here are throwaway files written into the temp clone, never into .github of the
project; they use the project's real composite setup action so its pins are exercised too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from modelops.runtime.forge import ACT, PROJECT_ROOT, Forge, HarnessError, find_uv

SETUP_ACTION = PROJECT_ROOT / ".github/actions/setup/action.yml"
CI = PROJECT_ROOT / ".github/workflows/ci.yml"
FAKE_PIN = "0123456789abcdef0123456789abcdef01234567"


def pins(path: Path) -> dict[str, str]:
    """owner/repo -> pinned SHA for each `uses:` in a workflow or action file."""
    return dict(re.findall(r"uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40})", path.read_text()))


CHECKOUT_PIN = pins(CI)["actions/checkout"]

SMOKE = f"""\
name: harness smoke
on: pull_request
permissions: {{}}
jobs:
  smoke:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    permissions:
      contents: write
      pull-requests: write
    steps:
      - uses: actions/checkout@{CHECKOUT_PIN} # v6.0.2
        with:
          persist-credentials: false
      - uses: ./.github/actions/setup
      - name: tools
        run: |
          uv --version
          uv run --frozen modelops --help
          modelops --help > /dev/null
          uv run --frozen python -c \
            "import sys; print('bytecode', 'off' if sys.dont_write_bytecode else 'cached')"
          echo "workspace=$GITHUB_WORKSPACE"
      - uses: iterative/setup-cml@{FAKE_PIN} # v2
      - name: commit and push
        run: |
          git config user.name "github-actions[bot]"
          git config user.email "41898282+github-actions[bot]@users.noreply.github.com"
          git switch -q -c bot/smoke
          echo "from the job" > job.txt
          git add job.txt
          git commit -q -m "commit made by the job"
          git push -q origin bot/smoke
      - name: open a PR
        env:
          GH_TOKEN: ${{{{ secrets.GITHUB_TOKEN }}}}
        run: |
          echo "made by the smoke workflow" > pr-body.md
          gh pr create --head bot/smoke --base main --title "Smoke PR" --body-file pr-body.md
      - name: comment twice on the triggering PR
        env:
          REPO_TOKEN: ${{{{ secrets.GITHUB_TOKEN }}}}
        run: |
          echo "first report" > report.md
          cml comment update report.md
          echo "second report" > report.md
          cml comment update report.md
      - uses: actions/upload-artifact@{FAKE_PIN} # v5
        with:
          name: report
          path: report.md
"""


@pytest.mark.slow
def test_smoke_workflow_runs_with_standins(forge: Forge) -> None:
    forge.write(".github/workflows/smoke.yml", SMOKE)
    event = forge.open_pr("feature", title="Feature")

    result = forge.run_workflow(".github/workflows/smoke.yml", "pull_request", event).check()

    # The real setup action's pins, and the throwaway ones, resolved to the stand-ins.
    for repo, sha in [*pins(SETUP_ACTION).items(), ("iterative/setup-cml", FAKE_PIN)]:
        assert f"matched https://github.com/{repo} with ref {sha}" in result.log
    assert re.search(r"\| uv \d+\.\d+", result.log)
    assert "Usage: modelops" in result.log
    # A runner caches bytecode whatever the host's PYTHONDONTWRITEBYTECODE says (else every
    # process of a job compiles its fresh venv's imports again).
    assert "bytecode cached" in result.log
    # The job's commit reached the bare origin (not the clone act copied).
    assert forge.origin_log("bot/smoke")[0] == "commit made by the job"
    # gh was called with a token from the workflow's env, and opened PR #2.
    [create] = [c for c in result.gh_calls if c["argv"][:2] == ["pr", "create"]]
    assert create["tokens"]["GH_TOKEN"] and create["body"] == "made by the smoke workflow\n"
    prs = [(p["number"], p["headRefName"]) for p in forge.gh_state["prs"]]
    assert prs == [(1, "feature"), (2, "bot/smoke")]
    # Two `cml comment update`s on PR #1: one comment, holding the second body.
    assert len(result.cml_calls) == 2
    assert result.cml_comments == {"pr/1": ["second report\n"]}
    assert (result.artifacts / "report" / "report.md").read_text() == "second report\n"
    # Tokens never leak from the test process: only steps that map the secret see one.
    assert not any(c["tokens"]["GITHUB_TOKEN"] for c in result.calls)


VENV = f"""\
name: venv
on: push
permissions: {{}}
jobs:
  venv:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    permissions:
      contents: read
    steps:
      - uses: actions/checkout@{CHECKOUT_PIN} # v6.0.2
        with:
          persist-credentials: false
      - uses: ./.github/actions/setup
      - name: which project the venv runs
        run: |
          echo "workspace=$GITHUB_WORKSPACE"
          .venv/bin/python -c "import modelops; print('imports', modelops.__file__)"
          .venv/bin/dvc version > /dev/null && echo "launchers work"
"""


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root`: (size, mtime in ns), by relative path."""
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in root.rglob("*")
        if not p.is_dir() or p.is_symlink()
    }


@pytest.mark.slow
def test_a_job_venv_is_saved_once_and_restored_into_another_forges_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setup action caches .venv (relocatable) by uv.lock; the stand-in shares it across forges."""
    monkeypatch.setenv("MODELOPS_HARNESS_VENV_CACHE", str(tmp_path / "venvs"))
    logs, saved = [], {}
    for name in ("first", "second"):
        if name == "second":  # what the first job saved, file by file
            saved = snapshot(tmp_path / "venvs")
        forge = Forge.from_project(tmp_path / name)
        forge.write(".github/workflows/venv.yml", VENV)
        forge.commit("venv workflow", ".github/workflows/venv.yml")
        forge.push()
        log = forge.run_workflow(".github/workflows/venv.yml", "push", forge.push_event()).check().log
        workspace = re.search(r"workspace=(\S+)", log).group(1)
        assert f"imports {workspace}/src/modelops/__init__.py" in log  # its own checkout, not the saver's
        assert "launchers work" in log
        logs.append((log, workspace))
    (first, saver), (second, _) = logs
    assert "cache stand-in: miss for key venv-Linux-" in first and "cache stand-in: saved venv-" in first
    assert "cache stand-in: hit venv-Linux-" in second and "already saved" in second
    [entry] = (tmp_path / "venvs").iterdir()
    pth = entry / ".venv/lib/python3.12/site-packages/_editable_impl_modelops.pth"
    assert pth.read_text().strip() == f"{saver}/src"  # the second job replaced files, not wrote in them
    # The restore symlinks package folders into the entry: the second job wrote nothing through them.
    assert snapshot(tmp_path / "venvs") == saved
    # The saved venv holds the bytecode of modules the saving job never imported (it imports neither
    # MLflow nor scikit-learn), so no later job compiles them again.
    site = entry / ".venv/lib/python3.12/site-packages"
    for package in ("mlflow", "sklearn/ensemble", "great_expectations"):
        assert (site / package / "__pycache__/__init__.cpython-312.pyc").is_file(), package


OPEN_OR_UPDATE = f"""\
name: open or update
on: push
permissions: {{}}
jobs:
  pr:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    permissions:
      contents: read
      pull-requests: write
    steps:
      - uses: actions/checkout@{CHECKOUT_PIN} # v6.0.2
        with:
          persist-credentials: false
          ref: main
          path: base
      - name: open the promotion PR, or update the open one
        env:
          GH_TOKEN: ${{{{ secrets.GITHUB_TOKEN }}}}
        run: |
          test -f base/README.md
          if ! env -u GH_TOKEN gh pr list > /dev/null 2>&1; then echo "no token, no gh"; fi
          number="$(gh pr list --head promote --json number --jq '.[0].number // empty')"
          if [ -n "$number" ]; then
            gh pr edit "$number" --body "updated at $GITHUB_SHA"
          else
            gh pr create --head promote --title Promote --body "opened at $GITHUB_SHA"
          fi
"""


@pytest.mark.slow
def test_checkout_standin_and_gh_open_or_update(forge: Forge) -> None:
    forge.write(".github/workflows/promote-pr.yml", OPEN_OR_UPDATE)
    forge.commit("add workflow")
    forge.push("main")

    first = forge.run_workflow(".github/workflows/promote-pr.yml", "push", forge.push_event()).check()
    second = forge.run_workflow(".github/workflows/promote-pr.yml", "push", forge.push_event()).check()

    # `ref:` + `path:` make act run the action, i.e. the checkout stand-in, not skip it.
    assert "checkout stand-in: main from" in first.log
    assert "no token, no gh" in first.log
    assert [c["argv"][:2] for c in first.gh_calls][-1] == ["pr", "create"]
    assert [c["argv"][:2] for c in second.gh_calls][-1] == ["pr", "edit"]
    [pr] = forge.gh_state["prs"]
    assert pr["body"] == f"updated at {forge.origin_sha('main')}"


@pytest.mark.slow
def test_real_ci_workflow_wiring(forge: Forge) -> None:
    """ci.yml for real, with `make` stubbed: its full run is the whole test suite.

    act's --dryrun is no substitute in host mode: it skips `uses:` steps but still executes
    `run:` steps, so it would start `make test` anyway (and without uv on PATH).
    """
    listed = subprocess.run(
        [ACT, "-l", "-W", str(forge.work / ".github/workflows/ci.yml")],
        cwd=forge.work,
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0 and "make test" in listed.stdout, listed.stderr

    event = forge.open_pr("ci-check", title="CI check")
    result = forge.run_workflow(".github/workflows/ci.yml", "pull_request", event, stubs=["make"]).check()

    for repo, sha in pins(SETUP_ACTION).items():
        assert f"matched https://github.com/{repo} with ref {sha}" in result.log
    assert result.calls_to("make") == [["test", f"UV={find_uv()}"]]


def test_unpinned_unknown_action_is_refused(forge: Forge) -> None:
    workflow = yaml.safe_dump(
        {
            "on": "push",
            "jobs": {"j": {"runs-on": "ubuntu-latest", "steps": [{"uses": f"someone/unknown@{FAKE_PIN}"}]}},
        }
    )
    forge.write(".github/workflows/unknown.yml", workflow)
    with pytest.raises(HarnessError, match=r"no stand-in for .*someone/unknown"):
        forge.run_workflow(".github/workflows/unknown.yml", "push", forge.push_event())


CACHE_PIN = pins(SETUP_ACTION)["actions/cache"]
CACHED = f"""\
name: cache
on: push
permissions: {{}}
jobs:
  c:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    steps:
      - uses: actions/checkout@{CHECKOUT_PIN} # v6.0.2
        with:
          persist-credentials: false
      - uses: actions/cache@{CACHE_PIN} # v5.0.1
        id: cache
        with:
          path: |
            build
            ~/outside-the-workspace
          key: build-${{{{ hashFiles('inputs.txt') }}}}
          restore-keys: |
            build-
      - name: build
        env:
          HIT: ${{{{ steps.cache.outputs.cache-hit }}}}
        run: |
          echo "hit=$HIT restored=$(cat build/out.txt 2>/dev/null || echo none)"
          mkdir -p build && cat inputs.txt > build/out.txt
"""


@pytest.mark.slow
def test_cache_standin_restores_by_key_then_by_prefix_and_saves_after_the_job(forge: Forge) -> None:
    forge.write(".github/workflows/cache.yml", CACHED)
    forge.write("inputs.txt", "one\n")
    forge.commit("cache workflow")

    def run() -> str:
        return forge.run_workflow(".github/workflows/cache.yml", "push", forge.push_event()).check().log

    assert "hit=false restored=none" in run()  # a miss; the post step saves build/
    assert "hit=true restored=one" in run()  # the same key: an exact hit
    forge.write("inputs.txt", "two\n")
    forge.commit("new inputs")
    assert "hit=false restored=one" in run()  # a new key: the restore-keys prefix finds the old entry
    assert "hit=true restored=two" in run()  # ... and the new key was saved after that job
    entries = sorted(p.name for p in (forge.state / "cache").iterdir())
    assert len(entries) == 2 and all(e.startswith("build-") for e in entries)
    # Outside the workspace is the machine's own (the runner's uv cache): never copied in or out.
    assert not any((forge.state / "cache" / e / "outside-the-workspace").exists() for e in entries)


FAST_FAILURES = """\
name: fail-fast-steps
on: push
permissions: {}
jobs:
  f:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    strategy:
      fail-fast: false
      matrix:
        n: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]
    steps:
      - name: refuse
        env:
          N: ${{ matrix.n }}
        run: |
          echo "::error::refused input $N"
          exit 3
"""


@pytest.mark.slow
def test_a_fast_failing_steps_last_lines_reach_the_log(forge: Forge) -> None:
    """act's host mode can close a failing step's pty before reading it; drain.sh lets it read.

    Without it about one fast failure in ten lost its message, so 24 jobs all keeping theirs would
    happen by luck about one run in ten.
    """
    forge.write(".github/workflows/fail.yml", FAST_FAILURES)
    forge.commit("fast failures")
    result = forge.run_workflow(".github/workflows/fail.yml", "push", forge.push_event())
    assert result.returncode != 0
    missing = [n for n in range(1, 25) if f"refused input {n}\n" not in result.log]
    assert missing == []
    assert result.log.count("exit status 3") == 24  # the step's own status, not the trap's
