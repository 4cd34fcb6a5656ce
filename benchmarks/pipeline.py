"""Pipeline benchmark: wall time and peak memory of the whole pipeline on the synthetic source,
and what running it through `dvc repro` costs over calling the stage functions directly.

Both variants run in this one invocation, on the same machine state, in fresh scratch repos:
  direct   `modelops run`: every stage in one process (pipeline.run_all), no DVC
  dvc      `dvc repro`: one `modelops <verb>` process per stage, hashing and caching every output
The overhead is dvc / direct (best of --repeats runs each, in ABBA order); the no-op is one more
`dvc repro` with nothing changed. Peak memory is the largest RSS of any process of a run.

    uv run --frozen python benchmarks/pipeline.py [--rows 100000 1000000] [--repeats 2]
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

import yaml
from scratch import pipeline_repo

from modelops.declarations import declared, load_dataset
from modelops.workspace import PROJECT_ROOT, venv_tool

GIB = 1 << 30
# The benchmark has always measured the binary model's pipeline: keep comparing like with like.
BINARY_DATASET = next(d for d in declared(PROJECT_ROOT) if load_dataset(d, PROJECT_ROOT).task == "binary")


def timed(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS in bytes of a command and all its waited-for children."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed in {cwd}:\n{output.decode(errors='replace')[-3000:]}")
    return wall, usage.ru_maxrss * 1024  # Linux reports KiB


def scratch_repo(base: Path, name: str, rows: int) -> Path:
    """A pipeline repo with the shipped binary model alone, on `rows` synthetic rows of its dataset."""
    shipped = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["models"]
    model = next(name for name, spec in shipped.items() if spec["dataset"] == BINARY_DATASET)
    return pipeline_repo(base / name, {model: shipped[model]}, {BINARY_DATASET: rows})


def measure(rows: int, base: Path, repeats: int) -> dict[str, float]:
    """Direct and DVC runs in ABBA order on fresh scratch repos (best of each), then a no-op repro.

    Alternating cancels drift in the machine's load; the best run of each variant is the one
    least disturbed by anything else on the machine.
    """
    runs: dict[str, list[tuple[float, int]]] = {"direct": [], "dvc": []}
    dvc_repo = base
    order = ["direct", "dvc", "dvc", "direct"] * repeats
    for i, kind in enumerate(order[: 2 * repeats]):
        repo = scratch_repo(base, f"{kind}-{rows}-{i}", rows)
        cmd = [venv_tool("modelops"), "run"] if kind == "direct" else [venv_tool("dvc"), "repro"]
        runs[kind].append(timed(cmd, repo))
        dvc_repo = repo if kind == "dvc" else dvc_repo
        print(f"  {kind} run {i}: {runs[kind][-1][0]:.1f}s", file=sys.stderr, flush=True)
    noop_s, _ = timed([venv_tool("dvc"), "repro"], dvc_repo)
    direct_s, dvc_s = min(t for t, _ in runs["direct"]), min(t for t, _ in runs["dvc"])
    return {
        "rows": rows,
        "direct_s": round(direct_s, 1),
        "dvc_s": round(dvc_s, 1),
        "overhead_ratio": round(dvc_s / direct_s, 3),
        "noop_repro_s": round(noop_s, 2),
        "direct_peak_gib": round(max(m for _, m in runs["direct"]) / GIB, 2),
        "dvc_peak_gib": round(max(m for _, m in runs["dvc"]) / GIB, 2),
    }


def main() -> None:
    """Run the sizes asked for and print a markdown table (and JSON with --out)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant (ABBA order)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks/results/pipeline.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="modelops-bench-") as tmp:
        for rows in args.rows:
            results.append(measure(rows, Path(tmp), args.repeats))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    cols = (
        "rows",
        "direct (s)",
        "dvc repro (s)",
        "overhead ratio",
        "no-op repro (s)",
        "peak direct (GiB)",
        "peak dvc (GiB)",
    )
    print("| " + " | ".join(cols) + " |")
    print("|---:" * 7 + "|")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['direct_s']} | {r['dvc_s']} | {r['overhead_ratio']} | "
            f"{r['noop_repro_s']} | {r['direct_peak_gib']} | {r['dvc_peak_gib']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
