"""Retrain: propose a new data snapshot as a pull request, reviewed like any other model change.

The snapshot of record lives outside the repository (the team's export: a local path or an fsspec
URL, `$MODELOPS_DATA_SNAPSHOT`). `retrain` copies it to `data/sources/snapshot.csv`, tracks it with
DVC and points `params.yaml` at it (`data.source: file`), so the snapshot's bytes are named in git
(its `.dvc` md5) and kept in the DVC remote: a clean clone + `dvc pull` + `dvc repro --force` gives
the pull request's `dvc.lock` again. An ingest stage that read an environment variable could not
promise that: the location's content moves, and a clone would not know where it was.

On a branch from the current commit it re-runs the ingest stage; if the raw data's md5 is what the
base already trains on there is nothing to propose (no commit, no PR). Otherwise it reproduces the
pipeline, commits params, `dvc.lock` and the git-tracked outputs, pushes the DVC outputs and the
branch, and opens or updates the one retraining PR (`promote.open_pr`). `model-pr.yml` then reports
on it and gates it; merging deploys through `promote.yml` like any other merge.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from ruamel.yaml import YAML

from modelops.config import PARAMS_FILE, parse_params
from modelops.delivery import promote
from modelops.errors import ModelopsError
from modelops.pipeline import dataset
from modelops.workspace import venv_tool

SNAPSHOT_ENV = "MODELOPS_DATA_SNAPSHOT"
SNAPSHOT_FILE = Path("data/sources/snapshot.csv")
BRANCH = "retrain/data"
LOCK_FILE = Path("dvc.lock")
# GitHub refuses PR bodies over 65,536 characters; the report is cut well before that.
MAX_REASON_CHARS = 50_000
IMAGE_LINE = re.compile(r"^\s*!\[[^\]]*\]\((?![a-z]+://)[^)]*\)\s*$")


class RetrainError(ModelopsError):
    """A retraining proposal cannot be made (snapshot unreadable, pipeline failed); nothing pushed."""

    exit_code = 17


class NoNewData(ModelopsError):
    """The snapshot is the data the base already trains on: there is nothing new to retrain with."""

    exit_code = 18


@dataclass
class Result:
    """What `retrain` did: `status` is unchanged, committed, pushed or proposed."""

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


# --------------------------------------------------------------------------- pieces


def raw_md5(lock_text: str | None) -> str | None:
    """The md5 `dvc.lock` records for the ingest stage's raw data file (None: not reproduced yet)."""
    if not lock_text:
        return None
    lock = yaml.safe_load(lock_text) or {}
    for out in (lock.get("stages", {}).get("ingest", {}) or {}).get("outs", []) or []:
        if out.get("path") == str(dataset.RAW_FILE):
            return out.get("md5")
    return None


def fetch_snapshot(uri: str, dest: Path = SNAPSHOT_FILE) -> None:
    """Copy the snapshot at `uri` (a path or an fsspec URL) to `dest`, whole or not at all."""
    import fsspec

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        with fsspec.open(uri, "rb") as src, tmp.open("wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    except FileNotFoundError:
        tmp.unlink(missing_ok=True)
        raise RetrainError(f"{SNAPSHOT_ENV}: no data snapshot at {uri}") from None
    except Exception as exc:  # credentials, network, unknown protocol: the backends raise many types
        tmp.unlink(missing_ok=True)
        raise RetrainError(f"{SNAPSHOT_ENV}: cannot read {uri}: {type(exc).__name__}: {exc}") from None
    if tmp.stat().st_size == 0:
        tmp.unlink()
        raise RetrainError(f"{SNAPSHOT_ENV}: the data snapshot at {uri} is empty (0 bytes)")
    tmp.replace(dest)


def point_params_at(path: Path, params_file: Path = Path(PARAMS_FILE)) -> bool:
    """Set `data.source: file` and `data.path: <path>` (comments kept); True if the file changed.

    The result is validated before it is written, so a params file this cannot express stays as it was.
    """
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=2, offset=0)
    text = params_file.read_text()
    doc = rt.load(text)
    if doc.get("data") is None:
        doc["data"] = {}
    data = doc["data"]
    if data.get("source") == "file" and data.get("path") == str(path):
        return False
    data["source"] = "file"
    if "path" in data:
        data["path"] = str(path)
    else:
        data.insert(list(data).index("source") + 1, "path", str(path))
    out = io.StringIO()
    rt.dump(doc, out)
    parse_params(yaml.safe_load(out.getvalue()), str(params_file))  # a ParamsError names the key
    params_file.write_text(out.getvalue())
    return True


def data_diff(old: pd.DataFrame | None, new: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(what, base, proposed) rows comparing two raw data sets by row id."""
    rows = [("rows", f"{len(old):,}" if old is not None else "—", f"{len(new):,}")]
    if old is not None:
        old, new = (f.drop_duplicates(subset=dataset.ID) for f in (old, new))
        old_ids, new_ids = set(old[dataset.ID]), set(new[dataset.ID])
        both = sorted(old_ids & new_ids)
        a = old.set_index(dataset.ID).loc[both, list(dataset.COLUMNS[1:])]
        b = new.set_index(dataset.ID).loc[both, list(dataset.COLUMNS[1:])]
        differs = ~((a == b) | (a.isna() & b.isna())).all(axis=1)
        rows += [
            ("rows added (new ids)", "", f"{len(new_ids - old_ids):,}"),
            ("rows removed", "", f"{len(old_ids - new_ids):,}"),
            ("rows changed (same id)", "", f"{int(differs.sum()):,}"),
        ]

    def share(frame: pd.DataFrame | None) -> str:
        if frame is None or not len(frame):
            return "—"
        return f"{(frame[dataset.TARGET] == dataset.POSITIVE).mean():.1%}"

    rows.append((f"share `{dataset.POSITIVE}`", share(old), share(new)))
    return rows


def reason_text(path: Path | None) -> str:
    """The reason's markdown for a PR body: image lines dropped (their files are not in the PR)."""
    if path is None:
        return "Scheduled data refresh: the snapshot of record differs from the data on main."
    try:
        text = path.read_text()
    except OSError as exc:
        raise RetrainError(f"--reason {path}: cannot read it: {exc.strerror}") from None
    kept = [line for line in text.splitlines() if not IMAGE_LINE.match(line)]
    text = "\n".join(kept).strip()
    if len(text) > MAX_REASON_CHARS:
        text = (
            text[:MAX_REASON_CHARS].rsplit("\n", 1)[0]
            + "\n\n… (cut: the whole report is in the run's artifacts)"
        )
    return text


def render_body(
    models: list[str],
    old_md5: str | None,
    new_md5: str,
    snapshot: str | None,
    source: str,
    reason: str,
    diff: list[tuple[str, str, str]],
) -> str:
    """The PR description: what changed in the data, why this was proposed, what happens next."""
    where = (
        f"a new data snapshot (`{SNAPSHOT_FILE}` from `{snapshot}`)"
        if snapshot
        else f"re-ingested data ({source})"
    )
    table = ["| data | main | this PR |", "|---|---:|---:|"]
    table += [f"| {what} | {base} | {proposed} |" for what, base, proposed in diff]
    table.append(f"| raw md5 | `{(old_md5 or '—')[:12]}` | `{new_md5[:12]}` |")
    return "\n".join(
        [
            f"Retrains {', '.join(models)} on {where}.",
            "The Model PR workflow reproduces the pipeline here and reports against production; "
            "merging deploys like any other model change.",
            "",
            *table,
            "",
            "## Why",
            "",
            reason,
            "",
        ]
    )


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


def _proposes(commit: str, base: str, md5: str) -> bool:
    """Whether `commit` is a retraining of exactly this data directly on `base`."""
    parent = promote.git("rev-parse", f"{commit}^", check=False)
    lock = promote.git("show", f"{commit}:{LOCK_FILE}", check=False)
    return parent == base and raw_md5(lock) == md5


# --------------------------------------------------------------------------- retrain


def retrain(
    snapshot: str | None = None,
    *,
    reason: Path | None = None,
    branch: str = BRANCH,
    push: bool = False,
    open_pr: bool = False,
    require_new_data: bool = False,
) -> Result:
    """Refresh the data on `branch`; when it changed, reproduce, commit and (optionally) propose it."""
    from modelops.config import load_params

    params = load_params()
    models = list(params.models)
    start = promote.preflight()
    base = promote.git("rev-parse", "HEAD")
    old_md5 = raw_md5(LOCK_FILE.read_text() if LOCK_FILE.exists() else None)
    try:
        old_frame = dataset.read_raw() if old_md5 else None
    except ModelopsError:
        old_frame = None  # main's data was not pulled: the diff shows sizes only
    why = reason_text(reason)
    source = snapshot or f"data.source {params.data.source}" + (
        f" ({params.data.path})" if params.data.path else ""
    )
    created = [
        p for p in (SNAPSHOT_FILE, SNAPSHOT_FILE.with_name(SNAPSHOT_FILE.name + ".dvc")) if not p.exists()
    ]
    gitignore = SNAPSHOT_FILE.parent / ".gitignore"
    created += [gitignore] if not gitignore.exists() else []
    before = promote.git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False) or None
    promote.git("checkout", "--quiet", "-B", branch)
    done = False
    try:
        if snapshot:
            fetch_snapshot(snapshot)
            point_params_at(SNAPSHOT_FILE)
            _dvc("add", "--quiet", str(SNAPSHOT_FILE))
        # Re-run ingest against the configured source even when nothing it depends on changed:
        # a refresh must look at the source itself.
        _dvc("repro", "--force", "--single-item", "ingest")
        new_md5 = raw_md5(LOCK_FILE.read_text())
        if new_md5 is None:
            raise RetrainError(f"{LOCK_FILE}: no md5 for {dataset.RAW_FILE} after the ingest stage")
        if new_md5 == old_md5:
            message = f"no new data: {dataset.RAW_FILE} is what {start} already trains on (md5 {new_md5})"
            if require_new_data:
                raise NoNewData(
                    f"no new data to retrain on: {dataset.RAW_FILE} from {source} is what {start} already "
                    f"trains on (md5 {new_md5}); put a newer export at ${SNAPSHOT_ENV}, or revisit the model"
                )
            return Result("unchanged", branch, old_md5, new_md5, message)
        title = f"retrain({', '.join(models)}): new data snapshot {new_md5[:8]}"
        remote = _remote_head(branch) if (push or open_pr) else None
        reused = remote is not None and _proposes(remote, base, new_md5)
        if reused:
            # The open proposal already is this data on this base: keep its commit (no new push, so
            # no needless re-run of the Model PR workflow); only its description is refreshed.
            promote.git("reset", "--quiet", "--hard", remote)
        else:
            _dvc("repro")  # validates the new data first: a broken export stops here, named
            promote.git("add", "--update")
            promote.git("add", "--all", "--", str(SNAPSHOT_FILE.parent))
            # No `Model:` trailer: promote.yml skips head commits that carry one, and a merged
            # retraining must promote.
            trailers = f"Data-Md5: {new_md5}\nPrevious-Data-Md5: {old_md5 or 'none'}\nData-Source: {source}"
            promote.git("commit", "--quiet", "-m", title, "-m", trailers)
        diff = data_diff(old_frame, dataset.read_raw())
        body = render_body(models, old_md5, new_md5, snapshot, source, why, diff)
        commit = promote.git("rev-parse", "HEAD")
        status, number = "committed", ""
        if push or open_pr:
            if not reused:
                _dvc("push", "--quiet")
            if open_pr:
                number = promote.open_pr(branch, title, body)
                status = "proposed"
            else:
                promote.git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}")
                status = "pushed"
        done = True
        message = f"{title}: {status} on {branch}" + (f" (pull request {number})" if number else "")
        return Result(status, branch, old_md5, new_md5, message, commit, title, body, number, reused, diff)
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
