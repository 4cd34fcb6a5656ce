"""The `modelops` command-line app: the typer app, typed errors as exit codes, shared options.

Commands live beside the area they drive (`cli.py`: pipeline and review; `runtime/commands.py`:
delivery and the local runtime); each registers itself on `app` with `@command`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from modelops.errors import ModelopsError

app = typer.Typer(
    help="GitOps-driven ML: every model change is a reviewed commit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params file")]
ModelArg = Annotated[str, typer.Argument(help="model name (an entry under `models:` in params.yaml)")]
DatasetArg = Annotated[
    str, typer.Argument(help="dataset name (an entry under `datasets:`, declared in data/<name>/)")
]
EnvOpt = Annotated[str, typer.Option("--env", help="environment under gitops/envs/ (staging, production)")]


def errors_to_exit(func: Callable[..., Any]) -> Callable[..., Any]:
    """Typed errors become one readable message on stderr and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ModelopsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Register a subcommand with error mapping."""
    return app.command()(errors_to_exit(func))
