"""`modelops monitor`: has the traffic an env serves drifted from what its model was trained on?

Reads a window of the servers' inference logs, groups the records by the content hash of the model
that answered them, compares each group with that model's own ``reference.json`` (`drift` does the
statistics) and writes ``monitor.md``, ``monitor.json``, PNG plots and ``drift.prom`` (a Prometheus
textfile the alert rules read). The exit status says what it found: 0 no drift, 12 drift,
15 insufficient data (too few rows to judge: neither drift nor silence), 14 cannot monitor.

The inference log contract (the server writes it, append-only; a torn last line is tolerated)::

    <log_dir>/<model>/<YYYY-MM-DD>/*.jsonl     (UTC dates), one JSON object per line:
    {"ts": "2026-11-23T18:01:02.123456Z", "model": "credit-hgb", "version": "v3",
     "hash": "<64 hex>", "request_id": "<32 hex>", "inputs": {"<feature>": number|string|null},
     "prediction": "<class>", "probabilities": {"<class>": float}}
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelops.config import MonitorParams, Params
from modelops.errors import ModelopsError
from modelops.monitoring import drift
from modelops.pipeline import dataset
from modelops.pipeline import reference as ref_stats

LOG_DIR_ENV = "MODELOPS_INFERENCE_LOG_DIR"
MONITOR_MD, MONITOR_JSON, PROM_FILE = "monitor.md", "monitor.json", "drift.prom"
DEFAULT_LAST = timedelta(hours=24)
HASH = re.compile(r"^[0-9a-f]{64}$")
DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SHOWN_SKIPS = 5


class DriftDetected(ModelopsError):
    """The window's traffic drifted from the reference of the model that served it."""

    exit_code = 12


class MonitorError(ModelopsError):
    """Monitoring cannot run: unknown env or model hash, bad window; the message names it."""

    exit_code = 14


class InsufficientData(ModelopsError):
    """Too few logged rows to judge: not drift, but not a clean bill of health either."""

    exit_code = 15


# --------------------------------------------------------------------------- the window


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; none means UTC), as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise MonitorError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-23T18:00:00Z)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h`` or ``7d``."""
    found = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if not found or int(found[1]) == 0:
        raise MonitorError(f"not a duration: {text!r} (e.g. 30m, 24h, 7d)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[found[2]]
    return timedelta(**{unit: int(found[1])})


def window(
    since: str | None, until: str | None, last: str | None, now: datetime
) -> tuple[datetime, datetime]:
    """[since, until) from the options: --since/--until, or --last (default 24h) before --until/now."""
    if since and last:
        raise MonitorError("give --since or --last, not both")
    end = parse_time(until) if until else now
    start = parse_time(since) if since else end - (parse_duration(last) if last else DEFAULT_LAST)
    if start >= end:
        raise MonitorError(f"empty window: --since {_iso(start)} is not before --until {_iso(end)}")
    return start, end


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_log_dir(env: str | None = None) -> Path:
    """Where the env's servers write: $MODELOPS_INFERENCE_LOG_DIR, else the local runtime's log of
    the env (`modelops sync`) if there is one, else the server's own default."""
    from modelops_serving.settings import Settings

    from modelops.runtime.sync import inference_log_dir

    if configured := os.environ.get(LOG_DIR_ENV):
        return Path(configured)
    if env and inference_log_dir(env).is_dir():
        return inference_log_dir(env)
    return Path(Settings.model_fields["inference_log_dir"].default)


@dataclass
class Records:
    """The parsed records of one model in a window, and what could not be read."""

    directory: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    skipped: int = 0
    skip_examples: list[str] = field(default_factory=list)

    def skip(self, where: str, why: str) -> None:
        """Count an unreadable line; keep the first few locations for the report."""
        self.skipped += 1
        if len(self.skip_examples) < SHOWN_SKIPS:
            self.skip_examples.append(f"{where}: {why}")


def _record_problem(rec: Any, model: str) -> str | None:
    if not isinstance(rec, dict):
        return "not a JSON object"
    if rec.get("model") != model:
        return f"model {rec.get('model')!r}, not {model!r}"
    if not isinstance(rec.get("hash"), str) or not HASH.match(rec["hash"]):
        return "no 64-hex 'hash'"
    if not isinstance(rec.get("inputs"), dict):
        return "no 'inputs' object"
    return None


def read_records(log_dir: Path, model: str, since: datetime, until: datetime) -> Records:
    """Every well-formed record of `model` with since <= ts < until; unreadable lines are counted."""
    found = Records(log_dir / model)
    if not found.directory.is_dir():
        return found
    first, last = since.date(), until.date()
    for day in sorted(p for p in found.directory.iterdir() if p.is_dir() and DAY_DIR.match(p.name)):
        try:
            if not first <= date.fromisoformat(day.name) <= last:
                continue
        except ValueError:
            continue
        for path in sorted(day.glob("*.jsonl")):
            found.files += 1
            with path.open("rb") as fh:
                for number, raw in enumerate(fh, 1):
                    where = f"{path}:{number}"
                    if not raw.strip():
                        continue
                    try:
                        rec = json.loads(raw)
                    except ValueError:
                        # a line cut short by a crash mid-write (the server appends; nothing rewrites it)
                        found.skip(where, "not valid JSON (truncated?)")
                        continue
                    if problem := _record_problem(rec, model):
                        found.skip(where, problem)
                        continue
                    try:
                        ts = parse_time(str(rec.get("ts")))
                    except MonitorError:
                        found.skip(where, f"bad 'ts' {rec.get('ts')!r}")
                        continue
                    if since <= ts < until:
                        found.rows.append(rec)
    return found


def frames(rows: list[dict[str, Any]], positive: str) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """(inputs, predicted labels, positive-class probabilities) of some records."""
    inputs = pd.DataFrame.from_records([r["inputs"] for r in rows], columns=list(dataset.FEATURES))
    for col in dataset.NUMERIC:
        inputs[col] = pd.to_numeric(inputs[col], errors="coerce")
    labels = pd.Series([r.get("prediction") for r in rows], dtype=object)

    def prob(r: dict[str, Any]) -> float:
        value = (r.get("probabilities") or {}).get(positive)
        return float(value) if isinstance(value, int | float) else math.nan

    return inputs, labels, pd.Series([prob(r) for r in rows], dtype="float64")


# --------------------------------------------------------------------------- which reference


def deployed(env: str, model: str) -> dict[str, str]:
    """content hash -> "main v3" / "canary v4" / "shadow v4": what git says `env` serves now."""
    from modelops.delivery import manifests, promote

    known = manifests.envs()
    if env not in known:
        raise MonitorError(f"unknown env {env!r} (known: {', '.join(known)})")
    path = promote.GITOPS / "envs" / env / f"{model}.yaml"
    if not path.exists():
        return {}
    main, extras = promote.read_state(path)
    roles = {main.content_hash: f"main {main.version}"}
    for extra in extras:
        roles[extra.release.content_hash] = f"{extra.name} {extra.release.version}"
    return {h: role for h, role in roles.items() if HASH.match(h) and set(h) != {"0"}}


def find_reference(model: str, content_hash: str, version: str, store: str | None = None) -> tuple[dict, str]:
    """The reference.json of exactly this model content: from the artifact store, else from the
    local packaged model if its content hash matches. Returns (reference, where it came from)."""
    from modelops_serving import storage
    from modelops_serving.integrity import tree_hash

    from modelops.delivery import publish
    from modelops.pipeline.package import package_dir

    store = store or publish.default_store()
    uri = publish.artifact_uri(model, content_hash, store)
    looked = []
    if storage.is_local(uri):
        path = storage.local_path(uri) / ref_stats.REFERENCE_FILE
        if path.parent.is_dir():
            return ref_stats.load(path), str(path)
        looked.append(f"{path.parent} (not published there)")
    else:
        import fsspec

        try:
            with fsspec.open(uri + ref_stats.REFERENCE_FILE, "rt") as fh:
                text = fh.read()
            return ref_stats.load(uri + ref_stats.REFERENCE_FILE, text), uri + ref_stats.REFERENCE_FILE
        except FileNotFoundError:
            looked.append(f"{uri} (not published there)")
        except Exception as exc:  # credentials, network: the backends raise many types
            looked.append(f"{uri} (unreadable: {type(exc).__name__}: {exc})")
    local = package_dir(model)
    try:
        local_hash = tree_hash(local)
    except FileNotFoundError:
        looked.append(f"{local} (no packaged model)")
    else:
        if local_hash == content_hash:
            return ref_stats.load(local / ref_stats.REFERENCE_FILE), str(local / ref_stats.REFERENCE_FILE)
        looked.append(f"{local} (content hash {local_hash[:12]}…, another model)")
    raise MonitorError(
        f"no reference for {model} version {version} with content hash {content_hash}: looked in "
        + " and ".join(looked)
        + f"; point --store (or ${publish.STORE_ENV}) at the store it was published to"
    )


# --------------------------------------------------------------------------- judging


@dataclass
class Group:
    """The records one model content served in the window, and what comparing them found."""

    content_hash: str
    versions: list[str]
    rows: int
    role: str  # what git deploys it as now ("main v3"), or "" when it is not deployed now
    status: str = "insufficient_data"  # drift | ok | insufficient_data
    reference: str = ""
    checks: list[drift.Check] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        """The version(s) records of this content carried."""
        return ", ".join(self.versions) or "none"

    def drifting(self) -> list[str]:
        """Names of the checks that flagged drift."""
        return [c.name for c in self.checks if c.drift]

    def score(self) -> float | None:
        """Largest PSI of any input feature (the drift score); None if nothing was compared."""
        values = [
            c.effect
            for c in self.checks
            if c.effect_name == "psi" and c.effect is not None and c.name in dataset.FEATURES
        ]
        return max(values) if values else None


@dataclass
class ModelResult:
    """One model in one env over one window."""

    model: str
    env: str
    since: datetime
    until: datetime
    log_dir: Path
    status: str
    message: str
    groups: list[Group]
    records: Records
    level: float  # the per-check significance level after the Bonferroni correction
    # (group, reference, inputs, positive-class probabilities) of each compared group, for plots
    compared: list[tuple[Group, dict, pd.DataFrame, pd.Series]] = field(default_factory=list, repr=False)

    @property
    def rows(self) -> int:
        """Rows of this model in the window."""
        return sum(g.rows for g in self.groups)

    def score(self) -> float | None:
        """Largest PSI over every compared group (the drift score the alerts read)."""
        scores = [s for g in self.groups if (s := g.score()) is not None]
        return max(scores) if scores else None


def judge(
    model: str,
    env: str,
    records: Records,
    roles: dict[str, str],
    since: datetime,
    until: datetime,
    policy: MonitorParams,
    store: str | None = None,
) -> ModelResult:
    """Group the records by content hash and compare each big-enough group with its own reference."""
    by_hash: dict[str, list[dict[str, Any]]] = {}
    for rec in records.rows:
        by_hash.setdefault(rec["hash"], []).append(rec)
    groups = []
    for content_hash in sorted(set(by_hash) | set(roles)):
        rows = by_hash.get(content_hash, [])
        versions = sorted({str(r.get("version", "unknown")) for r in rows})
        if not versions and content_hash in roles:  # deployed, but no traffic in the window
            versions = [roles[content_hash].split()[-1]]
        groups.append(Group(content_hash, versions, len(rows), roles.get(content_hash, "")))
    pending = []
    for group in groups:
        if group.rows < policy.min_rows:
            continue
        version = group.version
        reference, group.reference = find_reference(model, group.content_hash, version, store)
        inputs, labels, positive = frames(
            by_hash[group.content_hash], reference["prediction"]["positive_class"]
        )
        group.checks = drift.compare(reference, inputs, labels, positive, policy)
        pending.append((group, reference, inputs, positive))
    # One family for the whole run: several versions in one window must not multiply false alarms.
    tests = sum(drift.tested(g.checks) for g in groups)
    for group in groups:
        if group.checks:
            group.checks = drift.decide(group.checks, policy, tests)
            group.status = "drift" if group.drifting() else "ok"
    status, message = _summarize(model, env, records, groups, since, until, policy)
    level = policy.alpha / max(tests, 1)
    return ModelResult(
        model, env, since, until, records.directory.parent, status, message, groups, records, level, pending
    )


def _summarize(
    model: str,
    env: str,
    records: Records,
    groups: list[Group],
    since: datetime,
    until: datetime,
    policy: MonitorParams,
) -> tuple[str, str]:
    where = f"{model} in {env}"
    span = f"{_iso(since)} to {_iso(until)}"
    drifting = [g for g in groups if g.status == "drift"]
    if drifting:
        parts = [f"{g.version}: {', '.join(g.drifting())}" for g in drifting]
        return "drift", f"{where}: drift detected ({'; '.join(parts)})"
    if not records.rows:
        if not records.directory.is_dir():
            hint = f"no log directory {records.directory} (is the server logging? see --logs, ${LOG_DIR_ENV})"
        else:
            hint = f"no records in {records.directory} ({records.files} log files in the window's days)"
        return "insufficient_data", f"{where}: no inference records from {span}: {hint}"
    # Versions git deploys now must each get a verdict; a few leftover rows of a replaced version must not.
    short = [
        g for g in groups if g.status == "insufficient_data" and (g.role or not any(x.role for x in groups))
    ]
    if short:
        parts = [f"{g.role or g.version} has {g.rows} rows" for g in short]
        return "insufficient_data", (
            f"{where}: insufficient data from {span}: {'; '.join(parts)} (monitor.min_rows is "
            f"{policy.min_rows}); not judged"
        )
    judged = sum(g.rows for g in groups if g.checks)
    return "ok", f"{where}: no drift in {judged:,} rows from {span}"


# --------------------------------------------------------------------------- outputs


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
    """Per compared group: the score distribution, and every drifting feature's distribution."""
    for group, reference, inputs, positive in result.compared:
        stem = f"{result.model}-{group.content_hash[:12]}"
        name = f"{stem}-prediction.png"
        prob = dict(reference["prediction"]["probability"], kind="numeric")
        _plot(
            out / name,
            f"{result.model} {group.version}: P({reference['prediction']['positive_class']})",
            prob,
            positive,
        )
        group.plots.append(name)
        for check in group.checks:
            if check.drift and check.name in reference["features"]:
                name = f"{stem}-{check.name}.png"
                _plot(
                    out / name,
                    f"{result.model} {group.version}: {check.name}",
                    reference["features"][check.name],
                    inputs[check.name],
                )
                group.plots.append(name)


def _num(value: float | None, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def render_markdown(results: list[ModelResult], policy: MonitorParams) -> str:
    """monitor.md: verdict first, then per model and version the checks and plots."""
    icon = {"drift": "⚠️", "ok": "✅", "insufficient_data": "⏸️"}
    lines = []
    for r in results:
        lines += [f"## {icon[r.status]} {r.message}", ""]
        lines += [
            f"Window {_iso(r.since)} to {_iso(r.until)}; logs `{r.records.directory}`; "
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
                f"Reference: `{g.reference}`.",
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
    lines += [
        "A check flags drift when its test is significant at alpha / m "
        f"({policy.alpha:g} / number of checks, Bonferroni) and its effect reaches the threshold "
        "(`monitor:` in params.yaml): PSI on the reference's quantile bins, KS against its sample for "
        "numbers, chi-square for categories and predicted classes, Fisher's test for missing rates.",
        "",
    ]
    return "\n".join(lines)


def to_json(results: list[ModelResult], policy: MonitorParams) -> dict[str, Any]:
    """monitor.json: everything monitor.md shows, for machines."""
    statuses = [r.status for r in results]
    overall = (
        "drift" if "drift" in statuses else "insufficient_data" if "insufficient_data" in statuses else "ok"
    )
    return {
        "status": overall,
        "policy": policy.model_dump(),
        "models": [
            {
                "model": r.model,
                "env": r.env,
                "status": r.status,
                "message": r.message,
                "window": {"since": _iso(r.since), "until": _iso(r.until)},
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


def write(results: list[ModelResult], out: Path, policy: MonitorParams, now: datetime) -> None:
    """Write monitor.md, monitor.json, the PNGs and drift.prom into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for r in results:
        render_plots(r, out)
    _write(out / MONITOR_JSON, json.dumps(to_json(results, policy), indent=2, sort_keys=True) + "\n")
    _write(out / MONITOR_MD, render_markdown(results, policy))
    _write(out / PROM_FILE, render_prom(results, now))


def run(
    env: str,
    params: Params,
    since: datetime,
    until: datetime,
    out: Path,
    log_dir: Path | None = None,
    models: list[str] | None = None,
    store: str | None = None,
    now: datetime | None = None,
) -> list[ModelResult]:
    """Monitor every model of params.yaml that `env` has a manifest for (or `models`); write outputs."""
    from modelops.delivery import promote

    log_dir = log_dir or default_log_dir(env)
    if models:
        for name in models:
            params.model(name)
    else:
        deployed(env, "")  # checks the env exists
        models = [m for m in params.models if (promote.GITOPS / "envs" / env / f"{m}.yaml").exists()]
        if not models:
            raise MonitorError(f"no model of params.yaml has a manifest in gitops/envs/{env}/")
    results = [
        judge(
            m,
            env,
            read_records(log_dir, m, since, until),
            deployed(env, m),
            since,
            until,
            params.monitor,
            store,
        )
        for m in models
    ]
    write(results, out, params.monitor, now or datetime.now(UTC))
    return results


def enforce(results: list[ModelResult]) -> None:
    """Exit status for CI: DriftDetected (12) over InsufficientData (15) over success."""
    if any(r.status == "drift" for r in results):
        raise DriftDetected("\n".join(r.message for r in results if r.status == "drift"))
    if any(r.status == "insufficient_data" for r in results):
        raise InsufficientData("\n".join(r.message for r in results if r.status == "insufficient_data"))
