"""`modelops new model`, `new dataset` and `new batch`: scaffold a model, a dataset or an env's batch
job for review.

A sub-app of its own so the main CLI needs one line for it. It lives on the delivery floor because
it reaches `delivery.scaffold` (manifests, params, CODEOWNERS) and `pipeline.profile` (CSV to
declaration), both imported lazily like every verb's module so `modelops --help` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from modelops.app import errors_to_exit

app = typer.Typer(
    help="Scaffold a model, a dataset or a batch job: all files or none, ready to review.",
    no_args_is_help=True,
)
Task = Literal["binary", "multiclass", "regression"]


def _report(written: list[Path], then: str) -> None:
    for path in written:
        print(f"wrote {path}")
    print(then)


@app.command("model")
@errors_to_exit
def model(
    name: Annotated[str, typer.Argument(help="the new model's name (lowercase, digits, '-')")],
    dataset: Annotated[str, typer.Option("--dataset", help="a dataset listed under `datasets:`")],
    estimator: Annotated[str, typer.Option("--estimator", help="an estimator that fits the dataset's task")],
    owner: Annotated[str, typer.Option("--owner", help="CODEOWNERS owner of the model's files")] = (
        "@your-org/ml-team"
    ),
) -> None:
    """Add a model: params entry, base manifest, every env's unpromoted patch, a CODEOWNERS block."""
    from modelops.delivery import scaffold

    written = scaffold.new_model(name, dataset, estimator, owner)
    _report(written, f"next: set models.{name}.hyperparams in params.yaml, then `dvc repro` and open a PR")


@app.command("dataset")
@errors_to_exit
def dataset(
    name: Annotated[str, typer.Argument(help="the new dataset's name (lowercase, digits, '-')")],
    csv: Annotated[Path, typer.Option("--from", help="the CSV to profile (copied to data/sources/)")],
    target: Annotated[str, typer.Option("--target", help="the column a model predicts")],
    task: Annotated[Task | None, typer.Option("--task", help="default: inferred from the target")] = None,
    id_col: Annotated[str | None, typer.Option("--id", help="the row id column (default: `id`)")] = None,
) -> None:
    """Profile a CSV into data/NAME/ (declaration + suite) and list it in params.yaml, for review."""
    from modelops.pipeline import profile

    written = profile.new_dataset(name, csv, target, task, id_col)
    _report(
        written,
        f"next: review data/{name}/dataset.yaml (bounds, classes, descriptions), `modelops suite {name}` "
        f"after edits, track data/sources/{name}.csv (git add, or dvc add if large), then "
        f"`modelops new model NAME --dataset {name} --estimator E`",
    )


@app.command("batch")
@errors_to_exit
def batch(
    name: Annotated[str, typer.Argument(help="a model with manifests in the env")],
    env: Annotated[str, typer.Option("--env", help="the env under gitops/envs/ that runs the job")],
    input_url: Annotated[
        str, typer.Option("--input", help="input path or URL, CSV or Parquet; may hold {date}")
    ],
    output_url: Annotated[
        str, typer.Option("--output", help="output path or URL; {date}, and {shard} with --shards > 1")
    ],
    schedule: Annotated[str, typer.Option("--schedule", help="cron schedule, read in UTC")] = "0 2 * * *",
    shards: Annotated[int, typer.Option("--shards", help="pods per run, each scoring one shard")] = 1,
    on_bad: Annotated[str | None, typer.Option("--on-bad", help="bad rows: fail (default) or reject")] = None,
) -> None:
    """Opt an env into a model's batch job: a CronJob scoring with what its main predictor serves."""
    from modelops.delivery import batch_scaffold

    written = batch_scaffold.new_batch(
        name,
        env,
        input_url=input_url,
        output_url=output_url,
        schedule=schedule,
        shards=shards,
        on_bad=on_bad,
    )
    _report(written, f"next: review gitops/envs/{env}/batch/{name}.yaml and open a PR")
