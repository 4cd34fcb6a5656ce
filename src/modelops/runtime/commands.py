"""Commands of delivery and the local runtime: changed, promote, conclude, rollback, history, status,
batch, sync (and sync --batch), demo.

Thin: each parses its options and calls the module that does the work.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from modelops import progress
from modelops.app import EnvOpt, ModelArg, ParamsOpt, command
from modelops.config import load_params


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


@command
def promote(
    name: ModelArg,
    env: EnvOpt,
    canary: Annotated[int | None, typer.Option(help="add a canary predictor taking N% of traffic")] = None,
    shadow: Annotated[bool, typer.Option("--shadow", help="add a shadow predictor (mirrored)")] = False,
    finish: Annotated[
        bool, typer.Option("--finish", help="make the canary (else the shadow) the whole deployment")
    ] = False,
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
def conclude(
    name: ModelArg,
    env: EnvOpt,
    analysis: Annotated[
        Path, typer.Option(help="the analysis JSON `modelops analyze` wrote (its .md beside it)")
    ],
) -> None:
    """Act on a canary analysis: promote opens or updates one PR that finishes the canary; abort
    commits and pushes its removal (or opens a PR: params.yaml canary.on_abort); wait does nothing."""
    from modelops.delivery.conclude import conclude as run

    with progress.step(f"conclude the analysis of {name} in {env}"):
        outcome = run(name, env, analysis)
    print(outcome.message)


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
def batch(
    name: ModelArg,
    input_url: Annotated[str, typer.Option("--input", help="CSV or Parquet, a path or fsspec URL ({date})")],
    output_url: Annotated[
        str, typer.Option("--output", help="where the scores go, .csv or .parquet ({date}, {shard})")
    ],
    env: Annotated[str | None, typer.Option(help="score with the model gitops/envs/ENV serves")] = None,
    local: Annotated[
        bool, typer.Option("--local", help="score with models/MODEL/model (hash checked against its card)")
    ] = False,
    shard: Annotated[str | None, typer.Option(help="I/N: only the rows whose id hashes to shard I")] = None,
    shards: Annotated[int | None, typer.Option(help="N shards, this one $JOB_COMPLETION_INDEX")] = None,
    on_bad: Annotated[str, typer.Option("--on-bad", help="fail (default) or reject bad rows")] = "fail",
    rejects: Annotated[
        str | None, typer.Option(help="rejects file (default <output stem>.rejects.csv)")
    ] = None,
    metrics_file: Annotated[
        str | None, typer.Option(help="Prometheus textfile metrics, written at the end")
    ] = None,
    chunk_rows: Annotated[int | None, typer.Option(help="rows per chunk (default 100,000)")] = None,
    params_file: ParamsOpt = Path("params.yaml"),
) -> None:
    """Score a file with a model, streaming and atomically, as the env's batch CronJob does."""
    from modelops.runtime import batch as runner

    if (env is None) == (not local):
        raise runner.BatchFailed("choose the model: --env ENV (what the env serves) or --local", exit_code=2)
    if local:
        load_params(params_file).model(name)  # an unknown model fails here, naming the known ones
    options = runner.engine_options(
        input_url,
        output_url,
        shard=shard,
        shards=shards,
        on_bad=on_bad,
        rejects=rejects,
        metrics_file=metrics_file,
        chunk_rows=chunk_rows,
    )
    chosen = runner.from_env(name, env) if env else runner.from_work_tree(name)
    print(runner.summary(chosen, runner.batch(chosen, options)))


@command
def sync(
    model: Annotated[str | None, typer.Argument(help="with --batch: only this model's batch job")] = None,
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
    batch: Annotated[
        bool, typer.Option("--batch", help="run the env's batch jobs once, here (a process per shard)")
    ] = False,
    input_url: Annotated[
        str | None, typer.Option("--input", help="with --batch: this input instead of the manifest's")
    ] = None,
    output_url: Annotated[
        str | None, typer.Option("--output", help="with --batch: this output instead of the manifest's")
    ] = None,
    max_parallel: Annotated[
        int | None, typer.Option(help="with --batch: at most this many shards at once")
    ] = None,
    tokens_file: Annotated[
        Path | None,
        typer.Option(
            envvar="MODELOPS_AUTH_TOKENS_FILE",
            help="bearer tokens (one a line) the router and its servers require; default: no auth",
        ),
    ] = None,
) -> None:
    """Serve what gitops/envs/ENV says on one loopback endpoint, like Argo CD + Seldon would; with
    --batch, run its batch jobs once, here, as one tick of their CronJobs would."""
    from modelops.runtime import sync as runtime

    if batch:
        _batch(env, model, input_url, output_url, branch, remote, max_parallel, state_dir)
        return
    if model or input_url or output_url:
        raise runtime.SyncError("MODEL, --input and --output go with --batch")
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
            tokens_file=tokens_file,
        )
        return
    result = runtime.sync(env, port=port, state_dir=state_dir, tokens_file=tokens_file, **options)
    runtime.print_result(result)


def _batch(
    env: str,
    model: str | None,
    input_url: str | None,
    output_url: str | None,
    branch: str,
    remote: str,
    max_parallel: int | None,
    state_dir: Path,
) -> None:
    """`sync --batch`: run, print each shard's result, fail if any shard failed."""
    from modelops.runtime import jobs

    with progress.step(f"batch jobs of {env}"):
        outcomes = jobs.run(
            env,
            model,
            input_url=input_url,
            output_url=output_url,
            branch=branch,
            remote=remote,
            max_parallel=max_parallel,
            state_dir=state_dir,
        )
    for outcome in outcomes:
        if outcome.note:
            print(f"{outcome.job.name}: {outcome.note}")
        for shard in outcome.shards:
            print(jobs.describe(outcome.job, shard))
    jobs.check(outcomes)


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
