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
from modelops.delivery.new import app as new_app  # noqa: E402  (the `new` sub-app, after `app` exists)

app.add_typer(new_app, name="new")

ParamsOpt = Annotated[Path, typer.Option("--params", help="params file")]
ModelArg = Annotated[str, typer.Argument(help="model name (an entry under `models:` in params.yaml)")]
DatasetArg = Annotated[
    str, typer.Argument(help="dataset name (an entry under `datasets:`, declared in data/<name>/)")
]


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


@command
def changed(
    base: Annotated[str, typer.Option(help="the commit to compare with (e.g. a push's `before`)")],
    params_file: ParamsOpt = Path("params.yaml"),
    lock: Annotated[Path, typer.Option(help="the current dvc.lock")] = Path("dvc.lock"),
    env: Annotated[
        str | None, typer.Option(help="only models with manifests in this env (the others on stderr)")
    ] = None,
) -> None:
    """The models whose packaged model or metrics differ from --base's dvc.lock, one per line.

    An empty --base (a manual run) or git's all-zero one (a new branch) lists every built model."""
    from modelops.pipeline.lock import changed_models, lock_at

    models = list(load_params(params_file).models)
    current = lock.read_text() if lock.exists() else None
    for model in changed_models(lock_at(base, str(lock)), current, models):
        if env is None or (Path("gitops/envs") / env / f"{model}.yaml").exists():
            print(model)
        else:  # e.g. a model whose manifests are still under review: nothing to promote it into
            print(
                f"{model}: changed, but gitops/envs/{env}/{model}.yaml does not exist: skipped",
                file=sys.stderr,
            )


EnvOpt = Annotated[str, typer.Option("--env", help="environment under gitops/envs/ (staging, production)")]


@command
def promote(
    name: ModelArg,
    env: EnvOpt,
    canary: Annotated[int | None, typer.Option(help="add a canary predictor taking N% of traffic")] = None,
    shadow: Annotated[bool, typer.Option("--shadow", help="add a shadow predictor (mirrored)")] = False,
    finish: Annotated[bool, typer.Option("--finish", help="make the canary the whole deployment")] = False,
    abort: Annotated[bool, typer.Option("--abort", help="remove the canary and shadow")] = False,
    source_pr: Annotated[str | None, typer.Option(help="the pull request this model came from")] = None,
    store: Annotated[
        str | None, typer.Option(help="artifact store (default $MODELOPS_ARTIFACT_STORE)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the gitops/ diff; write nothing")] = False,
    push: Annotated[bool, typer.Option("--push", help="push to origin, rebasing on a race")] = False,
    branch: Annotated[str | None, typer.Option(help="commit on this branch instead (with --open-pr)")] = None,
    open_pr: Annotated[bool, typer.Option("--open-pr", help="open or update one PR for --branch")] = False,
) -> None:
    """Publish the packaged model and commit it into the env's manifest; the MLflow alias follows git."""
    from modelops.delivery import promote as promotion

    modes = [
        m
        for m, on in (
            ("canary", canary is not None),
            ("shadow", shadow),
            ("finish", finish),
            ("abort", abort),
        )
        if on
    ]
    if len(modes) > 1:
        raise promotion.PromoteError(f"choose one of --canary, --shadow, --finish, --abort (got {modes})")
    if open_pr and not branch:
        raise promotion.PromoteError("--open-pr needs --branch NAME")
    mode = modes[0] if modes else "full"
    start = None
    if branch and not dry_run:
        start = promotion.preflight()
        promotion.git("checkout", "--quiet", "-B", branch)

    def run() -> promotion.Result:
        return promotion.promote(
            name, env, mode=mode, canary=canary, source_pr=source_pr, store=store, dry_run=dry_run
        )

    try:
        with progress.step(f"promote {name} to {env} ({mode})"):
            result = run()
        if result.diff:
            print(result.diff, end="")
        print(result.message)
        if result.commit and branch:
            title = result.message
            body = (
                f"Merging this deploys {name} {result.release.version} to {env}.\n\n```diff\n{result.diff}```"
            )
            number = promotion.open_pr(branch, title, body) if open_pr else ""
            print(f"pull request {number or '(branch pushed)'} for {branch}")
        elif result.commit and push:
            current = promotion.git("rev-parse", "--abbrev-ref", "HEAD")
            promotion.push(current, redo=run)
            print(f"pushed {promotion.git('rev-parse', 'HEAD')} to origin/{current}")
        if not dry_run and not branch:
            promotion.sync_alias(name, env)  # after the commit (and push): the alias never leads git
    finally:
        if start:
            promotion.git("checkout", "--quiet", start)


@command
def rollback(
    env: EnvOpt,
    to: Annotated[str | None, typer.Option(help="restore the manifests that deployed this version")] = None,
    model: Annotated[str | None, typer.Option(help="only this model's promotions")] = None,
    push: Annotated[bool, typer.Option("--push", help="push to origin, rebasing on a race")] = False,
    branch: Annotated[str | None, typer.Option(help="commit on this branch instead (with --open-pr)")] = None,
    open_pr: Annotated[bool, typer.Option("--open-pr", help="open or update one PR for --branch")] = False,
) -> None:
    """Revert the latest promotion of an env (or restore what deployed --to VERSION)."""
    from modelops.delivery import promote as promotion

    start = promotion.preflight()
    if branch:
        promotion.git("checkout", "--quiet", "-B", branch)
    try:
        if model is not None:
            load_params().model(model)  # an unknown model fails here, naming the known ones
        sha = promotion.rollback(env, to, model)
        print(promotion.git("show", "--stat", "--format=%s%n%n%b", sha))
        if branch and open_pr:
            title = promotion.git("log", "-1", "--format=%s")
            number = promotion.open_pr(branch, title, f"Merging this rolls back {env}.")
            print(f"pull request {number} for {branch}")
        elif push:
            promotion.push(start)
        if not branch:  # the alias follows what git now serves
            for model in load_params().models:
                if (promotion.GITOPS / "envs" / env / f"{model}.yaml").exists():
                    promotion.sync_alias(model, env)
    finally:
        if branch:
            promotion.git("checkout", "--quiet", start)


@command
def history(env: EnvOpt) -> None:
    """Promotions of an env, newest first, from git."""
    from modelops.delivery import promote as promotion

    print("| commit | version | model | hash | source PR | author | date |")
    print("|---|---|---|---|---|---|---|")
    for e in promotion.history(env):
        kind = f" (rollback of {e.rollback_of[:8]})" if e.rollback_of else ""
        print(
            f"| {e.commit[:8]}{kind} | {e.version} | {e.model} | {e.content_hash[:12]} | {e.source_pr} "
            f"| {e.author} | {e.date} |"
        )


@command
def status(
    params_file: ParamsOpt = Path("params.yaml"),
    sync: Annotated[bool, typer.Option("--sync", help="move every MLflow alias to what git serves")] = False,
    env: Annotated[str | None, typer.Option(help="only this env")] = None,
    state_dir: Annotated[Path, typer.Option(help="the local runtime's state (see `modelops sync`)")] = Path(
        ".modelops/runtime"
    ),
) -> None:
    """Per env and model: what git serves, the MLflow alias, and what the local runtime serves."""
    from modelops.delivery import manifests
    from modelops.delivery import promote as promotion
    from modelops.runtime import sync as runtime

    models = list(load_params(params_file).models)
    envs = [env] if env else manifests.envs()
    if env and env not in manifests.envs():
        manifests.render(env)  # raises, naming the known envs
    if sync:  # e.g. after a production PR merged: git changed, the registry follows
        for name in envs:
            for model in models:
                if (promotion.GITOPS / "envs" / name / f"{model}.yaml").exists():
                    promotion.sync_alias(model, name)
    rows = [r for r in promotion.status(models) if r["env"] in envs]
    print("| env | model | git | MLflow alias | agree | local runtime |")
    print("|---|---|---|---|---|---|")
    local = {name: runtime.running(name, state_dir) for name in envs}
    for r in rows:
        print(
            f"| {r['env']} | {r['model']} | {r['git']} | {r['mlflow_alias']} | {r['agree']} "
            f"| {runtime.describe(local[r['env']], r['model'])} |"
        )
    for name, state in local.items():
        if state and state.get("last_error"):
            print(f"{name}: the local runtime could not apply {state['tracked_rev']}: {state['last_error']}")


@command
def sync(
    env: Annotated[str, typer.Option(help="the env under gitops/envs/ to serve")] = "production",
    watch: Annotated[bool, typer.Option(help="stay in the foreground, reconciling as git changes")] = False,
    stop: Annotated[bool, typer.Option(help="stop the env's runtime and its servers")] = False,
    port: Annotated[int, typer.Option(help="loopback port of the env's endpoint (0: any free one)")] = 0,
    branch: Annotated[str, typer.Option(help="the branch to track, as Argo CD's targetRevision")] = "main",
    remote: Annotated[str, typer.Option(help="fetch the branch from this remote when it exists")] = "origin",
    interval: Annotated[float, typer.Option(help="seconds between polls of git")] = 3.0,
    max_replicas: Annotated[int, typer.Option(help="cap on local processes per predictor")] = 1,
    state_dir: Annotated[Path, typer.Option(help="runtime state, logs and model cache")] = Path(
        ".modelops/runtime"
    ),
) -> None:
    """Serve what gitops/envs/ENV says on one loopback endpoint, like Argo CD + Seldon would."""
    from modelops.runtime import sync as runtime

    if stop:
        print(f"{env}: {'stopped' if runtime.stop(env, state_dir) else 'no runtime was running'}")
        return
    options = {"branch": branch, "remote": remote, "interval": interval, "max_replicas": max_replicas}
    if watch:
        runtime.watch(
            env,
            port=port,
            interval_s=interval,
            branch=branch,
            remote=remote,
            max_replicas=max_replicas,
            state_dir=state_dir,
        )
        return
    result = runtime.sync(env, port=port, state_dir=state_dir, **options)
    runtime.print_result(result)


@command
def demo(
    workspace: Annotated[Path, typer.Option(help="scratch dir for origin, clone, stores (recreated)")] = Path(
        ".scratch/demo"
    ),
    model: Annotated[
        str | None, typer.Option(help="the model the PR changes (default: the first with manifests)")
    ] = None,
    other: Annotated[
        str | None, typer.Option(help="a model the PR leaves unchanged (default: the next with manifests)")
    ] = None,
) -> None:
    """The whole loop on this machine, two models served: the PR changes one; merge deploys it,
    revert rolls it back, and the other keeps answering from the same server throughout."""
    from modelops.runtime.demo import Demo

    Demo(workspace, model, other).run()


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
    from modelops.delivery import preview
    from modelops.review.report import build, data_failure

    if validation_log is not None:
        failing = data_failure(out, validation_log)
        print(f"{out / 'report.md'}: data validation failed for {', '.join(failing) or 'a data stage'}")
        return
    with progress.step(f"report vs {env} and {base}"):
        result = build(preview, base=base, env=env, out=out, models=model or [])
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
    env: EnvOpt,
    since: Annotated[str | None, typer.Option(help="window start, ISO 8601 (UTC if no offset)")] = None,
    until: Annotated[str | None, typer.Option(help="window end, ISO 8601 (default: now)")] = None,
    last: Annotated[str | None, typer.Option(help="window length before --until: 30m, 24h, 7d")] = None,
    logs: Annotated[
        Path | None,
        typer.Option(help="inference log root (default $MODELOPS_INFERENCE_LOG_DIR, as the server)"),
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
) -> None:
    """Compare logged traffic with the reference of the model that served it: exit 12 on drift,
    15 when there are too few rows to judge."""
    from datetime import UTC, datetime

    from modelops.monitoring import monitor as monitoring

    p = load_params(params_file)
    now = datetime.now(UTC)
    start, end = monitoring.window(since, until, last, now)
    with progress.step(f"monitor {env}"):
        results = monitoring.run(env, p, start, end, out, log_dir=logs, models=model, store=store, now=now)
    for r in results:
        print(r.message)
    print(f"{out / monitoring.MONITOR_MD}, {out / monitoring.MONITOR_JSON}, {out / monitoring.PROM_FILE}")
    monitoring.enforce(results)


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
