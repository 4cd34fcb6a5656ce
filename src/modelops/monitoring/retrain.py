"""Retrain: propose a dataset's new snapshot as a pull request, reviewed like any other model change.

The snapshot of record lives outside the repository (the team's export: a local path or an fsspec
URL, `$MODELOPS_DATA_SNAPSHOT`, where `{dataset}` stands for the dataset's name). For one dataset,
`retrain` copies it to `data/sources/<dataset>.csv`, tracks it with DVC and makes it the dataset's
declared source (`source: {kind: file, path: ...}` in `data/<dataset>/dataset.yaml`), so the
snapshot's bytes are named in git (its `.dvc` md5) and kept in the DVC remote: a clean clone +
`dvc pull` + `dvc repro --force` gives the pull request's `dvc.lock` again. An ingest stage that
read an environment variable could not promise that: the location's content moves, and a clone
would not know where it was.

On a branch from the current commit (`retrain/<dataset>`) it re-runs the dataset's ingest stage; if
the raw data's md5 is what the base already trains on there is nothing to propose (no commit, no
PR). Otherwise it reproduces the pipeline (only that dataset's models change), commits, pushes the
DVC outputs and the branch, and opens or updates that dataset's one retraining PR
(`promote.open_pr`). `model-pr.yml` reports on it and gates it; merging deploys through
`promote.yml`. Which datasets: named (`--dataset`), every declared one, or those of the models a
monitor report (`monitor.json`) found drifting: in their inputs, or in their outcomes (concept
drift: a newer snapshot holds the labels of the world as it is now).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from modelops.config import Params, load_params
from modelops.declarations import Dataset
from modelops.delivery import promote
from modelops.errors import ModelopsError
from modelops.monitoring.proposal import (
    MAX_REASON_CHARS,
    PLACEHOLDER,
    SNAPSHOT_ENV,
    RetrainError,
    data_diff,
    fetch_snapshot,
    point_declaration_at,
    raw_md5,
    reason_text,
    render_body,
    snapshot_file,
    snapshot_uri,
    title,
)
from modelops.pipeline import dataset as data_files
from modelops.workspace import venv_tool

__all__ = [
    "BRANCH",
    "MAX_REASON_CHARS",
    "SNAPSHOT_ENV",
    "NoNewData",
    "Result",
    "RetrainError",
    "choose_datasets",
    "data_diff",
    "fetch_snapshot",
    "point_declaration_at",
    "raw_md5",
    "reason_text",
    "render_body",
    "retrain",
    "retrain_dataset",
    "snapshot_file",
    "title",
]

BRANCH = "retrain/{dataset}"
LOCK_FILE = Path("dvc.lock")


class NoNewData(ModelopsError):
    """The snapshot is the data the base already trains on: there is nothing new to retrain with."""

    exit_code = 18


@dataclass
class Result:
    """What `retrain` did for one dataset: `status` is unchanged, committed, pushed or proposed."""

    dataset: str
    models: list[str]
    status: str
    branch: str
    old_md5: str | None
    new_md5: str
    message: str
    commit: str | None = None
    title: str = ""
    body: str = ""
    pr: str = ""
    reused: bool = False
    diff: list[tuple[str, str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- which datasets


def drifted_models(report: Path) -> list[str]:
    """The models a monitor report (monitor.json) found drifting (input or concept drift)."""
    try:
        doc = json.loads(report.read_text())
        return [m["model"] for m in doc["models"] if m["status"] == "drift"]
    except OSError as exc:
        raise RetrainError(f"--drifted {report}: cannot read it: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise RetrainError(f"--drifted {report}: not a monitor.json report ({exc!r})") from None


def choose_datasets(
    params: Params, named: list[str] | None = None, drifted: Path | None = None, every: bool = False
) -> list[str]:
    """The datasets to retrain, in params order: named, every one, or the drifting models' ones;
    with none of those, the only declared dataset (more than one must be chosen)."""
    declared = list(params.datasets)
    chosen: set[str] = set()
    for name in named or []:
        params.dataset(name)  # a ParamsError names the known ones
        chosen.add(name)
    if drifted is not None:
        models = drifted_models(drifted)
        if not models:
            raise RetrainError(f"--drifted {drifted}: no model drifted in that report; nothing to retrain")
        for model in models:
            try:
                chosen.add(params.model(model).dataset)
            except ModelopsError:
                raise RetrainError(
                    f"--drifted {drifted}: model {model!r} drifted but is not in params.yaml"
                ) from None
    if every:
        chosen.update(declared)
    if not chosen:
        if len(declared) > 1:
            raise RetrainError(
                f"more than one dataset is declared ({', '.join(declared)}): name one with --dataset, "
                "or use --all-datasets, or --drifted monitor/monitor.json"
            )
        chosen.update(declared)
    return [d for d in declared if d in chosen]


# --------------------------------------------------------------------------- one dataset


def _dvc(*args: str) -> None:
    """Run dvc with its output on this process's streams (a failing stage explains itself there)."""
    sys.stdout.flush()
    proc = subprocess.run([venv_tool("dvc"), *args])
    if proc.returncode != 0:
        raise RetrainError(f"dvc {' '.join(args)} failed (exit {proc.returncode}): see its output above")


def _remote_head(branch: str) -> str | None:
    """origin's commit for `branch`, fetched (None when origin has no such branch)."""
    proc = subprocess.run(
        ["git", "fetch", "--quiet", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}"],
        capture_output=True,
        text=True,
    )
    return promote.git("rev-parse", f"origin/{branch}") if proc.returncode == 0 else None


def _proposes(commit: str, base: str, md5: str, ds: Dataset) -> bool:
    """Whether `commit` is a retraining of exactly this data directly on `base`."""
    parent = promote.git("rev-parse", f"{commit}^", check=False)
    lock = promote.git("show", f"{commit}:{LOCK_FILE}", check=False)
    return parent == base and raw_md5(lock, ds) == md5


def _describe_source(ds: Dataset) -> str:
    source = ds.source
    where = getattr(source, "path", None) or getattr(source, "name", None)
    return f"{ds.declaration_file} source: {source.kind}" + (f" {where}" if where else "")


def retrain_dataset(
    params: Params,
    name: str,
    snapshot: str | None = None,
    *,
    reason: Path | None = None,
    branch: str = BRANCH,
    push: bool = False,
    open_pr: bool = False,
) -> Result:
    """Refresh one dataset on its branch; when its data changed, reproduce, commit and (optionally)
    propose it. Returns status "unchanged" when there is nothing new."""
    ds = params.dataset(name)
    models = params.models_of(name)
    branch = branch.replace(PLACEHOLDER, name)
    start = promote.preflight()
    base = promote.git("rev-parse", "HEAD")
    old_md5 = raw_md5(LOCK_FILE.read_text() if LOCK_FILE.exists() else None, ds)
    try:
        old_frame = data_files.read_raw(ds) if old_md5 else None
    except ModelopsError:
        old_frame = None  # main's data was not pulled: the diff shows sizes only
    why = reason_text(reason)
    source = snapshot or _describe_source(ds)
    target = snapshot_file(name)
    created = [p for p in (target, target.with_name(target.name + ".dvc")) if not p.exists()]
    gitignore = target.parent / ".gitignore"
    created += [gitignore] if not gitignore.exists() else []
    before = promote.git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False) or None
    promote.git("checkout", "--quiet", "-B", branch)
    done = False
    try:
        if snapshot:
            fetch_snapshot(snapshot, target)
            point_declaration_at(ds, target)
            _dvc("add", "--quiet", str(target))
        # Re-run ingest against the declared source even when nothing it depends on changed:
        # a refresh must look at the source itself.
        _dvc("repro", "--force", "--single-item", f"ingest@{name}")
        new_md5 = raw_md5(LOCK_FILE.read_text(), ds)
        if new_md5 is None:
            raise RetrainError(f"{LOCK_FILE}: no md5 for {ds.raw_file} after the ingest@{name} stage")
        if new_md5 == old_md5:
            message = (
                f"{name}: no new data: {ds.raw_file} from {source} is what {start} already trains on "
                f"(md5 {new_md5})"
            )
            return Result(name, models, "unchanged", branch, old_md5, new_md5, message)
        subject = title(name, models, new_md5)
        remote = _remote_head(branch) if (push or open_pr) else None
        reused = remote is not None and _proposes(remote, base, new_md5, ds)
        if reused:
            # The open proposal already is this data on this base: keep its commit (no new push, so
            # no needless re-run of the Model PR workflow); only its description is refreshed.
            promote.git("reset", "--quiet", "--hard", remote)
        else:
            # Validates the new data first (a broken export stops here, named); other datasets'
            # stages find their inputs unchanged, so only this dataset's models are retrained.
            _dvc("repro")
            promote.git("add", "--update")
            promote.git("add", "--all", "--", str(target.parent))
            # No `Model:` trailer: promote.yml skips head commits that carry one, and a merged
            # retraining must promote.
            trailers = (
                f"Dataset: {name}\nData-Md5: {new_md5}\nPrevious-Data-Md5: {old_md5 or 'none'}\n"
                f"Data-Source: {source}"
            )
            promote.git("commit", "--quiet", "-m", subject, "-m", trailers)
        diff = data_diff(ds, old_frame, data_files.read_raw(ds))
        body = render_body(ds, models, old_md5, new_md5, snapshot, source, why, diff)
        commit = promote.git("rev-parse", "HEAD")
        status, number = "committed", ""
        if push or open_pr:
            if not reused:
                _dvc("push", "--quiet")
            if open_pr:
                number = promote.open_pr(branch, subject, body)
                status = "proposed"
            else:
                promote.git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}")
                status = "pushed"
        done = True
        message = f"{subject}: {status} on {branch}" + (f" (pull request {number})" if number else "")
        return Result(
            name,
            models,
            status,
            branch,
            old_md5,
            new_md5,
            message,
            commit,
            subject,
            body,
            number,
            reused,
            diff,
        )
    finally:
        _restore(start, branch, created, None if done else before or "")


def _restore(start: str, branch: str, created: list[Path], branch_was: str | None) -> None:
    """Back on the branch the run started from, with the work tree as it was; `branch_was` (unless
    None: keep the new commit) is where `branch` pointed before, "" when it did not exist."""
    promote.git("reset", "--quiet", "--hard")
    promote.git("checkout", "--quiet", start)
    if branch_was == "" and branch != start:
        promote.git("branch", "--quiet", "-D", branch, check=False)
    elif branch_was and branch != start:
        promote.git("branch", "--quiet", "--force", branch, branch_was)
    for path in created:
        path.unlink(missing_ok=True)
    # DVC-tracked files (raw data, models) back to what `start`'s dvc.lock names, where the cache has them.
    with tempfile.TemporaryFile() as sink:
        subprocess.run([venv_tool("dvc"), "checkout", "--quiet"], stdout=sink, stderr=sink)


# --------------------------------------------------------------------------- several datasets


def retrain(
    snapshot: str | None = None,
    *,
    datasets: list[str] | None = None,
    drifted: Path | None = None,
    every: bool = False,
    reason: Path | None = None,
    branch: str = BRANCH,
    push: bool = False,
    open_pr: bool = False,
    require_new_data: bool = False,
) -> list[Result]:
    """Retrain each chosen dataset on its own branch (`{dataset}` in `branch` is its name).

    `snapshot` is the configured location; `{dataset}` in it is replaced per dataset. Without the
    placeholder it can only be one dataset's snapshot. `require_new_data`: after every dataset was
    tried, NoNewData (18) names those whose data did not change.
    """
    params = load_params()
    names = choose_datasets(params, datasets, drifted, every)
    if snapshot and PLACEHOLDER not in snapshot and len(names) > 1:
        raise RetrainError(
            f"{SNAPSHOT_ENV}: {snapshot} names one file, but {len(names)} datasets are to be retrained "
            f"({', '.join(names)}); put {PLACEHOLDER} where the dataset's name goes "
            f"(e.g. s3://exports/{PLACEHOLDER}.csv), or choose one with --dataset"
        )
    if PLACEHOLDER not in branch and len(names) > 1:
        raise RetrainError(f"--branch {branch}: several datasets need {PLACEHOLDER} in the branch name")
    results = []
    for name in names:
        uri = snapshot_uri(snapshot, name) if snapshot else None
        results.append(
            retrain_dataset(params, name, uri, reason=reason, branch=branch, push=push, open_pr=open_pr)
        )
    stale = [r for r in results if r.status == "unchanged"]
    if require_new_data and stale:
        done = [f"  {r.message}" for r in results if r.status != "unchanged"]
        raise NoNewData(
            "no new data to retrain on:\n"
            + "\n".join(f"  {r.message}" for r in stale)
            + f"\nput a newer export at ${SNAPSHOT_ENV}, or revisit the model"
            + ("\nproposed meanwhile:\n" + "\n".join(done) if done else "")
        )
    return results
