"""A local GitHub: run the project's real workflows under `act` in host mode, against a local forge.

Used by `modelops demo` (the whole loop on one laptop) and by the workflow tests.

DESIGN.md's embedded defaults, made testable: a bare repository stands in for GitHub's
`origin`, act runs the workflow YAML for real on this machine (`-P ubuntu-latest=-self-hosted`,
no containers, no network), pinned third-party actions are mapped to the small stand-ins in
`standins/` (SHAs read from the workflow files, so a new pin needs no change here), and
`gh`/`cml` are recording stand-ins whose calls and comments the test reads back.

    forge = Forge.from_project(tmp_path)                 # tracked + untracked project files
    forge.write("params.yaml", "...")
    event = forge.open_pr("tune", title="Tune")          # branch, commit, push, PR #1
    result = forge.run_workflow(".github/workflows/model-pr.yml", "pull_request", event)
    result.check()                                       # or assert on result.returncode
    assert result.cml_comments["pr/1"] == [...]          # one comment, its latest body

act copies the clone's working tree (minus .gitignored files) into its own workspace and skips
`actions/checkout`, so what the job sees is whatever the clone has checked out when the run
starts; commits and pushes made by the job reach `forge.origin`, not `forge.work`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modelops.runtime.act import (
    ACT,
    STANDINS,
    VENV_BIN,
    ActResult,
    HarnessError,
    action_mappings,
    find_uv,
    kill_tree,
    wrapper,
)

__all__ = [
    "ACT",
    "DVC_CONFIG",
    "PROJECT_ROOT",
    "VENV_BIN",
    "ActResult",
    "Forge",
    "HarnessError",
    "action_mappings",
    "copy_files",
    "find_uv",
    "tool_env",
]

PROJECT_ROOT = Path(__file__).resolve().parents[3]
# A committed DVC remote (jobs never see `dvc remote add --local`: act copies no ignored files).
DVC_CONFIG = """\
[core]
    autostage = true
    remote = local
    analytics = false
['remote "local"']
    url = {remote}
"""
FAKE_TOKEN = "fake-token"

# Environment that must not leak from the test process into a job (tokens would make secret
# handling untestable; a venv or uv setting would change what `uv sync` does). A runner does not
# set PYTHONDONTWRITEBYTECODE; inherited from a container, it made every process of a job compile
# its fresh venv's imports again (~8 s each for DVC, MLflow and scikit-learn on this machine).
SCRUBBED = (
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "REPO_TOKEN",
    "VIRTUAL_ENV",
    "UV_PROJECT_ENVIRONMENT",
    "PYTHONPATH",
    "PYTHONDONTWRITEBYTECODE",
    # A runner has no git identity in its environment: a job that commits must set its own (the
    # workflows `git config user.name/email`), which these would silently override.
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
)


def tool_env(tracking_uri: str, store: Path | None = None) -> dict[str, str]:
    """Where to run the project's tools beside a forge: this venv first on PATH, no outer venv,
    and the MLflow store (and artifact store) that the forge's jobs get as repository variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env |= {"PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", "MLFLOW_TRACKING_URI": tracking_uri}
    if store is not None:
        env["MODELOPS_ARTIFACT_STORE"] = str(store)
    return env


def project_files(root: Path = PROJECT_ROOT) -> list[str]:
    """A git tree's files as the working tree has them: tracked plus untracked, minus ignored.

    Untracked files are included so a workflow being written (not yet `git add`-ed) is tested.
    """
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({f for f in out.split("\0") if f and (root / f).is_file()})


def copy_files(source: Path, dest: Path) -> None:
    """Copy `source`'s files into `dest` (a git repo: `project_files`; else the whole tree)."""
    if (source / ".git").exists():
        for rel in project_files(source):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, dest / rel)
    else:
        shutil.copytree(source, dest, dirs_exist_ok=True)


class Forge:
    """A local stand-in for GitHub: bare `origin`, a working clone, PR state and stand-in logs.

    Layout under `root`: origin.git (bare), work/ (the clone tests edit and act runs in),
    harness/ (gh.json, cml.json, calls.jsonl, artifacts/, bin/, act's cache and workspaces).
    """

    def __init__(self, root: Path, sources: Iterable[Path] = (), repository: str = "acme/modelops") -> None:
        """Copy each source's files (later ones win) into a fresh repo, commit, push to origin main."""
        self.root = root
        self.repository = repository
        self.origin = root / "origin.git"
        self.work = root / "work"
        self.state = root / "harness"
        for d in (self.work, self.state / "artifacts", self.state / "bin", self.state / "cml-bin"):
            d.mkdir(parents=True, exist_ok=True)
        _git("init", "-q", "--bare", "-b", "main", str(self.origin), cwd=root)
        # The checkout stand-in fetches PR heads and merge SHAs by id.
        _git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=self.origin)
        _git("init", "-q", "-b", "main", cwd=self.work)
        _git("remote", "add", "origin", str(self.origin), cwd=self.work)
        for source in sources:
            copy_files(source, self.work)
        self.commit("initial import", allow_empty=True)
        self.push("main")
        self._save("gh.json", {"repository": repository, "next_number": 1, "prs": [], "api": {}})
        self._write_wrappers()

    @classmethod
    def from_project(cls, root: Path, *extra_sources: Path, **kw: Any) -> Forge:
        """A forge holding this project's working-tree files (then `extra_sources` on top)."""
        return cls(root, (PROJECT_ROOT, *extra_sources), **kw)

    def clone(self, name: str) -> Forge:
        """A second working clone of the same `origin`, with its own act state and stand-in records
        (a copy of the current gh.json), so two act runs can go at once (e.g. racing pushes).

        Its `work` is `root/name` on origin's main; runs through it record to `root/harness-name`.
        """
        other = object.__new__(Forge)
        other.root, other.repository, other.origin = self.root, self.repository, self.origin
        other.work, other.state = self.root / name, self.root / f"harness-{name}"
        for d in (other.state / "artifacts", other.state / "bin", other.state / "cml-bin"):
            d.mkdir(parents=True, exist_ok=True)
        _git("clone", "-q", "-b", "main", str(self.origin), str(other.work), cwd=self.root)
        other._save("gh.json", self.gh_state)
        other._write_wrappers()
        return other

    # --- git -----------------------------------------------------------------------------

    def git(self, *args: str, cwd: Path | None = None) -> str:
        """Run git in the clone (or `cwd`, e.g. the bare origin); return stripped stdout."""
        return _git(*args, cwd=cwd or self.work)

    def write(self, rel: str, text: str) -> Path:
        """Write a file in the clone, creating parent dirs."""
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def commit(self, message: str, *paths: str, allow_empty: bool = False) -> str:
        """Stage `paths` (default: everything) and commit; return the new HEAD sha."""
        self.git("add", "-A", *(["--", *paths] if paths else []))
        self.git("commit", "-q", "-m", message, *(["--allow-empty"] if allow_empty else []))
        return self.head()

    def push(self, branch: str | None = None) -> None:
        """Push the current (or named) branch to origin."""
        self.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}" if branch else "HEAD")

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref)

    def origin_sha(self, ref: str = "main") -> str:
        """What origin has for a branch: where a job's pushes are checked."""
        return self.git("rev-parse", f"refs/heads/{ref}", cwd=self.origin)

    def origin_log(self, ref: str = "main") -> list[str]:
        """Commit subjects on an origin branch, newest first."""
        return self.git("log", "--format=%s", f"refs/heads/{ref}", cwd=self.origin).splitlines()

    def checkout(self, branch: str, create: bool = False) -> None:
        self.git("checkout", "-q", *(["-b"] if create else []), branch)

    # --- events --------------------------------------------------------------------------

    def open_pr(
        self,
        branch: str,
        base: str = "main",
        title: str = "",
        body: str = "",
        fork: bool = False,
        message: str | None = None,
    ) -> dict[str, Any]:
        """Commit what is in the clone on a new branch `branch`, push it, register the PR with the
        gh stand-in and return a `pull_request` event (action "opened") for it.

        The clone is left on `branch`, which is what act will copy as the job's workspace.
        `fork=True` makes `head.repo` a different repository (fork PRs get no secrets).
        """
        if self.git("rev-parse", "--abbrev-ref", "HEAD") != branch:
            self.checkout(branch, create=True)
        self.commit(message or title or f"change on {branch}", allow_empty=True)
        self.push(branch)
        st = self._load("gh.json")
        number = st["next_number"]
        head_repo = f"contributor/{self.repository.split('/')[1]}" if fork else self.repository
        st["prs"].append(
            {
                "number": number,
                "title": title or branch,
                "body": body,
                "state": "OPEN",
                "url": f"https://github.com/{self.repository}/pull/{number}",
                "headRefName": branch,
                "baseRefName": base,
                "headRefOid": self.head(),
                "isCrossRepository": fork,
                "isDraft": False,
                "labels": [],
                "comments": [],
                "author": {"login": "contributor"},
                "mergedAt": None,
            }
        )
        st["next_number"] = number + 1
        self._save("gh.json", st)
        return self.pull_request_event(number, action="opened", head_repo=head_repo)

    def pull_request_event(
        self, number: int, action: str = "synchronize", head_repo: str | None = None
    ) -> dict[str, Any]:
        """The `pull_request` event for PR `number` at the branches' current origin SHAs."""
        pr = next(p for p in self._load("gh.json")["prs"] if p["number"] == number)
        fork = f"contributor/{self.repository.split('/')[1]}"
        head_repo = head_repo or (fork if pr["isCrossRepository"] else self.repository)
        return {
            "action": action,
            "number": number,  # act builds GITHUB_REF (refs/pull/N/merge) from this top-level field
            "pull_request": {
                "number": number,
                "title": pr["title"],
                "body": pr["body"],
                "state": pr["state"].lower(),
                "draft": pr["isDraft"],
                "html_url": pr["url"],
                "head": {
                    "ref": pr["headRefName"],
                    "sha": self.origin_sha(pr["headRefName"]),
                    "repo": {"full_name": head_repo, "fork": head_repo != self.repository},
                },
                "base": {
                    "ref": pr["baseRefName"],
                    "sha": self.origin_sha(pr["baseRefName"]),
                    "repo": {"full_name": self.repository, "fork": False},
                },
                "labels": pr["labels"],
            },
            "repository": self._repository_payload(),
            "sender": {"login": "contributor"},
        }

    def push_event(self, branch: str = "main", before: str | None = None) -> dict[str, Any]:
        """A `push` event for origin's `branch` (e.g. after a merge), `before` its previous sha."""
        after = self.origin_sha(branch)
        return {
            "ref": f"refs/heads/{branch}",
            "before": before or "0" * 40,
            "after": after,
            "head_commit": {"id": after, "message": self.git("log", "-1", "--format=%B", after).strip()},
            "repository": self._repository_payload(),
            "sender": {"login": "contributor"},
        }

    def _repository_payload(self) -> dict[str, Any]:
        owner, name = self.repository.split("/")
        return {
            "full_name": self.repository,
            "name": name,
            "owner": {"login": owner},
            "default_branch": "main",
        }

    # --- running -------------------------------------------------------------------------

    def run_workflow(
        self,
        workflow: str | Path,
        event_name: str,
        event: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
        job: str | None = None,
        stubs: Iterable[str] = (),
        timeout: float = 180,
        extra_args: Iterable[str] = (),
        cml_on_path: bool = False,
    ) -> ActResult:
        """Run one workflow file (path relative to the clone, or absolute) for real under act.

        `secrets` are added to GITHUB_TOKEN=fake-token; `env` goes to act's `--env` (workflow
        env for every step); `stubs` are command names (e.g. "make") replaced on PATH by a
        recorder that exits 0. The run is killed after `timeout` seconds. `cml_on_path` puts the
        recording `cml` on the job's PATH from the start, as on a runner that has CML installed
        (otherwise only the setup-cml stand-in adds it).
        """
        wf = Path(workflow) if Path(workflow).is_absolute() else self.work / workflow
        actions = sorted(self.work.glob(".github/actions/**/action.y*ml"))
        mappings = action_mappings([wf, *actions])
        event_file = self.state / f"event-{event_name}.json"
        event_file.write_text(json.dumps(event or {}, indent=2))
        empty = self.state / "empty.env"
        empty.touch()
        stub_dir = self.state / "stubs"
        shutil.rmtree(stub_dir, ignore_errors=True)
        stub_dir.mkdir()
        for name in stubs:
            wrapper(stub_dir / name, STANDINS / "bin/stub.py", self.state, name)
        cmd = [ACT, event_name, "-W", str(wf), "-e", str(event_file)]
        cmd += [f"-P{label}=-self-hosted" for label in ("ubuntu-latest", "ubuntu-24.04", "ubuntu-22.04")]
        # act's workspaces and action copies live in the forge, not in ~/.cache/act.
        cmd += ["--action-cache-path", str(self.state / "act"), "--no-cache-server"]
        cmd += ["--defaultbranch", "main"]
        # Explicit empty files: act would otherwise read .env/.secrets/.vars from the clone.
        cmd += ["--env-file", str(empty), "--secret-file", str(empty), "--var-file", str(empty)]
        # act derives github.repository from origin's URL, a local path here.
        cmd += ["--env", f"GITHUB_REPOSITORY={self.repository}"]
        cmd += [arg for k, v in (env or {}).items() for arg in ("--env", f"{k}={v}")]
        all_secrets = {"GITHUB_TOKEN": FAKE_TOKEN, **(secrets or {})}
        cmd += [arg for k, v in all_secrets.items() for arg in ("-s", f"{k}={v}")]
        cmd += [arg for k, v in (variables or {}).items() for arg in ("--var", f"{k}={v}")]
        cmd += [arg for ref, d in mappings.items() for arg in ("--local-repository", f"{ref}={d}")]
        cmd += [*(["-j", job] if job else []), *extra_args]
        start_calls = self._call_count()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=self.work,
            env=self._act_env(stub_dir, cml_on_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            out, err = proc.communicate()
            timed_out = True
        calls = [json.loads(line) for line in self._calls_lines()[start_calls:]]
        comments = {t: [c["body"] for c in cs] for t, cs in self._load("cml.json", {}).items()}
        return ActResult(
            cmd, proc.returncode, out, err, time.monotonic() - t0, timed_out, calls, comments,
            self.state / "artifacts",
        )  # fmt: skip

    @property
    def gh_state(self) -> dict[str, Any]:
        """The gh stand-in's state (PRs with their titles, bodies, labels, comments)."""
        return self._load("gh.json")

    def set_api_response(self, endpoint: str, response: Any) -> None:
        """Make `gh api ENDPOINT` (or "METHOD ENDPOINT") answer `response`."""
        st = self._load("gh.json")
        st.setdefault("api", {})[endpoint] = response
        self._save("gh.json", st)

    def _act_env(self, stub_dir: Path, cml_on_path: bool = False) -> dict[str, str]:
        """act passes its own environment to host-mode steps, so this is the job's base env.

        PATH: stubs, then gh, then the usual PATH, then this venv's bin (dvc, modelops) last so
        a job's own venv or a stand-in-provided tool wins. uv is not on it: setup-uv adds it.
        """
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and os.path.abspath(p) != str(VENV_BIN)]
        tools = [
            str(stub_dir),
            str(self.state / "bin"),
            *([str(self.state / "cml-bin")] if cml_on_path else []),
        ]
        env |= {
            "PATH": os.pathsep.join([*tools, *path, str(VENV_BIN)]),
            "MODELOPS_HARNESS_STATE": str(self.state),
            "MODELOPS_HARNESS_PYTHON": sys.executable,
            "MODELOPS_HARNESS_UV": str(find_uv()),
            "MODELOPS_HARNESS_CML_BIN": str(self.state / "cml-bin"),
            "MODELOPS_HARNESS_ORIGIN": str(self.origin),
            "MODELOPS_HARNESS_STANDINS": str(STANDINS),
            # No network: uv uses its cache only and never downloads a Python.
            "UV_OFFLINE": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            # Readable logs: no pager, no colours, no prompts.
            "GIT_PAGER": "cat",
            "PAGER": "cat",
            "GIT_TERMINAL_PROMPT": "0",
            "NO_COLOR": "1",
            "TERM": "dumb",
            # act may drop a failing step's last lines (see drain.sh): failing shells wait for it.
            "BASH_ENV": str(STANDINS / "bin/drain.sh"),
        }
        return env

    def _write_wrappers(self) -> None:
        wrapper(self.state / "bin/gh", STANDINS / "bin/gh.py", self.state)
        wrapper(self.state / "cml-bin/cml", STANDINS / "bin/cml.py", self.state)

    def _calls_lines(self) -> list[str]:
        log = self.state / "calls.jsonl"
        return log.read_text().splitlines() if log.exists() else []

    def _call_count(self) -> int:
        return len(self._calls_lines())

    def _load(self, name: str, default: Any = None) -> Any:
        path = self.state / name
        return json.loads(path.read_text()) if path.exists() else default

    def _save(self, name: str, data: Any) -> None:
        (self.state / name).write_text(json.dumps(data, indent=2))


def _git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"git {' '.join(args)} failed in {cwd}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()
