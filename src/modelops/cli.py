"""`modelops`: one subcommand per lifecycle step. DVC stages and workflows call these, so a person,
DVC and CI all run the same code path. Pipeline and review commands are here; delivery and runtime
commands in `runtime/commands.py`, `new` in `delivery/new.py`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from modelops import progress
from modelops.app import DatasetArg, EnvOpt, ModelArg, ParamsOpt, app, command
from modelops.config import load_params
from modelops.delivery.new import app as new_app
from modelops.delivery.supply import image_app, policy_app
from modelops.delivery.switch import app as platform_app

app.add_typer(new_app, name="new")
app.add_typer(image_app, name="image")
app.add_typer(policy_app, name="policy")
app.add_typer(platform_app, name="platform")


@command
def params(params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml and print it with defaults filled in."""
    print(json.dumps(load_params(params_file).model_dump(), indent=2))


@command
def ingest(name: DatasetArg, params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Write a dataset's raw CSV from its declared source."""
    from modelops.pipeline.ingest import ingest as run

    ds = load_params(params_file).dataset(name)
    with progress.step(f"ingest {name} ({ds.source.kind})"):
        frame = run(ds)
    print(f"{ds.raw_file}: {len(frame):,} rows")


@command
def validate(name: DatasetArg, params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Run a dataset's Great Expectations suite on its raw data; fail with a readable summary."""
    from modelops.pipeline.validate import validate as run

    ds = load_params(params_file).dataset(name)
    with progress.step(f"validate {name} (Great Expectations)"):
        result = run(ds)
    print(f"{name}: data checks passed: {result['counts']['passed']} expectations")


@command
def suite(name: DatasetArg, params_file: ParamsOpt = Path("params.yaml")) -> None:
    """(Re)write a dataset's Great Expectations suite from its declaration, for review."""
    from modelops.pipeline.suite import write

    print(f"wrote {write(load_params(params_file).dataset(name))}")


@command
def prepare(name: DatasetArg, params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Split a dataset's raw data into train and test by a seeded hash of the row id."""
    from modelops.pipeline.prepare import prepare as run

    p = load_params(params_file)
    with progress.step(f"prepare {name} (hash split)"):
        n_train, n_test = run(p.dataset(name), p.split(name))
    print(f"{name}: train {n_train:,} rows, test {n_test:,} rows")


@command
def train(name: ModelArg, params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Fit one model's scikit-learn pipeline."""
    from modelops.pipeline.train import train as run

    p = load_params(params_file)
    with progress.step(f"train {name} ({p.model(name).estimator})"):
        run(name, p.model(name), p.dataset_of(name))


@command
def evaluate(name: ModelArg, params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Score one model on the test split: metrics and plots."""
    from modelops.pipeline.evaluate import evaluate as run

    p = load_params(params_file)
    with progress.step(f"evaluate {name}"):
        result = run(name, p.model(name), p.dataset_of(name), p.evaluate)
    print(json.dumps(result["metrics"], sort_keys=True))


@command
def package(
    name: ModelArg,
    params_file: ParamsOpt = Path("params.yaml"),
    log: Annotated[bool, typer.Option(help="log the run to MLflow")] = True,
) -> None:
    """Save one model in MLflow format with a model card and its latency; log the run to MLflow."""
    from modelops.pipeline.package import package as run

    p = load_params(params_file)
    with progress.step(f"package {name} (MLflow format)"):
        outputs = run(name, p)
    print(f"models/{name}/model sha256 {outputs['content_hash']}")
    if log:
        from modelops.pipeline.tracking import log_run

        with progress.step(f"log {name} to MLflow"):
            run_id = log_run(name, p, outputs)
        print(f"MLflow run {run_id}")


@command
def run(params_file: ParamsOpt = Path("params.yaml")) -> None:
    """Every stage in order, in this process, without DVC (what benchmarks compare DVC against)."""
    from modelops.pipeline import run as pipeline

    pipeline.run_all(load_params(params_file))


@command
def show(params_file: ParamsOpt = Path("params.yaml")) -> None:
    """The metrics table of every model and where its latest MLflow run is."""
    from modelops.pipeline import summary

    print(summary.render(load_params(params_file)))


# Registered after the pipeline's, so `--help` lists the loop in order.
from modelops.runtime import commands as _runtime_commands  # noqa: E402, F401


def main() -> None:
    """Console entry point."""
    app()


@command
def report(
    base: Annotated[str, typer.Option(help="branch the pull request merges into")] = "main",
    env: Annotated[str, typer.Option(help="env whose deployed model is the champion")] = "production",
    out: Annotated[Path, typer.Option(help="directory for report.md, report.json and PNGs")] = Path("report"),
    model: Annotated[
        list[str] | None,
        typer.Option(help="also report this model even if its outputs did not change (repeatable)"),
    ] = None,
    validation_log: Annotated[
        Path | None,
        typer.Option(
            help="validation failed: write the note naming each rejected dataset's suite, with this "
            "log's last lines, instead of the report"
        ),
    ] = None,
) -> None:
    """Write the pull-request report of the models whose outputs changed against the base."""
    from modelops.review.failure import data_failure
    from modelops.review.report import build

    if validation_log is not None:
        failing = data_failure(out, validation_log)
        print(f"{out / 'report.md'}: data validation failed for {', '.join(failing) or 'a data stage'}")
        return
    with progress.step(f"report vs {env} and {base}"):
        result = build(base=base, env=env, out=out, models=model or [])
    # The gate is its own step (`modelops gate`): a failing candidate still gets its report.
    print(f"{out / 'report.md'}:")
    for line in result.lines():
        print(f"  {line}")
    if result.unchanged:
        print(f"  unchanged: {', '.join(result.unchanged)}")


@command
def gate(
    report_file: Annotated[Path, typer.Option("--report", help="report.json of `modelops report`")] = Path(
        "report/report.json"
    ),
    params_file: ParamsOpt = Path("params.yaml"),
) -> None:
    """Enforce the quality gate on a report: exit 0 if every changed model passes, 10 with each
    failing model's reasons otherwise."""
    from modelops.review.gate import enforce_all
    from modelops.review.report import gate_from_report

    verdicts = gate_from_report(report_file, load_params(params_file))
    enforce_all(verdicts)
    if not verdicts:
        print("PASS: no model changed, nothing to gate")
    for name, verdict in verdicts.items():
        print(f"{name}: {verdict.line()}")


@command
def monitor(
    env: Annotated[
        str | None,
        typer.Option("--env", help="environment under gitops/envs/ (with --batch-input: optional)"),
    ] = None,
    since: Annotated[str | None, typer.Option(help="window start, ISO 8601 (UTC if no offset)")] = None,
    until: Annotated[str | None, typer.Option(help="window end, ISO 8601 (default: now)")] = None,
    last: Annotated[str | None, typer.Option(help="window length before --until: 30m, 24h, 7d")] = None,
    logs: Annotated[
        Path | None,
        typer.Option(
            help="inference log root, outcomes under <model>/feedback/ (default $MODELOPS_INFERENCE_LOG_DIR)"
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="directory for monitor.md/.json, PNGs, drift.prom")] = Path(
        "monitor"
    ),
    model: Annotated[
        list[str] | None, typer.Option(help="model(s) to check (default: every model the env has)")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="artifact store (default $MODELOPS_ARTIFACT_STORE)")
    ] = None,
    params_file: ParamsOpt = Path("params.yaml"),
    batch_input: Annotated[
        str | None, typer.Option(help="judge this batch input (CSV/Parquet) instead of the logs")
    ] = None,
    batch_output: Annotated[
        str | None, typer.Option(help="with --batch-input: what the batch job wrote (names the model)")
    ] = None,
) -> None:
    """Compare logged traffic (or a batch job's input) with the reference of the model that served
    it, and fed-back outcomes with its test metrics: exit 12 on drift (inputs or concept), 15 when
    there are too few rows to judge."""
    from datetime import UTC, datetime

    from modelops.monitoring import monitor as monitoring

    p = load_params(params_file)
    now = datetime.now(UTC)
    if batch_input or batch_output:
        from modelops.monitoring.batch_input import command

        command(batch_input, batch_output, p, out, model=model, env=env, store=store, now=now)
        return
    if env is None:
        raise monitoring.MonitorError("--env ENV is required (or --batch-input with --batch-output)")
    start, end = monitoring.window(since, until, last, now)
    with progress.step(f"monitor {env}"):
        results = monitoring.run(env, p, start, end, out, log_dir=logs, models=model, store=store, now=now)
    for r in results:
        print(r.message)
    print(f"{out / monitoring.MONITOR_MD}, {out / monitoring.MONITOR_JSON}, {out / monitoring.PROM_FILE}")
    monitoring.enforce(results)


@command
def analyze(
    name: ModelArg,
    env: EnvOpt,
    out: Annotated[Path, typer.Option(help="directory for <model>.md and <model>.json")] = Path("analysis"),
    prometheus: Annotated[
        str | None,
        typer.Option(
            envvar="MODELOPS_PROMETHEUS_URL",
            help="Prometheus to read request counters from (default: the env's local runtime)",
        ),
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="the local runtime's endpoint (default: the one `modelops sync` runs)")
    ] = None,
    logs: Annotated[
        Path | None,
        typer.Option(
            help="inference and feedback log root (default $MODELOPS_INFERENCE_LOG_DIR, as the server)"
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="window start, ISO 8601 (default: when the canary was committed)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="window end, ISO 8601 (default: now)")] = None,
    predictor: Annotated[
        str | None, typer.Option(help="canary or shadow, when the model has both (default: the canary)")
    ] = None,
    params_file: ParamsOpt = Path("params.yaml"),
) -> None:
    """Compare a model's canary (or shadow) with main in an env: exit 0 promote, 20 abort, 21 wait."""
    from datetime import UTC, datetime

    from modelops.monitoring import analysis_render, canary
    from modelops.monitoring.logs import parse_time

    if predictor not in (None, "canary", "shadow"):
        raise canary.AnalysisError(f"--predictor takes canary or shadow, got {predictor!r}")
    p = load_params(params_file)
    p.model(name)
    end = parse_time(until) if until else datetime.now(UTC)
    start = parse_time(since) if since else None
    with progress.step(f"analyze {name} in {env}"):
        result = canary.analyze(
            name, env, p, end, start, log_dir=logs, prometheus=prometheus, runtime=runtime, which=predictor
        )
        md, js = analysis_render.write(result, out)
    print(result.message)
    print(f"{md}, {js}")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@command
def canaries(
    env: EnvOpt,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list instead of one name per line")] = False,
    params_file: ParamsOpt = Path("params.yaml"),
) -> None:
    """The models with a canary or shadow in an env, one per line (what canary.yml analyzes)."""
    from modelops.monitoring.canary import with_canaries

    found = with_canaries(env, load_params(params_file))
    if as_json or found:
        print(json.dumps(found) if as_json else "\n".join(found))


@command
def retrain(
    snapshot: Annotated[
        str | None,
        typer.Option(
            envvar="MODELOPS_DATA_SNAPSHOT",
            help="snapshot of record: path or fsspec URL, {dataset} standing for the dataset's name "
            "(default: re-ingest the declared source)",
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(help="dataset(s) to retrain (required when more than one is declared)"),
    ] = None,
    all_datasets: Annotated[
        bool, typer.Option("--all-datasets", help="every declared dataset, each on its own branch")
    ] = False,
    drifted: Annotated[
        Path | None,
        typer.Option(help="a monitor.json: retrain the datasets of the models it found drifting"),
    ] = None,
    reason: Annotated[
        Path | None, typer.Option(help="markdown saying why (e.g. monitor/monitor.md), put in the PR body")
    ] = None,
    branch: Annotated[
        str, typer.Option(help="the branch a proposal is committed on; {dataset} is the dataset's name")
    ] = "retrain/{dataset}",
    push: Annotated[bool, typer.Option("--push", help="push the DVC outputs and the branch")] = False,
    open_pr: Annotated[bool, typer.Option("--open-pr", help="push, then open or update the one PR")] = False,
    require_new_data: Annotated[
        bool, typer.Option("--require-new-data", help="exit 18 when a dataset's data did not change")
    ] = False,
) -> None:
    """Refresh a dataset's snapshot on a branch; if it changed, retrain its models, commit and
    propose it as a PR (one branch and PR per dataset)."""
    from modelops.monitoring import retrain as retraining

    with progress.step("retrain"):
        results = retraining.retrain(
            snapshot or None,
            datasets=dataset,
            drifted=drifted,
            every=all_datasets,
            reason=reason,
            branch=branch,
            push=push,
            open_pr=open_pr,
            require_new_data=require_new_data,
        )
    for result in results:
        print(result.message)


if __name__ == "__main__":
    main()
