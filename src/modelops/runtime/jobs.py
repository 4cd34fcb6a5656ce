"""`modelops sync --batch`: run an env's batch jobs once, here, as one tick of their CronJobs would.

Like `sync`, it renders `gitops/envs/<env>` at the tracked branch (a mirror of its own, the same
kustomize and checks), so what runs is what Argo CD would apply. Each batch CronJob becomes its
Indexed Job run locally: one process per shard running the container's command with its env (the
model from the same URI and expected hash as the main predictor; JOB_COMPLETION_INDEX = the shard),
at most `parallelism` at a time. `--input` / `--output` replace the manifest's URLs with local ones.
No retries and no schedule: each shard's exit code is reported, and any failure fails the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops_serving.signature import Policy

from modelops.delivery import batch_rules, manifests, signing, signing_rules
from modelops.runtime.controller import STATE_DIR
from modelops.runtime.desired import SyncError, fetch, git, rendered, source


class BatchFailed(SyncError):
    """A shard of a batch job exited non-zero (or ran past the job's deadline); the message names it."""


@dataclass(frozen=True)
class BatchJob:
    """One rendered batch CronJob, as a local run needs it."""

    name: str
    model: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    completions: int
    parallelism: int
    deadline_s: float | None
    suspended: bool
    policy: Policy | None = None  # who must have signed the model, as checked here

    @property
    def uri(self) -> str:
        return dict(self.env).get("MODELOPS_MODEL_URI", "")

    @property
    def placeholder(self) -> bool:
        return bool(manifests.PLACEHOLDER_URI.match(self.uri))


@dataclass
class Shard:
    """One shard's process: its exit code (None until it ended, or if it never started)."""

    index: int
    log: Path
    exit_code: int | None = None
    seconds: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class Outcome:
    """What one job's local run did, shard by shard."""

    job: BatchJob
    shards: list[Shard] = field(default_factory=list)
    note: str = ""  # why it did not run, or what to know about the run

    @property
    def failed(self) -> list[Shard]:
        return [s for s in self.shards if not s.ok]


def job_of(obj: dict[str, Any], objects: list[dict[str, Any]] = ()) -> BatchJob:
    """A rendered batch CronJob as a local run needs it (a value taken from elsewhere is refused),
    with its signing policy (a key resolved from the env's `objects`)."""
    name = obj["metadata"]["name"]
    spec = obj["spec"]
    run = spec["jobTemplate"]["spec"]
    box = batch_rules.container(obj) or {}
    env = []
    for entry in box.get("env") or []:
        if "value" not in entry:
            raise SyncError(
                f"CronJob/{name}: env {entry.get('name')} has no literal value; cannot run it here"
            )
        env.append((entry["name"], str(entry["value"])))
    deadline = run.get("activeDeadlineSeconds")
    stated = signing_rules.stated(run.get("template", {}).get("spec", {}), box, list(objects))[0]
    return BatchJob(
        name=name,
        model=str(batch_rules.model_of(obj)),
        command=tuple(box.get("command") or ()),
        args=tuple(str(a) for a in box.get("args") or ()),
        env=tuple(env),
        completions=int(run.get("completions", 1)),
        parallelism=int(run.get("parallelism", 1)),
        deadline_s=float(deadline) if deadline else None,
        suspended=bool(spec.get("suspend", False)),
        policy=signing.local(stated.policy()) if stated else None,
    )


def select(objects: list[dict[str, Any]], env: str, model: str | None = None) -> list[BatchJob]:
    """The env's batch jobs (of `model` only, when given); none is an error naming what there is."""
    found = [job_of(o, objects) for o in objects if o.get("kind") == "CronJob" and batch_rules.model_of(o)]
    if model is not None:
        chosen = [j for j in found if j.model == model]
        if not chosen:
            have = ", ".join(j.model for j in found) or "none"
            raise SyncError(
                f"gitops/envs/{env} runs no batch job of {model} (batch jobs: {have}); "
                f"opt in with `modelops new batch {model} --env {env} ...`"
            )
        return chosen
    if not found:
        raise SyncError(
            f"gitops/envs/{env} runs no batch job; opt one in with `modelops new batch MODEL --env {env} ...`"
        )
    return found


def local_args(job: BatchJob, input_url: str | None, output_url: str | None) -> list[str]:
    """The container's args with --input / --output replaced by local ones (when given)."""
    args = list(job.args)
    for option, value in (("--input", input_url), ("--output", output_url)):
        if value is None:
            continue
        for i, arg in enumerate(args):
            if arg == option and i + 1 < len(args):
                args[i + 1] = value
            elif arg.startswith(f"{option}="):
                args[i] = f"{option}={value}"
    if job.completions > 1 and output_url is not None and "{shard}" not in output_url:
        raise SyncError(
            f"--output {output_url!r}: {job.name} runs {job.completions} shards: put {{shard}} in it"
        )
    return args


def executable(command: tuple[str, ...]) -> list[str]:
    """The container's command as this machine runs it: beside this interpreter, else on PATH."""
    if not command:
        raise SyncError("the batch container has no command")
    local = Path(sys.executable).with_name(command[0])
    found = str(local) if local.exists() else shutil.which(command[0])
    if found is None:
        raise SyncError(
            f"{command[0]} not found beside {sys.executable} nor on PATH: "
            "install the serving package (`uv sync`)"
        )
    return [found, *command[1:]]


def verify(job: BatchJob) -> None:
    """The model at the job's URI must hash to its expected hash, and be signed as its policy
    requires, before any shard starts."""
    from modelops.delivery import publish
    from modelops.errors import ModelopsError

    expected = dict(job.env).get("MODELOPS_EXPECTED_HASH")
    try:
        actual = publish.stored_hash(job.uri)
    except ModelopsError as exc:
        raise SyncError(f"{job.name}: {exc}") from None
    if actual != expected:
        raise SyncError(
            f"{job.name}: {job.uri} hashes to {actual}, but the manifest expects {expected}; not run"
        )
    if job.policy is not None:
        try:
            signing.check(job.uri, job.policy)
        except ModelopsError as exc:
            raise SyncError(f"{job.name}: {job.uri} REFUSED: {exc}; not run") from None


def run_job(
    job: BatchJob,
    logs: Path,
    *,
    input_url: str | None = None,
    output_url: str | None = None,
    max_parallel: int | None = None,
    state_dir: Path = STATE_DIR,
) -> Outcome:
    """Run every shard of one job (at most `parallelism` at a time) and wait for all of them."""
    args = local_args(job, input_url, output_url)
    verify(job)  # the model first: a refused one is the news, whatever else is wrong
    command = executable(job.command) + args
    logs.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    base |= {k: v for k, v in job.env if k not in signing.PROCESS_ENV}
    base |= signing.process_env(job.policy, state_dir / "signers")
    base |= {"MODELOPS_CACHE_DIR": str((state_dir / "models").resolve())}
    outcome = Outcome(job, [Shard(i, logs / f"{job.name}-{i}.log") for i in range(job.completions)])
    started = time.monotonic()
    running: dict[int, subprocess.Popen[bytes]] = {}
    lock = threading.Lock()
    stopping = threading.Event()

    def shard(s: Shard) -> None:
        left = None if job.deadline_s is None else job.deadline_s - (time.monotonic() - started)
        if stopping.is_set() or (left is not None and left <= 0):
            s.note = "not started: the job's activeDeadlineSeconds had passed"
            return
        begin = time.monotonic()
        with s.log.open("wb") as out, lock:
            running[s.index] = subprocess.Popen(
                command,
                env=base | {"JOB_COMPLETION_INDEX": str(s.index)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        process = running[s.index]
        try:
            s.exit_code = process.wait(left)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            s.note = f"killed: past the job's activeDeadlineSeconds ({job.deadline_s:.0f} s)"
        s.seconds = time.monotonic() - begin

    width = max(1, min(job.parallelism, max_parallel or job.parallelism))
    pool = ThreadPoolExecutor(width, thread_name_prefix=job.name)
    try:
        for future in [pool.submit(shard, s) for s in outcome.shards]:
            future.result()
    finally:
        stopping.set()
        with lock:  # an interrupt (Ctrl-C) or an error: no shard outlives the run
            for process in running.values():
                if process.poll() is None:
                    process.kill()
        pool.shutdown(wait=True)
    return outcome


def run(
    env: str,
    model: str | None = None,
    *,
    input_url: str | None = None,
    output_url: str | None = None,
    branch: str = "main",
    remote: str | None = "origin",
    max_parallel: int | None = None,
    state_dir: Path = STATE_DIR,
) -> list[Outcome]:
    """Render `env` at the tracked branch and run its batch jobs (or `model`'s) once, each shard to
    its end; `check` the outcomes for failures."""
    manifests.render(env)  # an unknown env fails here, naming the known ones
    repo = Path(git(Path.cwd(), "rev-parse", "--show-toplevel"))
    state_dir = state_dir if state_dir.is_absolute() else repo / state_dir
    mirror = state_dir / env / "batch" / "git"  # not the daemon's: two fetches must not race
    rev = fetch(mirror, source(repo, remote), branch)
    jobs = select(rendered(mirror, rev, env), env, model)
    if (input_url or output_url) and len(jobs) > 1:
        names = ", ".join(j.model for j in jobs)
        raise SyncError(f"--input/--output name one job's files, but {env} runs {names}: name the MODEL")
    if all(j.placeholder for j in jobs):
        raise SyncError(f"{env}: no batch job to run: {', '.join(j.name for j in jobs)} not promoted yet")
    outcomes = []
    for job in jobs:
        if job.placeholder:  # nothing to score with: what the suspended CronJob does too
            outcomes.append(Outcome(job, note=f"skipped: {job.model} is not promoted in {env} yet"))
            continue
        done = run_job(
            job,
            state_dir / env / "batch",
            input_url=input_url,
            output_url=output_url,
            max_parallel=max_parallel,
            state_dir=state_dir,
        )
        done.note = "suspended in the manifest; run on demand all the same" if job.suspended else ""
        outcomes.append(done)
    return outcomes


def check(outcomes: list[Outcome]) -> None:
    """BatchFailed naming every shard that did not exit 0 (after all of them ended)."""
    failed = [describe(o.job, s) for o in outcomes for s in o.failed]
    if failed:
        raise BatchFailed(f"{len(failed)} shard(s) failed:\n" + "\n".join(failed))


def describe(job: BatchJob, shard: Shard) -> str:
    """One line per shard: exit code, time and log (its last lines when it failed)."""
    where = f"{job.name} shard {shard.index}/{job.completions}"
    if shard.ok:
        return f"{where}: exit 0 in {shard.seconds:.1f} s (log: {shard.log})"
    if shard.exit_code is None:
        return f"{where}: {shard.note} (log: {shard.log})"
    tail = (
        " | ".join(shard.log.read_text(errors="replace").strip().splitlines()[-3:])
        if shard.log.exists()
        else ""
    )
    return f"{where}: exit {shard.exit_code} in {shard.seconds:.1f} s: {tail} (log: {shard.log})"
