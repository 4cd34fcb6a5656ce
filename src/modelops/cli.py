"""`modelops`: one subcommand per lifecycle step. DVC stages and workflows call these, so a person,
DVC and CI all run the same code path."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from modelops import progress
from modelops.config import load_params
from modelops.errors import ModelopsError

app = typer.Typer(
    help="GitOps-driven ML: every model change is a reviewed commit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params file")]
ModelArg = Annotated[str, typer.Argument(help="model name (an entry under `models:` in params.yaml)")]


def _errors_to_exit(func: Callable[..., Any]) -> Callable[..., Any]:
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
    return app.command()(_errors_to_exit(func))


@command
def params(params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml and print it with defaults filled in."""
    print(json.dumps(load_params(params_file).model_dump(), indent=2))


@command
def ingest(params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Write data/raw/credit.csv from the configured source."""
    from modelops.ingest import ingest as run

    p = load_params(params_file)
    with progress.step(f"ingest ({p.data.source})"):
        frame = run(p.data)
    print(f"data/raw/credit.csv: {len(frame):,} rows")


@command
def validate(params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Run the Great Expectations suite on the raw data; fail with a readable summary."""
    from modelops.validate import validate as run

    load_params(params_file)
    with progress.step("validate (Great Expectations)"):
        result = run()
    print(f"data checks passed: {result['counts']['passed']} expectations")


@command
def prepare(params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Split raw data into train and test by a seeded hash of the row id."""
    from modelops.prepare import prepare as run

    p = load_params(params_file)
    with progress.step("prepare (hash split)"):
        n_train, n_test = run(p.split)
    print(f"train {n_train:,} rows, test {n_test:,} rows")


@command
def train(name: ModelArg, params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Fit one model's scikit-learn pipeline."""
    from modelops.train import train as run

    p = load_params(params_file)
    with progress.step(f"train {name} ({p.model(name).estimator})"):
        run(name, p.model(name))


@command
def evaluate(name: ModelArg, params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Score one model on the test split: metrics and plots."""
    from modelops.evaluate import evaluate as run

    p = load_params(params_file)
    with progress.step(f"evaluate {name}"):
        result = run(name, p.model(name), p.evaluate)
    print(json.dumps(result["metrics"], sort_keys=True))


@command
def package(
    name: ModelArg,
    params_file: ParamsOpt = Path("params.yaml"),
    log: Annotated[bool, typer.Option(help="log the run to MLflow")] = True,
) -> None:
    """Save one model in MLflow format with a model card and its latency; log the run to MLflow."""
    from modelops.package import package as run

    p = load_params(params_file)
    with progress.step(f"package {name} (MLflow format)"):
        outputs = run(name, p)
    print(f"models/{name}/model sha256 {outputs['content_hash']}")
    if log:
        from modelops.tracking import log_run

        with progress.step(f"log {name} to MLflow"):
            run_id = log_run(name, p, outputs)
        print(f"MLflow run {run_id}")


@command
def run(params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Every stage in order, in this process, without DVC (what benchmarks compare DVC against)."""
    from modelops import pipeline

    pipeline.run_all(load_params(params_file))


@command
def show(params_file: ParamsOpt = Path("params.yaml")) -> None:
    """The metrics table of every model and where its latest MLflow run is."""
    from modelops import summary

    print(summary.render(load_params(params_file)))


def main() -> None:
    """Console entry point."""
    app()
