"""Processes a test starts, stopped by PID, and waiting for them to be ready.

The `processes` fixture (tests/conftest.py) gives a test its own `Processes`, stopped at its end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


class Processes:
    """Processes of one test, stopped by PID (their process group: a runtime's servers too)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, args: list[str], log: Path, **kw) -> subprocess.Popen:
        """Start `args` in a session of its own, its output to `log`."""
        with log.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw)
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        """SIGTERM each still running process group, newest first; SIGKILL what outlives 40 s."""
        for proc in reversed(self.started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def wait_for(what: str, done: Callable[[], Any], timeout: float = 120, log: Path | None = None) -> Any:
    """Poll `done()` until it returns something truthy (a failure past `timeout`, not a timing assert)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if found := done():
                return found
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f": {log.read_text()[-3000:]}" if log else ""))
