"""Shared by the recording stand-ins: where the harness keeps state, and how a call is logged.

The harness's wrapper scripts set MODELOPS_HARNESS_STATE; every call is appended as one JSON
line to `<state>/calls.jsonl` so a test can assert on exactly what a workflow ran. Tokens are
recorded as present/absent, never by value.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

STATE = Path(os.environ["MODELOPS_HARNESS_STATE"])
TOKEN_VARS = ("GITHUB_TOKEN", "GH_TOKEN", "REPO_TOKEN")
CONTEXT_VARS = ("GITHUB_REPOSITORY", "GITHUB_EVENT_NAME", "GITHUB_REF", "GITHUB_SHA", "GITHUB_WORKFLOW")


def record(tool: str, argv: list[str], **extra: Any) -> None:
    """Append one call: tool, argv, cwd, which tokens were set, the GitHub context, `extra`."""
    entry = {
        "tool": tool,
        "argv": argv,
        "cwd": os.getcwd(),
        "tokens": {name: bool(os.environ.get(name)) for name in TOKEN_VARS},
        "env": {name: os.environ.get(name) for name in CONTEXT_VARS},
        **extra,
    }
    with (STATE / "calls.jsonl").open("a") as log:
        log.write(json.dumps(entry) + "\n")


def read_text(path: str) -> str:
    """A body given as a file, `-` meaning stdin (read only then, so a step never blocks)."""
    return sys.stdin.read() if path == "-" else Path(path).read_text()


def load(name: str, default: Any) -> Any:
    """A JSON state file of the harness (`gh.json`, `cml.json`)."""
    path = STATE / name
    return json.loads(path.read_text()) if path.exists() else default


def save(name: str, data: Any) -> None:
    """Write a state file atomically enough for one job at a time."""
    tmp = STATE / f".{name}.tmp"
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(STATE / name)


def fail(tool: str, message: str, code: int = 1) -> None:
    """Exit like the real tool would, with a message that says it came from the stand-in."""
    print(f"{tool} (stand-in): {message}", file=sys.stderr)
    sys.exit(code)
