"""`modelops monitor --batch-input IN --batch-output OUT`: has the file a batch job scored drifted from
what the model that scored it learned?

The input (CSV or Parquet, a path or an fsspec URL) is judged exactly like a window of the
inference log, by `verdict.judge` and `drift`: its rows against the ``reference.json`` of the model
content that scored them. Which content: the output's success manifest (``<output>.success.json``,
written last by ``modelops-batch``), else the output's own ``model_version`` / ``content_hash``
columns. Each row's prediction (the output joined to the input by id) is judged too, so a sharded
job's output judges the input rows of its shard. A large input is sampled, seeded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from modelops_serving.batch_output import manifest_url

from modelops.config import Params
from modelops.monitoring.logs import HASH, MonitorError, Records, parse_time
from modelops.monitoring.render import write
from modelops.monitoring.verdict import ModelResult, deployed, judge

VERSION, CONTENT_HASH, PREDICTION, PROBABILITY = "model_version", "content_hash", "prediction", "p_"
SAMPLE = 50_000  # rows judged at most: the checks' power is long saturated, their cost is not


def read_table(url: str) -> pd.DataFrame:
    """A CSV or Parquet file (by suffix), local or fsspec; errors name the file."""
    suffix = Path(url.split("?")[0]).suffix.lower()
    readers = {".csv": pd.read_csv, ".parquet": pd.read_parquet}
    if suffix not in readers:
        raise MonitorError(f"{url}: expected a .csv or .parquet file")
    try:
        return readers[suffix](url)
    except FileNotFoundError:
        raise MonitorError(f"{url}: not found") from None
    except Exception as exc:  # parsers and storage backends raise many types
        raise MonitorError(f"{url}: cannot be read as {suffix[1:]}: {type(exc).__name__}: {exc}") from None


def scored_by(output: str, scores: pd.DataFrame) -> dict[str, Any]:
    """{"name", "version", "content_hash", "started_at", "finished_at"} of the run that wrote `output`:
    its success manifest, else the output's own version and hash columns (then one content only)."""
    path = manifest_url(output)
    try:
        import fsspec

        with fsspec.open(path, "rt") as fh:
            manifest = json.load(fh)
        model = manifest["model"]
        found = {
            "name": model.get("name"),
            "version": str(model["version"]),
            "content_hash": model["content_hash"],
        }
        return found | {k: manifest.get(k) for k in ("started_at", "finished_at")}
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as exc:
        raise MonitorError(
            f"{path}: not a success manifest of modelops-batch ({type(exc).__name__}: {exc})"
        ) from None
    if CONTENT_HASH not in scores or VERSION not in scores:
        raise MonitorError(
            f"{output}: no success manifest ({path}) and no {VERSION}/{CONTENT_HASH} columns: "
            "cannot tell which model scored it"
        )
    contents = scores[[VERSION, CONTENT_HASH]].drop_duplicates()
    if len(contents) != 1:
        raise MonitorError(f"{output}: scored by {len(contents)} model contents; judge one output at a time")
    version, digest = contents.iloc[0]
    return {"name": None, "version": str(version), "content_hash": str(digest)}


def records(inputs: pd.DataFrame, scores: pd.DataFrame, model: str, version: str, digest: str) -> list[dict]:
    """The input rows joined to their scores by id, as the inference log's records."""
    id_column = str(scores.columns[0])  # the engine writes the id first
    if id_column not in inputs:
        raise MonitorError(f"the input has no column {id_column!r}, the id of the output's rows")
    extra = [c for c in scores.columns if c == PREDICTION or c.startswith(PROBABILITY)]
    # ids as text on both sides: a CSV reads `7` as a number, the engine may have written "7"
    keyed = scores[[id_column, *extra]].assign(**{id_column: scores[id_column].astype(str)})
    inputs = inputs.assign(**{id_column: inputs[id_column].astype(str)})
    joined = inputs.merge(keyed, on=id_column, how="inner", suffixes=("", " (scored)"))
    features = [c for c in inputs.columns if c != id_column]
    classes = {c: c.removeprefix(PROBABILITY) for c in extra if c.startswith(PROBABILITY)}
    rows = []
    for row in joined.to_dict("records"):
        rec = {"model": model, "version": version, "hash": digest, "inputs": {f: row[f] for f in features}}
        if PREDICTION in row:
            rec["prediction"] = row[PREDICTION]
        if classes:
            rec["probabilities"] = {name: row[c] for c, name in classes.items()}
        rows.append(rec)
    return rows


def run(
    input_url: str,
    output_url: str,
    params: Params,
    out: Path,
    *,
    model: str | None = None,
    env: str | None = None,
    store: str | None = None,
    sample: int = SAMPLE,
    now: datetime | None = None,
) -> list[ModelResult]:
    """Judge one batch input against the reference of the model content that scored it; write the
    report like `monitor` does and return the result."""
    scores = read_table(output_url)
    run_of = scored_by(output_url, scores)
    name = model or run_of["name"]
    if name is None:
        raise MonitorError(f"{output_url}: the output does not name its model: pass --model")
    if run_of["name"] and model and run_of["name"] != model:
        raise MonitorError(f"{output_url} was scored by {run_of['name']}, not {model}")
    params.model(name)  # an unknown model fails here, naming the known ones
    if not HASH.match(run_of["content_hash"]):
        raise MonitorError(f"{output_url}: content hash {run_of['content_hash']!r} is not a sha256")
    inputs = read_table(input_url)
    if len(inputs) > sample:
        inputs = inputs.sample(n=sample, random_state=0)
    rows = records(inputs, scores, name, run_of["version"], run_of["content_hash"])
    now = now or datetime.now(UTC)
    since, until = (parse_time(run_of[k]) if run_of.get(k) else now for k in ("started_at", "finished_at"))
    roles = deployed(env, name) if env else {}
    found = Records(Path(input_url), rows=rows, files=1)
    result = judge(name, env or "batch", found, roles, since, until, params.monitor, store)
    result.dataset = params.model(name).dataset
    write([result], out, params.monitor, now)
    return [result]


def command(
    input_url: str | None,
    output_url: str | None,
    params: Params,
    out: Path,
    *,
    model: list[str] | None,
    env: str | None,
    store: str | None,
    now: datetime,
) -> None:
    """`monitor --batch-input`: run, print where the report is, exit 12 on drift and 15 on too few rows."""
    from modelops import progress
    from modelops.monitoring.render import MONITOR_JSON, MONITOR_MD, PROM_FILE
    from modelops.monitoring.verdict import enforce

    if not (input_url and output_url) or (model and len(model) > 1):
        raise MonitorError("--batch-input and --batch-output go together, with at most one --model")
    with progress.step(f"monitor batch input {input_url}"):
        results = run(
            input_url,
            output_url,
            params,
            out,
            model=model[0] if model else None,
            env=env,
            store=store,
            now=now,
        )
    print(results[0].message)
    print(f"{out / MONITOR_MD}, {out / MONITOR_JSON}, {out / PROM_FILE}")
    enforce(results)
