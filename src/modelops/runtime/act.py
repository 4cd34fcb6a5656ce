"""act and what surrounds it: which stand-in answers for which action, the recorded result of a
run, and stopping a run's whole process tree. The forge (`runtime.forge`) drives it."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
STANDINS = Path(__file__).resolve().parent / "standins"
ACT = shutil.which("act", path=str(VENV_BIN)) or "act"

# Which stand-in answers for which third-party action (any pinned ref of it).
ACTION_STANDINS = {
    "astral-sh/setup-uv": "setup-uv",
    "actions/cache": "cache",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "actions/checkout": "checkout",
    "iterative/setup-cml": "setup-cml",
    "docker/setup-buildx-action": "setup-buildx",
    "docker/login-action": "login",
    "docker/build-push-action": "build-push",
    "actions/attest": "attest",
}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*['\"]?(?P<ref>[^\s'\"#]+)", re.MULTILINE)
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z=>]|[=>])")


class HarnessError(RuntimeError):
    """The harness cannot run this workflow as asked (e.g. an action with no stand-in)."""


def find_uv() -> Path:
    """The machine's real uv binary, which the setup-uv stand-in puts on the job's PATH."""
    found = shutil.which("uv") or str(Path.home() / ".local/bin/uv")
    if not Path(found).exists():
        raise HarnessError("no uv on PATH or in ~/.local/bin")
    return Path(found).resolve()


def action_mappings(files: Iterable[Path]) -> dict[str, Path]:
    """`owner/repo@ref` -> stand-in dir for every third-party `uses:` in `files`.

    Raises HarnessError for an action without a stand-in: act would otherwise try to clone it
    from GitHub, which is unreachable, and fail slowly with a confusing message.
    """
    mappings: dict[str, Path] = {}
    missing: set[str] = set()
    for path in files:
        for ref in USES.findall(path.read_text()):
            if ref.startswith(("./", "docker://")):
                continue
            name, _, version = ref.partition("@")
            repo = "/".join(name.split("/")[:2])
            if repo in ACTION_STANDINS:
                mappings[f"{repo}@{version}"] = STANDINS / ACTION_STANDINS[repo]
            else:
                missing.add(f"{ref} (in {path.name})")
    if missing:
        raise HarnessError(
            f"no stand-in for {sorted(missing)}: add one under {STANDINS} and to ACTION_STANDINS"
        )
    return mappings


@dataclass
class ActResult:
    """One act run: its exit status and output, and what the stand-ins recorded during it.

    `gh_calls`/`calls` hold only this run's calls; `cml_comments` is the forge's comment state
    after the run ({"pr/1": [latest body of each comment]}), so updates across runs show.
    """

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)
    cml_comments: dict[str, list[str]] = field(default_factory=dict)
    artifacts: Path | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def gh_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["tool"] == "gh"]

    @property
    def cml_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["tool"] == "cml"]

    def calls_to(self, tool: str) -> list[list[str]]:
        """The argv of each call to one recorded tool (gh, cml, or a stub such as make)."""
        return [c["argv"] for c in self.calls if c["tool"] == tool]

    def inputs_to(self, action: str) -> list[dict[str, Any]]:
        """What each call of a recording action stand-in (e.g. docker/build-push-action) was asked."""
        return [c.get("inputs", {}) for c in self.calls if c["tool"] == action]

    @property
    def log(self) -> str:
        """act's output without colour codes or carriage-return progress noise."""
        text = ANSI.sub("", self.stdout + ("\n" + self.stderr if self.stderr.strip() else ""))
        return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines())

    def check(self) -> ActResult:
        """Raise with a readable report unless the run succeeded; return self for chaining."""
        if not self.ok:
            raise AssertionError(str(self))
        return self

    def __str__(self) -> str:
        status = "timed out" if self.timed_out else f"exit {self.returncode}"
        calls = "\n".join(f"  {c['tool']} {' '.join(c['argv'])}" for c in self.calls) or "  (none)"
        return (
            f"act {status} after {self.duration:.1f}s: {' '.join(self.command)}\n"
            f"--- recorded calls ---\n{calls}\n--- act output (last 150 lines) ---\n"
            + "\n".join(self.log.splitlines()[-150:])
        )


def wrapper(path: Path, script: Path, state: Path, *args: str) -> None:
    """An executable that runs a stand-in script with this interpreter and the state dir baked in
    (a bare `python3` in a job may be a pyenv shim that rejects the project's .python-version)."""
    quoted = " ".join(f"'{a}'" for a in (sys.executable, str(script), *args))
    path.write_text(f"#!/bin/sh\nMODELOPS_HARNESS_STATE='{state}' exec {quoted} \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def kill_tree(pid: int) -> None:
    """Stop act and every step it started: host-mode steps may run in their own sessions."""
    doomed, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat_file.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                child = int(stat_file.parent.name)
                doomed.append(child)
                frontier.append(child)
    for victim in reversed(doomed):
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
