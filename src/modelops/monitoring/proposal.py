"""The pieces of a retraining proposal for one dataset: fetch the snapshot of record, make it the
dataset's declared source, read what dvc.lock says the raw data is, and describe the change.

No dataset or column name lives here: ids, targets, classes and paths come from the declaration.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import yaml

from modelops.changeset import round_trip
from modelops.declarations import DATA_DIR, Dataset, parse_dataset
from modelops.errors import ModelopsError

SNAPSHOT_ENV = "MODELOPS_DATA_SNAPSHOT"
SOURCES = DATA_DIR / "sources"
PLACEHOLDER = "{dataset}"
# GitHub refuses PR bodies over 65,536 characters; the report is cut well before that.
MAX_REASON_CHARS = 50_000
IMAGE_LINE = re.compile(r"^\s*!\[[^\]]*\]\((?![a-z]+://)[^)]*\)\s*$")


class RetrainError(ModelopsError):
    """A retraining proposal cannot be made (snapshot unreadable, pipeline failed); nothing pushed."""

    exit_code = 17


def snapshot_file(dataset: str) -> Path:
    """Where a dataset's snapshot of record lives in the repository (DVC-tracked)."""
    return SOURCES / f"{dataset}.csv"


def snapshot_uri(configured: str, dataset: str) -> str:
    """The snapshot location of one dataset: `{dataset}` in the configured location is its name."""
    return configured.replace(PLACEHOLDER, dataset)


def raw_md5(lock_text: str | None, ds: Dataset) -> str | None:
    """The md5 `dvc.lock` records for the dataset's raw file (None: its ingest has not run yet)."""
    if not lock_text:
        return None
    lock = yaml.safe_load(lock_text) or {}
    stage = (lock.get("stages") or {}).get(f"ingest@{ds.name}") or {}
    for out in stage.get("outs") or []:
        if out.get("path") == str(ds.raw_file):
            return out.get("md5")
    return None


def fetch_snapshot(uri: str, dest: Path) -> None:
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


def point_declaration_at(ds: Dataset, path: Path, root: Path = Path()) -> bool:
    """Make `source: {kind: file, path: <path>}` the dataset's declared source (comments and every
    other key kept); True if the file changed.

    The result is validated before it is written, so a declaration this cannot express stays as it
    was and the error names the file and key.
    """
    rt = round_trip(sequence=2, offset=0)
    file = root / ds.declaration_file
    doc = rt.load(file.read_text())
    wanted = {"kind": "file", "path": str(path)}
    source = doc.get("source")
    if isinstance(source, dict) and dict(source) == wanted:
        return False
    if isinstance(source, dict):
        # Edit the mapping in place: its position, and the comments around it, stay where they were.
        for key in [k for k in source if k not in wanted]:
            del source[key]
        source.update(wanted)
    else:
        doc["source"] = wanted
    out = io.StringIO()
    rt.dump(doc, out)
    parse_dataset(ds.name, yaml.safe_load(out.getvalue()), str(file))  # a DeclarationError names the key
    file.write_text(out.getvalue())
    return True


def _summary(ds: Dataset, frame: pd.DataFrame | None) -> list[tuple[str, str]]:
    """What the target looks like: the positive share, each class's share, or the mean value."""
    present = frame is not None and len(frame) > 0 and ds.target in frame
    if ds.task == "regression":
        mean = f"{pd.to_numeric(frame[ds.target], errors='coerce').mean():,.4g}" if present else "—"
        return [(f"mean `{ds.target}`", mean)]
    labels = frame[ds.target].astype(str) if present else None
    shown = [ds.positive] if ds.task == "binary" else list(ds.classes or ())
    return [(f"share `{c}`", f"{(labels == c).mean():.1%}" if labels is not None else "—") for c in shown]


def data_diff(ds: Dataset, old: pd.DataFrame | None, new: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(what, base, proposed) rows comparing two raw data sets of a dataset by row id."""
    rows = [("rows", f"{len(old):,}" if old is not None else "—", f"{len(new):,}")]
    if old is not None and ds.id in old and ds.id in new:
        old_u, new_u = (f.drop_duplicates(subset=ds.id) for f in (old, new))
        old_ids, new_ids = set(old_u[ds.id]), set(new_u[ds.id])
        both = sorted(old_ids & new_ids)
        columns = [c for c in ds.columns[1:] if c in old_u and c in new_u]
        a = old_u.set_index(ds.id).loc[both, columns]
        b = new_u.set_index(ds.id).loc[both, columns]
        differs = ~((a == b) | (a.isna() & b.isna())).all(axis=1)
        rows += [
            ("rows added (new ids)", "", f"{len(new_ids - old_ids):,}"),
            ("rows removed", "", f"{len(old_ids - new_ids):,}"),
            ("rows changed (same id)", "", f"{int(differs.sum()):,}"),
        ]
    before = dict(_summary(ds, old))
    rows += [(what, before[what], proposed) for what, proposed in _summary(ds, new)]
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


def title(dataset: str, models: list[str], md5: str) -> str:
    """The PR title and commit subject: which models, which dataset, which data."""
    return f"retrain({', '.join(models)}): new {dataset} snapshot {md5[:8]}"


def render_body(
    ds: Dataset,
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
        f"a new snapshot of dataset `{ds.name}` (`{snapshot_file(ds.name)}` from `{snapshot}`, now "
        f"its declared source)"
        if snapshot
        else f"re-ingested data of dataset `{ds.name}` ({source})"
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
