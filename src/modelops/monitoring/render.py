"""What `modelops monitor` writes: monitor.md for people, monitor.json for machines, PNG plots, and
drift.prom, the Prometheus textfile the alert rules read (gitops/monitoring/): input drift per
model, online metrics and concept drift per model version."""

from __future__ import annotations

import itertools
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelops.monitoring import drift
from modelops.monitoring.logs import iso
from modelops.monitoring.outcomes import Online
from modelops.monitoring.verdict import ModelResult
from modelops.params_after import MonitorParams
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
        lines += _outcomes_markdown(r)
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
    if any(r.feedback and r.feedback.rows for r in results):
        lines += [
            "A version has concept drift when its headline metric online (binary ROC AUC, "
            "multiclass accuracy, regression R²; seeded bootstrap interval at 1 - "
            f"{policy.alpha:g} / number of versions judged, Bonferroni) lies wholly below the value "
            "its reference records for the test split and the drop is at least "
            f"{policy.max_metric_drop:g}; fewer than {policy.min_outcomes} outcomes are not judged.",
            "",
        ]
    return "\n".join(lines)


def _interval(i: Any) -> str:
    return f"{i.value:.4f} [{i.low:.4f}, {i.high:.4f}]"


def _concept(online: Online) -> str:
    return {"drift": "**yes**", "ok": "no"}.get(online.status, "insufficient data")


CONCEPT_SUMMARY = {
    "drift": "**concept drift**",
    "ok": "no concept drift",
    "insufficient_data": "not every deployed version has enough outcomes to judge",
    "none": "no outcomes to judge",
}


def _outcomes_markdown(r: ModelResult) -> list[str]:
    """The outcomes section of one model: per version the headline metric online against its test
    value and the verdict, then every metric with its interval."""
    fb = r.feedback
    if fb is None or not (fb.rows or fb.records.skipped):
        return []
    scored = [g for g in r.groups if g.online]
    lines = [
        f"### {r.model}: outcomes (ground truth)",
        "",
        f"{len(fb.rows):,} outcomes in {fb.records.files} files of `{fb.records.directory}`"
        + (f" ({fb.duplicates} repeated outcomes counted once)" if fb.duplicates else "")
        + f"; intervals at level {r.outcome_level:.4g}; {CONCEPT_SUMMARY[r.concept]}.",
        "",
    ]
    if fb.records.skipped:
        lines += [f"Skipped {fb.records.skipped} unreadable lines, e.g.:", ""]
        lines += [f"- `{s}`" for s in fb.records.skip_examples] + [""]
    if scored:
        lines += [
            "| version | content hash | outcomes | metric | online [interval] | test split | drop "
            "| concept drift | note |",
            "|---|---|---:|---|---|---:|---:|---|---|",
        ]
        for g in scored:
            o = g.online
            online = _interval(o.online) if o.online else "—"
            lines.append(
                f"| {g.version} | `{g.content_hash[:12]}` | {o.outcomes:,} | {o.metric or '—'} | {online} | "
                f"{_num(o.test)} | {_num(o.drop(), '.4f')} | {_concept(o)} | {o.note} |"
            )
        lines.append("")
        detailed = [g for g in scored if g.online.metrics]
        if detailed:
            lines += ["| version | metric | online [interval] | test split |", "|---|---|---|---:|"]
            for g in detailed:
                for m, i in g.online.metrics.items():
                    lines.append(
                        f"| {g.version} | {m} | {_interval(i)} | {_num(g.online.test_metrics.get(m))} |"
                    )
            lines.append("")
        for g in scored:
            if g.online.unusable:
                lines += [f"{g.version}: {g.online.unusable} outcomes left out, e.g.:", ""]
                lines += [f"- `{s}`" for s in g.online.unusable_examples] + [""]
    return lines


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
                "input_drift": r.input_drift,
                "concept_drift": r.concept,
                "outcomes": _outcomes_json(r),
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
                        "online": g.online.as_dict() if g.online else None,
                    }
                    for g in r.groups
                ],
            }
            for r in results
        ],
    }


def _outcomes_json(r: ModelResult) -> dict[str, Any] | None:
    fb = r.feedback
    if fb is None:
        return None
    return {
        "log_dir": str(fb.records.directory),
        "rows": len(fb.rows),
        "files": fb.records.files,
        "duplicates": fb.duplicates,
        "skipped_lines": fb.records.skipped,
        "skipped_examples": fb.records.skip_examples,
        "interval_level": r.outcome_level if any(g.online and g.online.metrics for g in r.groups) else None,
    }


PROM_HELP = {
    "modelops_drift_score": "Largest per-feature PSI in the last monitor window (NaN: not judged).",
    "modelops_drift_detected": "1 when the last monitor run found input (or prediction) drift, else 0.",
    "modelops_monitor_last_run_timestamp_seconds": "When monitor last ran (Unix time).",
    "modelops_monitor_window_rows": "Logged rows of the model in the last monitor window.",
    "modelops_monitor_window_outcomes": "Outcomes (ground truth) of the model version in the last window.",
    "modelops_concept_drift_detected": "1 when the version's online metric fell below its test metric "
    "(concept drift), 0 when not, NaN when not judged (too few outcomes).",
    "modelops_online_metric": "A metric of the version on the outcomes of the last window.",
    "modelops_online_metric_low": "Lower end of the online metric's bootstrap interval.",
    "modelops_online_metric_high": "Upper end of the online metric's bootstrap interval.",
    "modelops_test_metric": "The metric the version had on its test split (its reference).",
}


def render_prom(results: list[ModelResult], now: datetime) -> str:
    """drift.prom for node_exporter's textfile collector: input drift per (model, env); outcomes
    per (model, env, version), for the versions that had any in the window."""
    values: dict[str, list[tuple[str, float]]] = {name: [] for name in PROM_HELP}
    for r in results:
        labels = f'model="{r.model}",env="{r.env}"'
        score = r.score()
        values["modelops_drift_score"].append((labels, math.nan if score is None else score))
        values["modelops_drift_detected"].append((labels, 1.0 if r.input_drift else 0.0))
        values["modelops_monitor_last_run_timestamp_seconds"].append((labels, now.timestamp()))
        values["modelops_monitor_window_rows"].append((labels, float(r.rows)))
        for g in r.groups:
            if g.online is None:
                continue
            o, version = g.online, f'{labels},version="{_escape(g.version)}"'
            flag = {"drift": 1.0, "ok": 0.0}.get(o.status, math.nan)
            values["modelops_monitor_window_outcomes"].append((version, float(o.outcomes)))
            values["modelops_concept_drift_detected"].append((version, flag))
            for metric, interval in o.metrics.items():
                each = f'{version},metric="{metric}"'
                values["modelops_online_metric"].append((each, interval.value))
                values["modelops_online_metric_low"].append((each, interval.low))
                values["modelops_online_metric_high"].append((each, interval.high))
                if metric in o.test_metrics:
                    values["modelops_test_metric"].append((each, o.test_metrics[metric]))
    lines = []
    for name, series in values.items():
        lines += [f"# HELP {name} {PROM_HELP[name]}", f"# TYPE {name} gauge"]
        lines += [f"{name}{{{labels}}} {_prom_value(v)}" for labels, v in series]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    """A label value as the exposition format wants it (versions come from the logs, not from us)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


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
