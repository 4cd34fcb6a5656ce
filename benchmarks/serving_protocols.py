"""V2 against Seldon v1 on one server, beside the HTTP floor, repeated: the ratios of issue 15.

One modelops server (default settings: batching, hash check, metrics, the 10% inference log) and the
HTTP floor (http_floor.py: the same uvicorn, uvloop and httptools, reading the body and answering a
fixed JSON) are both up and pinned to the same CPU; wrk runs on the other. Every round runs each
cell once, in three groups whose order rotates from round to round:

  floor   the v1 single-row body, c=16
  v1, v2  1 row, c=16          (back to back, v1 first in even rounds, V2 first in odd ones)
  v1, v2  1,000 rows, c=1      (the same)

A V2/v1 pair is measured seconds apart, not up to four cells apart, and each protocol goes first as
often as the other: a shared machine's speed moves 15-25% over a minute here, and the ratio of a
pair measured back to back sees little of it.

Reported per cell: min / median / max over the rounds of req/s, rows/s and p99. Ratios: V2 over v1
per round's pair (the headline is their median) and of the cells' medians (single-row req/s,
single-row p99, 1,000-row rows/s); the share of the floor (single-row req/s over the floor's, v1
and V2); rounds with p99 <= 10 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from serving_kit import (
    BATCH_ROWS,
    MODEL_NAME,
    Scenario,
    Server,
    check_answer,
    free_port,
    modelops_env,
    running,
    seldon_v1_body,
    seldon_v1_probs,
    v2_columns_body,
    v2_probs,
    wrk_cell,
)

FLOOR_APP = Path(__file__).resolve().with_name("http_floor.py")
P99_TARGET_MS = 10.0
SINGLE = Scenario("1 row, c=16", 1, 16)
BATCH = Scenario(f"{BATCH_ROWS} rows, c=1", BATCH_ROWS, 1)
# (cell key, server key, scenario), in groups: a pair's two cells always run back to back
GROUPS = (
    (("floor", "floor", SINGLE),),
    (("v1 1 row", "v1", SINGLE), ("v2 1 row", "v2", SINGLE)),
    ((f"v1 {BATCH_ROWS} rows", "v1", BATCH), (f"v2 {BATCH_ROWS} rows", "v2", BATCH)),
)
CELLS = tuple(cell for group in GROUPS for cell in group)


def round_order(r: int) -> list[tuple[str, str, Scenario]]:
    """Round r's cells: the groups rotated by r, each pair in turn v1 first (even r) or V2 first."""
    shift = r % len(GROUPS)
    groups = GROUPS[shift:] + GROUPS[:shift]
    return [cell for group in groups for cell in (group if r % 2 == 0 else group[::-1])]


def targets(port: int, floor_port: int) -> dict[str, Server]:
    """The one model server as a v1 and as a V2 target, and the floor (sent the v1 body)."""
    base = f"http://127.0.0.1:{port}"
    ready = f"{base}/v2/health/ready"
    cmd = [sys.executable, "-m", "modelops_serving"]
    env = modelops_env(port)
    v1 = Server("v1", cmd, env, ready, f"{base}/api/v1.0/predictions", seldon_v1_body, seldon_v1_probs)
    v2 = Server("v2", cmd, env, ready, f"{base}/v2/models/{MODEL_NAME}/infer", v2_columns_body, v2_probs)
    floor_url = f"http://127.0.0.1:{floor_port}/"
    floor = Server(
        "floor",
        [sys.executable, str(FLOOR_APP), str(floor_port)],
        {},
        floor_url,
        floor_url,
        seldon_v1_body,
        None,
    )
    return {"v1": v1, "v2": v2, "floor": floor}


def measure_protocols(
    rows: pd.DataFrame, expected: np.ndarray, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """--rounds rounds of every cell against one server and the floor; the spread and the ratios."""
    load_start = os.getloadavg()
    servers = targets(free_port(), free_port())
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in CELLS}
    with running(servers["v1"], work / "logs", args.pin), running(servers["floor"], work / "logs", args.pin):
        parity = max(check_answer(servers[p], rows, expected) for p in ("v1", "v2"))
        for r in range(args.rounds):
            for key, target, scenario in round_order(r):
                runs[key].append(wrk_cell(servers[target], scenario, rows, work, args))
    return summary(runs, parity, load_start, os.getloadavg(), args)


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def summary(
    runs: dict[str, list[dict[str, Any]]],
    parity: float,
    load_start: tuple[float, ...],
    load_end: tuple[float, ...],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Per cell spreads, the ratios of the medians and per round, and the p99 target count."""
    cells = {
        key: {
            "requests_per_s": spread([r["requests_per_s"] for r in rs]),
            "rows_per_s": spread([r["rows_per_s"] for r in rs]),
            "p99_ms": spread([r["p99_ms"] for r in rs]),
            "p50_ms_median": statistics.median(r["p50_ms"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
        }
        for key, rs in runs.items()
    }

    def ratio(a: str, b: str, what: str) -> dict[str, float]:
        per_round = [x[what] / y[what] for x, y in zip(runs[a], runs[b], strict=True) if y[what]]
        medians = cells[a][what]["median"] / cells[b][what]["median"]
        return {k: round(v, 3) for k, v in spread(per_round).items()} | {"of_medians": round(medians, 3)}

    single_p99 = {p: [r["p99_ms"] for r in runs[f"{p} 1 row"]] for p in ("v1", "v2")}
    single = "v2_vs_v1_single_row_requests_per_s (target >= 0.9)"
    return {
        "rounds": args.rounds,
        "duration_s_per_run": args.duration,
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
        "max_abs_diff_vs_in_process": parity,
        "cells": cells,
        "ratios": {
            single: ratio("v2 1 row", "v1 1 row", "requests_per_s"),
            "v2_vs_v1_single_row_p99": ratio("v2 1 row", "v1 1 row", "p99_ms"),
            f"v2_vs_v1_{BATCH_ROWS}_rows_rows_per_s (target >= 0.9)": ratio(
                f"v2 {BATCH_ROWS} rows", f"v1 {BATCH_ROWS} rows", "rows_per_s"
            ),
            "v1_share_of_floor (aim >= 0.3)": ratio("v1 1 row", "floor", "requests_per_s"),
            "v2_share_of_floor (aim >= 0.3)": ratio("v2 1 row", "floor", "requests_per_s"),
        },
        f"single_row_runs_with_p99_le_{P99_TARGET_MS:g}_ms (target >= 4 of 5)": {
            p: f"{sum(v <= P99_TARGET_MS for v in vs)}/{len(vs)}" for p, vs in single_p99.items()
        },
        "runs": runs,
    }


def markdown(result: dict[str, Any]) -> str:
    """The spread table and the ratios, as docs/benchmarks.md shows them."""
    lines = [
        f"{result['rounds']} rounds of {result['duration_s_per_run']} s; load average at the start "
        f"{result['load_average_start']}, at the end {result['load_average_end']}",
        "",
        "| cell | req/s min / median / max | rows/s median | p99 ms min / median / max | p50 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, c in result["cells"].items():
        rps, p99 = c["requests_per_s"], c["p99_ms"]
        lines.append(
            f"| {key} | {rps['min']:,.0f} / **{rps['median']:,.0f}** / {rps['max']:,.0f} "
            f"| {c['rows_per_s']['median']:,.0f} | {p99['min']} / **{p99['median']}** / {p99['max']} "
            f"| {c['p50_ms_median']} | {c['errors']} |"
        )
    lines.append("")
    for key, r in result["ratios"].items():
        lines.append(
            f"- {key}: **{r['median']}** (median of the rounds' pairs; per round {r['min']} to {r['max']}; "
            f"of the cells' medians {r['of_medians']})"
        )
    for key, counts in result.items():
        if key.startswith("single_row_runs_with_p99"):
            lines.append(f"- {key}: v1 {counts['v1']}, V2 {counts['v2']}")
    return "\n".join(lines)
