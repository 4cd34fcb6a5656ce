"""What `modelops monitor` writes: monitor.md for people, monitor.json for machines, PNG plots, and
drift.prom, the Prometheus textfile the alert rules read (gitops/monitoring/)."""

from __future__ import annotations

import itertools
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelops.config import MonitorParams
from modelops.monitoring import drift
from modelops.monitoring.logs import iso
from modelops.monitoring.verdict import ModelResult
from modelops.pipeline import reference as ref_stats

MONITOR_MD, MONITOR_JSON, PROM_FILE = "monitor.md", "monitor.json", "drift.prom"


def _bin_labels(cuts: list[float]) -> list[str]:
    if not cuts:
        return ["all"]
    inner = [f"{a:.3g} to {b:.3g}" for a, b in itertools.pairwise(cuts)]
    return [f"<{cuts[0]:.3g}", *inner, f"≥{cuts[-1]:.3g}"]


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _plot(path: Path, title: str, stats_: dict[str, Any], values: pd.Series) -> None:
    from modelops.pipeline import plots

    if stats_["kind"] == "numeric":
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
        cur = ref_stats.bin_counts(x[np.isfinite(x)], stats_["cuts"])
        plots.distribution(_bin_labels(stats_["cuts"]), _shares(stats_["counts"]), _shares(cur), title, path)
    else:
        names = list(stats_["counts"])
        present = values[values.notna()].astype(str)
        cur = [int((present == n).sum()) for n in names] + [int((~present.isin(names)).sum())]
        ref = [*stats_["counts"].values(), 0]
        plots.distribution([*names, "(unseen)"], _shares(ref), _shares(cur), title, path)


def render_plots(result: ModelResult, out: Path) -> None:
    """Per compared group: the prediction's score (or value) distribution, the predicted classes
    when they drift, and every drifting feature's distribution."""
    for seen in result.compared:
        group, reference, traffic = seen.group, seen.reference, seen.traffic
        stem = f"{result.model}-{group.content_hash[:12]}"
        label = f"{result.model} {group.version}"
        stats_, what = drift.score_stats(reference)
        name = f"{stem}-prediction.png"
        _plot(out / name, f"{label}: {what}", dict(stats_, kind="numeric"), traffic.score)
        group.plots.append(name)
        for check in group.checks:
            if not check.drift:
                continue
            if check.name == "predicted class" and check.subject == "prediction":
                name = f"{stem}-predicted-class.png"
                classes = {"kind": "categorical", "counts": reference["prediction"]["classes"]}
                _plot(out / name, f"{label}: predicted class", classes, traffic.labels)
            elif check.subject == "feature" and check.name in reference["features"]:
                name = f"{stem}-{check.name}.png"
                _plot(out / name, f"{label}: {check.name}", reference["features"][check.name],
                      traffic.inputs[check.name])  # fmt: skip
            else:
                continue
            group.plots.append(name)


def _num(value: float | None, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def render_markdown(results: list[ModelResult], policy: MonitorParams, idle: list[str] = ()) -> str:
    """monitor.md: verdict first, then per model and version the checks and plots."""
    icon = {"drift": "⚠️", "ok": "✅", "insufficient_data": "⏸️"}
    lines = []
    if not results:
        lines += ["## ⏸️ Nothing was judged: no model is deployed here and none had traffic", ""]
    for r in results:
        lines += [f"## {icon[r.status]} {r.message}", ""]
        learns = f"Dataset `{r.dataset}`; window" if r.dataset else "Window"
        lines += [
            f"{learns} {iso(r.since)} to {iso(r.until)}; logs `{r.records.directory}`; "
            f"{r.rows:,} rows in {r.records.files} files; significance level per check "
            f"{r.level:.2g}.",
            "",
        ]
        if r.records.skipped:
            lines += [f"Skipped {r.records.skipped} unreadable lines, e.g.:", ""]
            lines += [f"- `{s}`" for s in r.records.skip_examples] + [""]
        if r.groups:
            lines += [
                "| version | content hash | deployed now | rows | status | drifting |",
                "|---|---|---|---:|---|---|",
            ]
            for g in r.groups:
                lines.append(
                    f"| {g.version} | `{g.content_hash[:12]}` | {g.role or 'no'} | {g.rows:,} | "
                    f"{g.status.replace('_', ' ')} | {', '.join(g.drifting()) or '—'} |"
                )
            lines.append("")
        for g in r.groups:
            if not g.checks:
                continue
            lines += [
                f"### {r.model} {g.version} (`{g.content_hash[:12]}`)",
                "",
                f"Reference: `{g.reference}` ({g.task}).",
                "",
                "| check | test | statistic | p-value | effect | threshold | drift | note |",
                "|---|---|---:|---:|---:|---:|---|---|",
            ]
            for c in sorted(g.checks, key=lambda c: (not c.drift, c.name)):
                effect = f"{c.effect_name} {_num(c.effect, '.3f')}"
                lines.append(
                    f"| {c.name} | {c.test} | {_num(c.statistic)} | {_num(c.p_value, '.2e')} | "
                    f"{effect} | {c.threshold:g} | {'**yes**' if c.drift else 'no'} | {c.note} |"
                )
            lines.append("")
            lines += [f"![{p}]({p})" for p in g.plots] + [""]
    if idle:
        lines += [
            f"Not deployed in this env and no traffic in the window (not judged): {', '.join(idle)}.",
            "",
        ]
    lines += [
        "A check flags drift when its test is significant at alpha / m "
        f"({policy.alpha:g} / number of checks, Bonferroni) and its effect reaches the threshold "
        "(`monitor:` in params.yaml): PSI on the reference's quantile bins, KS against its sample for "
        "numbers (and the prediction's score or value), chi-square for categories and predicted "
        "classes, Fisher's test for missing rates.",
        "",
    ]
    return "\n".join(lines)


def to_json(results: list[ModelResult], policy: MonitorParams, idle: list[str] = ()) -> dict[str, Any]:
    """monitor.json: everything monitor.md shows, for machines."""
    statuses = [r.status for r in results] or ["insufficient_data"]
    overall = (
        "drift" if "drift" in statuses else "insufficient_data" if "insufficient_data" in statuses else "ok"
    )
    return {
        "status": overall,
        "policy": policy.model_dump(),
        "idle": list(idle),
        "models": [
            {
                "model": r.model,
                "dataset": r.dataset or None,
                "env": r.env,
                "status": r.status,
                "message": r.message,
                "window": {"since": iso(r.since), "until": iso(r.until)},
                "log_dir": str(r.records.directory),
                "rows": r.rows,
                "files": r.records.files,
                "skipped_lines": r.records.skipped,
                "skipped_examples": r.records.skip_examples,
                "significance_level": r.level,
                "drift_score": r.score(),
                "groups": [
                    {
                        "content_hash": g.content_hash,
                        "versions": g.versions,
                        "deployed": g.role or None,
                        "rows": g.rows,
                        "status": g.status,
                        "task": g.task or None,
                        "reference": g.reference or None,
                        "drift_score": g.score(),
                        "drifting": g.drifting(),
                        "checks": [c.as_dict() for c in g.checks],
                        "plots": g.plots,
                    }
                    for g in r.groups
                ],
            }
            for r in results
        ],
    }


PROM_HELP = {
    "modelops_drift_score": "Largest per-feature PSI in the last monitor window (NaN: not judged).",
    "modelops_drift_detected": "1 when the last monitor run found drift, else 0.",
    "modelops_monitor_last_run_timestamp_seconds": "When monitor last ran (Unix time).",
    "modelops_monitor_window_rows": "Logged rows of the model in the last monitor window.",
}


def render_prom(results: list[ModelResult], now: datetime) -> str:
    """drift.prom for node_exporter's textfile collector: one series per (model, env)."""
    values: dict[str, list[tuple[str, float]]] = {name: [] for name in PROM_HELP}
    for r in results:
        labels = f'model="{r.model}",env="{r.env}"'
        score = r.score()
        values["modelops_drift_score"].append((labels, math.nan if score is None else score))
        values["modelops_drift_detected"].append((labels, 1.0 if r.status == "drift" else 0.0))
        values["modelops_monitor_last_run_timestamp_seconds"].append((labels, now.timestamp()))
        values["modelops_monitor_window_rows"].append((labels, float(r.rows)))
    lines = []
    for name, series in values.items():
        lines += [f"# HELP {name} {PROM_HELP[name]}", f"# TYPE {name} gauge"]
        lines += [f"{name}{{{labels}}} {_prom_value(v)}" for labels, v in series]
    return "\n".join(lines) + "\n"


def _prom_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    return str(int(v)) if v.is_integer() else f"{v:.6g}" if v < 1e9 else f"{v:.3f}"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)  # the textfile collector must never read a half-written file


def write(
    results: list[ModelResult], out: Path, policy: MonitorParams, now: datetime, idle: list[str] = ()
) -> None:
    """Write monitor.md, monitor.json, the PNGs and drift.prom into `out`; `idle` models (not
    deployed, no traffic) are listed as not judged."""
    out.mkdir(parents=True, exist_ok=True)
    for r in results:
        render_plots(r, out)
    _write(out / MONITOR_JSON, json.dumps(to_json(results, policy, idle), indent=2, sort_keys=True) + "\n")
    _write(out / MONITOR_MD, render_markdown(results, policy, idle))
    _write(out / PROM_FILE, render_prom(results, now))
