"""`modelops report`: what a reviewer needs to decide whether a pull request's model ships.

The challenger (this branch's packaged model) and the champion (what `gitops/envs/<env>` deploys
now, fetched from its modelUri and hash-verified) are scored on the same rows: the branch's test
split. Gathering (git, DVC, MLflow, models) is kept apart from the section builders, which are
pure functions of plain values so that each can be tested on its own, empty cases included.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modelops.config import LOWER_IS_BETTER, QUALITY, GateParams, Params, load_params
from modelops.errors import ModelopsError, PipelineError
from modelops.pipeline import dataset
from modelops.review import gate as quality_gate
from modelops.review.gate import Verdict

REPORT_MD, REPORT_JSON = "report.md", "report.json"
DEPLOY_ENV = "staging"  # what merging a pull request deploys (promote.yml)
# A change is bold when it is larger than the gate's allowed regression for that metric, or this.
SIGNIFICANT = 0.01
CODE_PATHS = ("src/", "serving/src/", "dvc.yaml", "params.yaml", "data/")
NONE = "—"


class ReportError(ModelopsError):
    """The report cannot be built; the message names the missing input."""

    exit_code = 11


@dataclass
class Side:
    """One model scored on the test split: the challenger or the champion."""

    label: str
    version: str
    content_hash: str
    uri: str
    metrics: dict[str, float]
    proba: np.ndarray | None = field(default=None, repr=False)
    latency: dict[str, float] = field(default_factory=dict)
    size_bytes: int | None = None


@dataclass
class Report:
    """What `build` wrote: the verdict, the markdown, the machine-readable data, the files."""

    verdict: Verdict
    markdown: str
    data: dict[str, Any]
    files: list[Path]


# --------------------------------------------------------------------------- small formatting


def _metric(value: float | None) -> str:
    return NONE if value is None else f"{value:.4f}"


def threshold(metric: str, policy: GateParams) -> float:
    """How large a change must be to be highlighted: the gate's allowed regression, or SIGNIFICANT."""
    return policy.max_regression.get(metric, SIGNIFICANT)


def delta(metric: str, new: float | None, old: float | None, bold_above: float = SIGNIFICANT) -> str:
    """`▲ +0.0123 better`: the arrow is the direction, the word says whether it helps for this metric."""
    if new is None or old is None:
        return NONE
    d = round(float(new) - float(old), 6)
    if d == 0:
        return "= 0"
    better = d < 0 if metric in LOWER_IS_BETTER else d > 0
    text = f"{'▲' if d > 0 else '▼'} {d:+.4f} {'better' if better else 'worse'}"
    return f"**{text}**" if abs(d) > bold_above else text


def deltas(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, float]:
    """new - old for every quality metric both have (report.json's deltas)."""
    if not old:
        return {}
    return {
        m: round(float(new[m]) - float(old[m]), 6)
        for m in QUALITY
        if new.get(m) is not None and old.get(m) is not None
    }


def _size(n: int | None) -> str:
    if n is None:
        return NONE
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# --------------------------------------------------------------------------- section builders (pure)


def verdict_section(verdict: Verdict, model: str, champion: str | None, env: str) -> str:
    """The first lines: pass or fail and why, then every check in a collapsed table."""
    against = f"champion {champion} in {env}" if champion else f"no champion in {env} yet (first deployment)"
    if verdict.passed:
        head = f"## ✅ {model}: passes the quality gate\n\nCompared with {against}."
    else:
        reasons = "\n".join(f"- {r}" for r in verdict.reasons)
        head = f"## ❌ {model}: fails the quality gate\n\nCompared with {against}.\n\n{reasons}"
    if not verdict.checks:
        return head + "\n\nThe gate policy (`gate:` in params.yaml) has no checks.\n"
    icon = {"pass": "✅", "fail": "❌", "skipped": "⏭️"}
    rows = "\n".join(f"| {icon[c.outcome]} {c.outcome} | {c.kind} | {c.message} |" for c in verdict.checks)
    counts = {o: sum(1 for c in verdict.checks if c.outcome == o) for o in icon}
    summary = f"Gate checks: {counts['pass']} passed, {counts['fail']} failed, {counts['skipped']} skipped"
    return (
        f"{head}\n\n<details><summary>{summary}</summary>\n\n| result | check | detail |\n|---|---|---|\n"
        f"{rows}\n\n</details>\n"
    )


def metrics_section(
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    champion_label: str | None,
    main: dict[str, Any] | None,
    base: str,
    policy: GateParams,
    notes: list[str] | None = None,
) -> str:
    """Challenger vs champion (same test rows) and vs the base branch, with deltas and arrows."""
    lines = ["## Champion vs challenger", ""]
    if champion is None:
        lines.append(
            "No model is deployed yet (the release is `unpromoted`): this is the first deployment, "
            f"so the challenger is compared with `{base}` only."
        )
    else:
        lines.append(
            f"Both models scored on this branch's test split "
            f"({int(challenger.get('test_rows', 0)) or '?'} rows): the champion {champion_label} "
            "re-evaluated here, so the comparison holds even when the data changed."
        )
    if main is None:
        lines.append(f"`{base}` has no metrics for this model (not trained there, or not found).")
    lines += [f"> {n}" for n in notes or []]
    head = ["metric", "challenger"]
    if champion is not None:
        head += [f"champion {champion_label}", "Δ vs champion"]
    if main is not None:
        head += [f"`{base}`", f"Δ vs `{base}`"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in QUALITY:
        new = challenger.get(m)
        row = [m + (" (lower is better)" if m in LOWER_IS_BETTER else ""), _metric(new)]
        if champion is not None:
            row += [_metric(champion.get(m)), delta(m, new, champion.get(m), threshold(m, policy))]
        if main is not None:
            row += [_metric(main.get(m)), delta(m, new, main.get(m), threshold(m, policy))]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Δ = challenger - other. ▲/▼ is the direction of the number; *better*/*worse* depends on the "
        "metric. **Bold**: larger than the gate's allowed regression for that metric "
        f"(or {SIGNIFICANT} where the gate sets none).",
    ]
    return "\n".join(lines) + "\n"


def changes_section(
    params_diff: dict[str, dict[str, Any]] | None,
    data: dict[str, Any] | None,
    code: list[str] | None,
    validation: dict[str, Any] | None,
    base: str,
) -> str:
    """What this branch changed: params, data, code paths, and the data checks' summary."""
    out = [f"## What changed vs `{base}`", "", "**Params**", ""]
    if params_diff is None:
        out.append(f"Not available (`dvc params diff {base}` failed).")
    elif not params_diff:
        out.append("No params changed.")
    else:
        out += ["| param | old | new |", "|---|---|---|"]
        for key, change in sorted(params_diff.items()):
            out.append(f"| `{key}` | {_param(change.get('old'))} | {_param(change.get('new'))} |")
        if any(k.startswith("gate.") for k in params_diff):
            out.append("\n⚠️ This branch changes the gate policy itself: review it as such.")
    out += ["", "**Data**", ""]
    out += _data_lines(data)
    out += ["", "**Code and pipeline paths touched**", ""]
    if code is None:
        out.append(f"Not available (`git diff {base}...HEAD` failed).")
    elif not code:
        out.append("None.")
    else:
        out += [f"- `{p}`" for p in code]
    out += ["", "**Data checks (Great Expectations)**", ""]
    out += _validation_lines(validation)
    return "\n".join(out) + "\n"


def _param(value: Any) -> str:
    return NONE if value is None else f"`{json.dumps(value)}`"


def _data_lines(data: dict[str, Any] | None) -> list[str]:
    if not data:
        return ["No data information (no dvc.lock or validation summary)."]
    cur, old = data.get("current") or {}, data.get("base") or {}
    if not old.get("md5"):
        head = f"`{data.get('file', dataset.RAW_FILE)}`: the base has no record of it (new data)."
    elif old.get("md5") == cur.get("md5"):
        head = f"`{data.get('file', dataset.RAW_FILE)}`: unchanged (md5 `{cur.get('md5')}`)."
    else:
        head = f"`{data.get('file', dataset.RAW_FILE)}`: **changed**."
    lines = [head, "", "| | base | this branch |", "|---|---|---|"]
    lines.append(f"| md5 | `{old.get('md5') or NONE}` | `{cur.get('md5') or NONE}` |")
    rows_old, rows_new = old.get("rows"), cur.get("rows")
    lines.append(
        f"| rows | {NONE if rows_old is None else f'{rows_old:,}'} | "
        f"{NONE if rows_new is None else f'{rows_new:,}'} |"
    )
    for key in ("prepared_md5",):
        if old.get(key) or cur.get(key):
            lines.append(f"| data/prepared md5 | `{old.get(key) or NONE}` | `{cur.get(key) or NONE}` |")
    ids = data.get("ids")
    if ids:
        lines.append(
            f"\nRows by `{dataset.ID}`: {ids['added']:,} added, {ids['removed']:,} removed, "
            f"{ids['changed']:,} changed."
        )
    elif old.get("md5") and old.get("md5") != cur.get("md5"):
        lines.append("\nRows added/removed by id: the base file is not in the local DVC cache.")
    return lines


def _validation_lines(summary: dict[str, Any] | None) -> list[str]:
    if not summary:
        return ["No validation summary (`data/validation/result.json` missing: run `dvc repro validate`)."]
    counts = summary.get("counts") or {}
    if summary.get("error"):
        return [f"❌ The data could not be read: {summary['error']}"]
    ok = summary.get("success")
    lines = [
        f"{'✅ passed' if ok else '❌ failed'}: {counts.get('passed', 0)} of {counts.get('evaluated', 0)} "
        f"expectations passed on {summary.get('rows') or 0:,} rows (`{summary.get('suite', '?')}`)."
    ]
    failures = summary.get("failures") or []
    if failures:
        columns = sorted({str(f.get("column")) for f in failures if f.get("column")})
        lines.append(f"Failing columns: {', '.join(f'`{c}`' for c in columns) or 'table-level checks only'}")
        lines += [f"- {f.get('message', f.get('expectation', '?'))}" for f in failures]
    return lines


def plots_section(files: dict[str, str]) -> str:
    """The PNGs, by path relative to report.md (CML uploads and links them)."""
    if not files:
        return "## Plots\n\nNo plots (no test predictions).\n"
    lines = ["## Plots", ""]
    lines += [f"![{title}]({path})" for title, path in files.items()]
    return "\n".join(lines) + "\n"


def cost_section(challenger: Side, champion: Side | None, ratio: float | None, allowed: float) -> str:
    """Size on disk and predict latency of both, measured now in this process; slow ones flagged."""
    lines = ["## Cost", ""]
    if champion is None:
        lines += ["No champion to compare with (first deployment).", ""]
    head = ["", "challenger"] + ([f"champion {champion.version}", "ratio"] if champion else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(title: str, key: str) -> str:
        new = challenger.latency.get(key)
        cells = [title, NONE if new is None else f"{new:.2f} ms"]
        if champion:
            old = champion.latency.get(key)
            cells += [NONE if old is None else f"{old:.2f} ms", _ratio(new, old)]
        return "| " + " | ".join(cells) + " |"

    size = [
        "size on disk",
        _size(challenger.size_bytes),
        *(
            [_size(champion.size_bytes), _ratio(challenger.size_bytes, champion.size_bytes)]
            if champion
            else []
        ),
    ]
    lines.append("| " + " | ".join(size) + " |")
    lines.append(row("predict, 1 row", "predict_single_ms"))
    batch = int(challenger.latency.get("batch_rows", 0)) or "batch"
    lines.append(row(f"predict, {batch} rows", "predict_batch_ms"))
    lines.append(
        "\nMedian `predict_proba` of the scikit-learn pipeline on one thread, both models timed in the same "
        "process just now.\n"
    )
    if ratio is not None:
        flag = "⚠️ **slower than the gate allows**" if ratio > allowed else "within the gate"
        lines.append(f"Latency ratio (the larger of the two): **{ratio:.2f}x**, {flag} (max {allowed:.2f}x).")
    return "\n".join(lines) + "\n"


def _ratio(new: float | None, old: float | None) -> str:
    if new is None or not old:
        return NONE
    return f"{new / old:.2f}x"


def deploy_section(diff: str | None, message: str, env: str = DEPLOY_ENV) -> str:
    """The exact gitops/ change merging will commit (from `modelops promote --dry-run`)."""
    lines = [f"## Deploy preview ({env})", ""]
    if diff:
        lines += [f"Merging this pull request commits this change to `gitops/envs/{env}`:", "", "```diff"]
        lines += [diff.rstrip("\n"), "```"]
    else:
        lines.append(message or "No preview available.")
    return "\n".join(lines) + "\n"


def links_section(links: dict[str, str]) -> str:
    """Where to look further: the MLflow run, the DVC outputs, the workflow run."""
    if not links:
        return "## Links\n\nNone recorded.\n"
    return "## Links\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in links.items()) + "\n"


# --------------------------------------------------------------------------- gathering (impure)


def _proc(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True)


def resolve_base(base: str) -> str | None:
    """The base as a commit git knows (in CI often only `origin/<base>` exists), or None."""
    for rev in (base, f"origin/{base}"):
        if _proc(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]).returncode == 0:
            return rev
    return None


def _dvc_json(*args: str) -> dict[str, Any] | None:
    from modelops.workspace import venv_tool

    proc = _proc([venv_tool("dvc"), *args, "--json"])
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        return None


def base_metrics(rev: str | None, model: str) -> dict[str, Any] | None:
    """The model's metrics on the base from `dvc metrics diff` (None when the base has none)."""
    if rev is None:
        return None
    found = _dvc_json("metrics", "diff", rev, "--all")
    if not found:
        return None
    from modelops.pipeline.evaluate import metrics_file

    values = found.get(metrics_file(model).as_posix()) or {}
    old = {k: v.get("old") for k, v in values.items() if isinstance(v, dict) and v.get("old") is not None}
    return old or None


def params_diff(rev: str | None) -> dict[str, dict[str, Any]] | None:
    """Changed params vs the base, flattened over params files (`dvc params diff`)."""
    if rev is None:
        return None
    found = _dvc_json("params", "diff", rev)
    if found is None:
        return None
    return {key: change for changes in found.values() for key, change in changes.items()}


def _show(rev: str, path: str) -> str | None:
    proc = _proc(["git", "show", f"{rev}:{path}"])
    return proc.stdout if proc.returncode == 0 else None


def lock_md5(text: str | None, path: str) -> str | None:
    """The md5 dvc.lock records for an output path."""
    if not text:
        return None
    stages = (yaml.safe_load(text) or {}).get("stages") or {}
    for body in stages.values():
        for out in body.get("outs") or []:
            if out.get("path") == path:
                return out.get("md5")
    return None


def _cache_file(md5: str) -> Path:
    return Path(".dvc/cache/files/md5") / md5[:2] / md5[2:]


def row_changes(old_csv: Path, new_csv: Path) -> dict[str, int]:
    """Rows added, removed and changed (same id, other values) between two raw files."""
    import pandas as pd

    old, new = (pd.read_csv(p, low_memory=False).set_index(dataset.ID) for p in (old_csv, new_csv))
    common = old.index.intersection(new.index)
    cols = [c for c in new.columns if c in old.columns]
    changed = 0
    if len(common):
        a = pd.util.hash_pandas_object(old.loc[common, cols].astype(str), index=False).to_numpy()
        b = pd.util.hash_pandas_object(new.loc[common, cols].astype(str), index=False).to_numpy()
        changed = int((a != b).sum())
    return {
        "added": len(new.index.difference(old.index)),
        "removed": len(old.index.difference(new.index)),
        "changed": changed,
    }


def data_diff(rev: str | None, validation: dict[str, Any] | None) -> dict[str, Any]:
    """Raw file md5 and rows here and on the base; rows by id when the base file is in the cache."""
    raw = dataset.RAW_FILE.as_posix()
    lock = Path("dvc.lock").read_text() if Path("dvc.lock").exists() else None
    current = {
        "md5": lock_md5(lock, raw) or (validation or {}).get("md5"),
        "rows": (validation or {}).get("rows"),
        "prepared_md5": lock_md5(lock, "data/prepared"),
    }
    base: dict[str, Any] = {}
    if rev is not None:
        base_lock = _show(rev, "dvc.lock")
        base_validation = _show(rev, "data/validation/result.json")
        rows = json.loads(base_validation).get("rows") if base_validation else None
        base = {
            "md5": lock_md5(base_lock, raw),
            "rows": rows,
            "prepared_md5": lock_md5(base_lock, "data/prepared"),
        }
    out: dict[str, Any] = {"file": raw, "current": current, "base": base}
    old_md5 = base.get("md5")
    if (
        old_md5
        and old_md5 != current["md5"]
        and _cache_file(old_md5).is_file()
        and dataset.RAW_FILE.is_file()
    ):
        # optional detail: a file without ids (or unreadable) keeps the md5/rows view
        with contextlib.suppress(KeyError, ValueError, OSError):
            out["ids"] = row_changes(_cache_file(old_md5), dataset.RAW_FILE)
    return out


def code_paths(rev: str | None) -> list[str] | None:
    """Files under the pipeline's paths that this branch changed since it left the base."""
    if rev is None:
        return None
    proc = _proc(["git", "diff", "--name-only", f"{rev}...HEAD"])
    if proc.returncode != 0:
        return None
    return [p for p in proc.stdout.split() if p.startswith(CODE_PATHS)]


def read_validation(path: Path = Path("data/validation/result.json")) -> dict[str, Any] | None:
    """The Great Expectations summary the validate stage wrote."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def champion_release(env: str, model: str) -> Any:
    """The release the env deploys now, or None before the first deployment."""
    from modelops.delivery import promote

    release, _ = promote.read_state(promote.patch_file(env, model))
    return None if release.version == "unpromoted" else release


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _score(side: Side, pipeline: Any, x: Any, y: np.ndarray, params: Params, model: str) -> None:
    from modelops.pipeline.evaluate import quality
    from modelops.pipeline.train import pinned_threads

    with pinned_threads(params.model(model).threads):
        side.proba = pipeline.predict_proba(x)[:, 1]
    if not side.metrics:
        side.metrics = quality(y, side.proba) | {
            "test_rows": len(y),
            "positive_rate": round(float(y.mean()), 6),
        }


def _time(sides: list[tuple[Side, Any]], x: Any, params: Params) -> None:
    """Predict latency of the challenger and champion, timed in turns once nothing else runs."""
    from modelops.pipeline.evaluate import paired_latency
    from modelops.pipeline.train import pinned_threads

    with pinned_threads(1):  # what one serving worker gets, like the package stage
        measured = paired_latency([pipeline for _, pipeline in sides], x, params.evaluate)
    for (side, _), values in zip(sides, measured, strict=True):
        side.latency = values


def load_side(uri: str, content_hash: str, version: str, model: str) -> tuple[Any, Path]:
    """Fetch and hash-verify a model the way the server does; (pipeline, local directory)."""
    from modelops_serving.model import load_model

    served = load_model(uri, expected_hash=content_hash, name=model, version=version)
    return served.pipeline, served.path


# --------------------------------------------------------------------------- build


def _pick_model(params: Params, model: str | None) -> str:
    if model:
        params.model(model)
        return model
    if len(params.models) == 1:
        return next(iter(params.models))
    raise ReportError(
        f"params.yaml has {len(params.models)} models; choose one with --model ({', '.join(params.models)})"
    )


def render_plots(
    out: Path, challenger: Side, champion: Side | None, y: np.ndarray, model: str
) -> dict[str, str]:
    """ROC and PR overlaid, both confusion matrices, the challenger's importance; title -> relative path."""
    from modelops.pipeline import plots
    from modelops.pipeline.evaluate import curves, plots_dir

    files: dict[str, str] = {}
    sides = [s for s in (challenger, champion) if s is not None and s.proba is not None]
    if not sides:
        return files
    data = {s.label: curves(y, s.proba) for s in sides}
    plots.curve({k: v["roc"] for k, v in data.items()}, "fpr", "tpr", "ROC", out / "roc.png")
    files["ROC"] = "roc.png"
    plots.curve(
        {k: v["prc"] for k, v in data.items()}, "recall", "precision", "Precision-recall", out / "prc.png"
    )
    files["Precision-recall"] = "prc.png"
    for s in sides:
        name = "confusion-challenger.png" if s is challenger else "confusion-champion.png"
        plots.confusion(y, s.proba, f"Confusion: {s.label}", out / name)
        files[f"Confusion: {s.label}"] = name
    ranked_file = plots_dir(model) / "importance.json"
    if ranked_file.exists():
        plots.importance(
            json.loads(ranked_file.read_text()), "Feature importance: challenger", out / "importance.png"
        )
        files["Feature importance (challenger)"] = "importance.png"
    return files


def gather_links(model: str, content_hash: str, params: Params) -> dict[str, str]:
    """The MLflow run that logged this content, the DVC lock hashes, the workflow run."""
    from modelops.delivery import registry
    from modelops.pipeline import tracking

    links: dict[str, str] = {}
    uri = tracking.tracking_uri()
    run_id, note = None, ""
    try:
        run_id = registry.find_run(model, content_hash)
        if run_id is None:
            latest = tracking.latest_runs(params).get(model)
            run_id, note = (latest or {}).get("run_id"), " (latest run; none logged with this content hash)"
    except Exception as exc:  # an unreachable tracking server must not stop the report
        links["MLflow"] = f"not reachable ({type(exc).__name__}: {exc})"
    if run_id:
        if uri.startswith(("http://", "https://")):
            links["MLflow run"] = f"[{run_id}]({uri.rstrip('/')}/#/runs/{run_id}){note}"
        else:
            links["MLflow run"] = f"`{run_id}` in `{uri}`{note}"
    elif "MLflow" not in links:
        links["MLflow run"] = f"none logged for {model} in `{uri}`"
    shown = ("data/raw/", "data/prepared", "pipeline.pkl", "metrics.json")
    tags = {k: v for k, v in tracking.dvc_tags(model).items() if k.endswith(shown) or "data/raw/" in k}
    if tags:
        links["DVC outputs (dvc.lock md5)"] = ", ".join(
            f"`{k.removeprefix('dvc.')}` {v[:12]}" for k, v in tags.items()
        )
    server, repo, run = (
        os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    )
    if server and repo and run:
        links["Workflow run"] = f"{server}/{repo}/actions/runs/{run}"
    return links


def deploy_preview(model: str) -> tuple[str | None, str]:
    """(diff, message) of promoting the packaged model to staging, dry run: nothing is written."""
    from modelops.delivery import promote

    try:
        result = promote.promote(model, DEPLOY_ENV, dry_run=True)
    except ModelopsError as exc:
        return None, f"No preview: {exc}"
    if not result.diff:
        return None, f"Merging changes nothing in gitops/: {result.message}."
    return result.diff, result.message


def build(
    base: str = "main", env: str = "production", out: Path = Path("report"), model: str | None = None
) -> Report:
    """Write out/report.md, report.json and PNGs; the gate is evaluated here, enforced by `modelops gate`."""
    from modelops_serving.integrity import tree_hash
    from modelops_serving.storage import ModelLoadError

    from modelops.pipeline.evaluate import metrics_file
    from modelops.pipeline.package import package_dir
    from modelops.pipeline.prepare import read_split

    params = load_params()
    name = _pick_model(params, model)
    policy = params.gate
    if not (package_dir(name) / "MLmodel").exists():
        raise PipelineError(f"{package_dir(name)}: no packaged model (run `dvc repro` first)")
    if not metrics_file(name).exists():
        raise PipelineError(f"{metrics_file(name)}: not found (run `dvc repro` first)")
    out.mkdir(parents=True, exist_ok=True)
    # The two `dvc ... diff` calls take about a second each: run them while the models are scored.
    rev = resolve_base(base)
    pool = ThreadPoolExecutor(max_workers=2)
    main_future = pool.submit(base_metrics, rev, name)
    params_future = pool.submit(params_diff, rev)
    frame = read_split(dataset.TEST_FILE)
    x, y = dataset.to_features(frame), dataset.to_target(frame).to_numpy()

    digest = tree_hash(package_dir(name))
    recorded = json.loads(metrics_file(name).read_text())
    challenger = Side("challenger", "this branch", digest, package_dir(name).as_posix(), {})
    pipeline, path = load_side(package_dir(name).as_posix(), digest, "candidate", name)
    challenger.size_bytes = _dir_size(path)
    _score(challenger, pipeline, x, y, params, name)
    timed = [(challenger, pipeline)]
    notes = []
    stale = {m for m in QUALITY if abs(challenger.metrics[m] - float(recorded.get(m, np.nan))) > 1e-6}
    if stale:
        notes.append(
            f"{metrics_file(name)} disagrees with the packaged model on {', '.join(sorted(stale))}: "
            "outputs are stale, run `dvc repro`."
        )
    challenger.metrics = recorded  # the numbers of record are the metrics file's

    release = champion_release(env, name)
    champion: Side | None = None
    champion_error = None
    if release is not None:
        champion = Side(f"champion {release.version}", release.version, release.content_hash, release.uri, {})
        try:
            pipeline, path = load_side(release.uri, release.content_hash, release.version, name)
            champion.size_bytes = _dir_size(path)
            _score(champion, pipeline, x, y, params, name)
            timed.append((champion, pipeline))
        except ModelLoadError as exc:
            champion_error = str(exc)
            notes.append(f"The champion {release.version} could not be loaded: {exc}")
            champion = None

    main, changed_params = main_future.result(), params_future.result()
    pool.shutdown()
    _time(timed, x, params)
    ratio = None
    if champion is not None:
        ratios = [
            challenger.latency[k] / champion.latency[k]
            for k in ("predict_single_ms", "predict_batch_ms")
            if champion.latency.get(k)
        ]
        ratio = round(max(ratios), 3) if ratios else None
    if rev is None:
        notes.append(f"The base `{base}` is not a revision git knows here: nothing compared with it.")
    champion_metrics = champion.metrics if champion else None
    verdict = quality_gate.evaluate(
        recorded,
        champion_metrics,
        ratio,
        policy,
        release.version if release else "the champion",
        champion_error,
    )
    validation = read_validation()
    files = render_plots(out, challenger, champion, y, name)
    diff, message = deploy_preview(name)
    label = release.version if release else None
    sections = [
        verdict_section(verdict, name, label, env),
        metrics_section(recorded, champion_metrics, label, main, base, policy, notes),
        changes_section(changed_params, data_diff(rev, validation), code_paths(rev), validation, base),
        plots_section(files),
        cost_section(challenger, champion, ratio, policy.max_latency_ratio),
        deploy_section(diff, message),
        links_section(gather_links(name, digest, params)),
    ]
    markdown = "\n".join(sections)
    data = {
        "model": name,
        "env": env,
        "base": base,
        "verdict": verdict.to_dict(),
        "gate_inputs": {
            "candidate": {m: recorded.get(m) for m in QUALITY},
            "champion": {m: champion_metrics.get(m) for m in QUALITY} if champion_metrics else None,
            "champion_version": label,
            "champion_error": champion_error,
            "latency_ratio": ratio,
        },
        "metrics": {"challenger": recorded, "champion": champion_metrics, "base": main},
        "deltas": {"vs_champion": deltas(recorded, champion_metrics), "vs_base": deltas(recorded, main)},
        "challenger": {
            "content_hash": digest,
            "size_bytes": challenger.size_bytes,
            "latency": challenger.latency,
        },
        "champion": None
        if release is None
        else {
            "version": release.version,
            "uri": release.uri,
            "content_hash": release.content_hash,
            "size_bytes": champion.size_bytes if champion else None,
            "latency": champion.latency if champion else None,
        },
        "deploy_preview": {"env": DEPLOY_ENV, "diff": diff, "message": message},
        "plots": files,
    }
    (out / REPORT_MD).write_text(markdown)
    (out / REPORT_JSON).write_text(json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")
    written = [out / REPORT_MD, out / REPORT_JSON, *(out / f for f in files.values())]
    return Report(verdict, markdown, data, written)


def gate_from_report(path: Path, policy: GateParams) -> Verdict:
    """Re-evaluate the gate on the inputs a report recorded, under the given policy."""
    try:
        data = json.loads(path.read_text())
        inputs = data["gate_inputs"]
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found (run `modelops report` first)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ReportError(f"{path}: not a report written by `modelops report` ({exc})") from None
    return quality_gate.evaluate(
        inputs["candidate"],
        inputs.get("champion"),
        inputs.get("latency_ratio"),
        policy,
        inputs.get("champion_version") or "the champion",
        inputs.get("champion_error"),
    )
