"""`modelops ARGS` run inside the test process, for tests about what a command does, not how it starts.

A `modelops` process spends most of its CPU importing (MLflow, scikit-learn, pandas: ~2-3 CPU-s
of a promote's ~4, more on a busy machine); the suite started ~110 such processes from its workers.
Here the typer app runs in the xdist worker, which imports those once. The command sees what a
process would: the working directory, the environment (the test's `env` over the session's, the
project venv first on PATH, for the git and DVC it starts), and its exit code and output come back
as a `CompletedProcess`. An exception a process would die of re-raises here, with its traceback.
What needs a process stays one: commands that start servers or race each other, and the console
entry point itself (the workflow tests and `make demo` run it under act and from a fresh clone).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelops.runtime.forge import VENV_BIN


@contextmanager
def _inside(cwd: Path, env: dict[str, str]) -> Iterator[None]:
    """The process-wide working directory and environment a subprocess would get, restored after."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{saved_env.get('PATH', '')}"
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def modelops(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`modelops *args` in `cwd` with `env`, in this process; `check`: a non-zero exit fails the test."""
    from typer.testing import CliRunner

    from modelops.cli import app

    with _inside(cwd, env or {}):
        result = CliRunner().invoke(app, args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    proc = subprocess.CompletedProcess(["modelops", *args], result.exit_code, result.stdout, result.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"modelops {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def run(
    cmd: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`tests.conftest.run`'s signature, for a `["modelops", ...]` command: in this process."""
    assert cmd[0] == "modelops", f"only modelops commands run in process, not {cmd[0]}"
    return modelops(cmd[1:], cwd, env, check=check)
