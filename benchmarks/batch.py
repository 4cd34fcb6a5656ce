"""Batch scoring benchmark: `modelops-batch` (the engine the CronJob runs) against in-process
`predict_proba` of the same pipeline on the same rows, its memory as inputs grow, and its shards.

One invocation, on the pipeline's real packaged binary model (models/<model>/model, from `dvc
repro`), predictions on one thread everywhere (MODELOPS_THREADS=1, threadpoolctl; the engine reads
and writes in two more threads), rows generated from the model's dataset declaration (the Synthetic
source's generator):

  throughput  --rows rows (1,000,000) in memory as the DataFrame the pipeline was trained on:
              `pipeline.predict_proba(frame)` (the baseline) against `modelops-batch` reading the
              same rows from a file (CSV -> CSV and Parquet -> Parquet), checking every row against
              the declaration and writing id, label, probabilities, version and hash. The engine's
              rows/s is over its scoring time (the manifest's seconds minus load_seconds: reading,
              checking, predicting, writing); the process's wall time, interpreter start and model
              load included, is reported beside it, and so are CPU seconds. Runs alternate A B B A
              (--repeats times); the best of each counts.
  memory      peak RSS of the `modelops-batch` process at --rows and at 10x --rows (same chunk
              size): flat means the ratio stays near 1 (target <= 1.3).
  shards      `--shard i/4` for i = 0..3 over the --rows Parquet file: every id exactly once.

    uv run --frozen python benchmarks/batch.py [--rows 1000000] [--formats csv parquet]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from modelops.declarations import declared, load_dataset
from modelops.pipeline import dataset, ingest
from modelops.workspace import PROJECT_ROOT

GIB = 1 << 30
BATCH = Path(sys.executable).with_name("modelops-batch")
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "batch.json"
# The binary dataset and the model trained on it, as the other benchmarks measure.
DATASET = next(d for d in declared(PROJECT_ROOT) if load_dataset(d, PROJECT_ROOT).task == "binary")


LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=sys.stderr)
_, status, usage = os.wait4(proc.pid, 0)
cpu = usage.ru_utime + usage.ru_stime
print(json.dumps({"wall_s": time.perf_counter() - start, "cpu_s": cpu, "peak_bytes": usage.ru_maxrss * 1024}))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def packaged_model() -> tuple[str, Path]:
    """The name and directory of the first packaged model of DATASET (params.yaml order)."""
    import yaml

    models = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["models"]
    name = next(m for m, spec in models.items() if spec["dataset"] == DATASET)
    path = PROJECT_ROOT / "models" / name / "model"
    if not (path / "declaration.json").is_file():
        raise SystemExit(f"{path}: no packaged model with declaration.json; run `dvc repro package@{name}`")
    return name, path


def write_rows(frame: pd.DataFrame, path: Path, copies: int = 1) -> Path:
    """`frame` `copies` times (ids shifted so every row's id is unique), streamed to CSV or Parquet."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    ids = table.column("id").to_numpy()
    where = table.schema.get_field_index("id")
    writer: Any = None
    for k in range(copies):
        part = table.set_column(where, "id", pa.array(ids + k * len(frame)))
        if writer is None:
            writer = (
                pcsv.CSVWriter(str(path), part.schema)
                if path.suffix == ".csv"
                else pq.ParquetWriter(path, part.schema)
            )
        writer.write_table(part, row_group_size=100_000) if path.suffix == ".parquet" else writer.write_table(
            part
        )
    writer.close()
    return path


def engine(
    model: Path, name: str, source: Path, output: Path, *extra: str, written: Path | None = None
) -> dict[str, Any]:
    """One `modelops-batch` process: its manifest, wall seconds and peak RSS (`written`: the output
    path once {shard} is filled in)."""
    from modelops_serving.integrity import tree_hash

    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")} | {
        "MODELOPS_MODEL_URI": str(model),
        "MODELOPS_EXPECTED_HASH": tree_hash(model),
        "MODELOPS_MODEL_NAME": name,
        "MODELOPS_MODEL_VERSION": "bench",
        "MODELOPS_THREADS": "1",
    }
    args = [str(BATCH), "--input", str(source), "--output", str(output), *extra]
    # Through a small launcher: a child forked from this process (which holds the rows in memory)
    # would be charged this process's pages in its peak RSS until it execs.
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *args], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed:\n{proc.stderr[-3000:]}")
    launched = json.loads(proc.stdout)
    manifest = json.loads(Path(f"{written or output}.success.json").read_text())
    return {"manifest": manifest} | launched


def baseline(pipeline: Any, features: pd.DataFrame) -> tuple[float, float, np.ndarray]:
    """Wall and CPU seconds of in-process predict_proba on one thread, and its output."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        start, cpu = time.perf_counter(), time.process_time()
        proba = pipeline.predict_proba(features)
        return time.perf_counter() - start, time.process_time() - cpu, proba


def throughput(
    rows: int, fmt: str, frame: pd.DataFrame, model: tuple[str, Path], tmp: Path, repeats: int
) -> dict[str, Any]:
    """Engine rows/s against predict_proba's on the same rows (A B B A, `repeats` times; best of each).

    Wall clock is what the target is about; CPU seconds (the engine's process less a 1,000-row run's,
    i.e. less interpreter start and model load) are beside it, since other jobs on a shared machine
    stretch wall time far more than CPU time.
    """
    from modelops_serving.integrity import tree_hash
    from modelops_serving.model import load_model

    name, path = model
    ds = load_dataset(DATASET, PROJECT_ROOT)
    features = dataset.to_features(ds, frame)
    pipeline = load_model(str(path), expected_hash=tree_hash(path), name=name, version="bench").pipeline
    source = write_rows(frame, tmp / f"in-{rows}.{fmt}")
    output = tmp / f"out-{rows}.{fmt}"
    fixed = engine(path, name, write_rows(frame.head(1000), tmp / f"small.{fmt}"), tmp / f"small-out.{fmt}")
    base, runs = [], []
    for variant in ("base", "engine", "engine", "base") * repeats:
        if variant == "base":
            wall, cpu, proba = baseline(pipeline, features)
            base.append((wall, cpu))
        else:
            runs.append(engine(path, name, source, output))
    best = min(runs, key=lambda r: r["manifest"]["seconds"] - r["manifest"]["load_seconds"])
    scoring = best["manifest"]["seconds"] - best["manifest"]["load_seconds"]
    base_wall, base_cpu = min(w for w, _ in base), min(c for _, c in base)
    engine_cpu = min(r["cpu_s"] for r in runs) - fixed["cpu_s"]
    out = pq.read_table(output) if fmt == "parquet" else pcsv.read_csv(output)
    differs = float(
        np.abs(np.column_stack([out["p_" + c].to_numpy() for c in ds.classes or ()]) - proba).max()
    )
    return {
        "format": f"{fmt} -> {fmt}",
        "rows": rows,
        "runs_each": len(runs),
        "baseline_s": round(base_wall, 2),
        "baseline_rows_per_s": round(rows / base_wall),
        "engine_scoring_s": round(scoring, 2),
        "engine_rows_per_s": round(rows / scoring),
        "ratio": round(base_wall / scoring, 3),
        "engine_wall_s": round(best["wall_s"], 2),
        "wall_ratio": round(base_wall / best["wall_s"], 3),
        "engine_load_s": best["manifest"]["load_seconds"],
        "baseline_cpu_s": round(base_cpu, 2),
        "engine_scoring_cpu_s": round(engine_cpu, 2),
        "cpu_ratio": round(base_cpu / engine_cpu, 3),
        "max_abs_difference": differs,
        "input_mb": round(source.stat().st_size / 1e6, 1),
    }


def memory(rows: int, fmt: str, frame: pd.DataFrame, model: tuple[str, Path], tmp: Path) -> dict[str, Any]:
    """Peak RSS of the engine's process at 1x and 10x the rows."""
    name, path = model
    peaks = {}
    for copies in (1, 10):
        source = write_rows(frame, tmp / f"mem-{copies}.{fmt}", copies)
        run = engine(path, name, source, tmp / f"mem-out-{copies}.{fmt}")
        assert run["manifest"]["rows"] == rows * copies
        peaks[copies] = run["peak_bytes"]
        source.unlink()
        (tmp / f"mem-out-{copies}.{fmt}").unlink()
    return {
        "format": f"{fmt} -> {fmt}",
        "rows_1x": rows,
        "peak_1x_gib": round(peaks[1] / GIB, 3),
        "peak_10x_gib": round(peaks[10] / GIB, 3),
        "ratio": round(peaks[10] / peaks[1], 3),
    }


def shards(rows: int, frame: pd.DataFrame, model: tuple[str, Path], tmp: Path) -> dict[str, Any]:
    """Four shards of one Parquet file: each id exactly once over their outputs."""
    name, path = model
    source = write_rows(frame, tmp / "shards.parquet")
    seen: list[np.ndarray] = []
    counts = []
    for index in range(4):
        part_file = tmp / f"part-{index}.parquet"
        run = engine(
            path, name, source, tmp / "part-{shard}.parquet", "--shard", f"{index}/4", written=part_file
        )
        part = pq.read_table(part_file, columns=["id"])["id"].to_numpy()
        counts.append(run["manifest"]["rows"])
        seen.append(part)
    ids = np.concatenate(seen)
    return {
        "rows": rows,
        "shard_rows": counts,
        "every_id_once": bool(
            len(ids) == rows and np.array_equal(np.sort(ids), np.sort(frame["id"].to_numpy()))
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", nargs="+", default=["parquet", "csv"], choices=["parquet", "csv"])
    parser.add_argument("--repeats", type=int, default=2, help="A B B A rounds of the throughput runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    # Other jobs on the machine stretch wall times (more than CPU times): say how busy it was.
    load_before = os.getloadavg()[0]
    model = packaged_model()
    ds = load_dataset(DATASET, PROJECT_ROOT)
    frame = ingest.synthesize(ds, args.rows, seed=1).drop(columns=[ds.target])
    results: dict[str, Any] = {"model": model[0], "throughput": [], "memory": []}
    with tempfile.TemporaryDirectory(prefix="modelops-bench-batch-") as tmp:
        for fmt in args.formats:
            results["throughput"].append(throughput(args.rows, fmt, frame, model, Path(tmp), args.repeats))
            print(json.dumps(results["throughput"][-1]), file=sys.stderr, flush=True)
        for fmt in args.formats:
            results["memory"].append(memory(args.rows, fmt, frame, model, Path(tmp)))
            print(json.dumps(results["memory"][-1]), file=sys.stderr, flush=True)
        results["shards"] = shards(args.rows, frame, model, Path(tmp))
    print(json.dumps(results, indent=2))
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "load_average_1m_at_start": round(load_before, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
