"""The report's markdown: pure functions of plain values, so each section is tested on its own.

The comment reads top down: one verdict line per changed model and the unchanged ones, then a
section per changed model (its gate checks, metrics vs champion with each delta's interval and
vs base, what changed, its dataset's checks, plots, cost, deploy preview, links), then the code
paths the branch touched. The comment when validation stops the pipeline is `failure`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelops import tasks
from modelops.config import GatePolicy
from modelops.review.gate import Verdict
from modelops.review.uncertainty import Intervals, footnote, interval_cell, significance_cell

DEPLOY_ENV = "staging"  # what merging a pull request deploys (promote.yml)
# A change is bold when it is larger than the gate's allowed regression for that metric, or this.
SIGNIFICANT = 0.01
NONE = "—"


@dataclass
class Side:
    """One model scored on the test split: the challenger or the champion."""

    label: str
    version: str
    content_hash: str
    uri: str
    metrics: dict[str, float]
    predicted: np.ndarray | None = field(default=None, repr=False)  # probabilities or values
    latency: dict[str, float] = field(default_factory=dict)
    size_bytes: int | None = None


@dataclass
class ModelSection:
    """What one changed model's part of the report needs, already gathered."""

    model: str
    task: str
    dataset: str
    why: list[str]
    verdict: Verdict
    champion: str | None  # the champion's version, None before the first deployment
    body: list[str]  # its sections below the heading, in order


# --------------------------------------------------------------------------- small formatting


def _metric(value: float | None) -> str:
    return NONE if value is None else f"{value:.4f}"


def metric_order(task: str) -> list[str]:
    """A task's metrics, its headline ones first."""
    return list(dict.fromkeys([*tasks.HEADLINE[task], *tasks.METRICS[task]]))


def threshold(metric: str, policy: GatePolicy) -> float:
    """How large a change must be to be highlighted: the gate's allowed regression, or SIGNIFICANT."""
    return policy.max_regression.get(metric, SIGNIFICANT)


def delta(metric: str, new: float | None, old: float | None, bold_above: float = SIGNIFICANT) -> str:
    """`▲ +0.0123 better`: the arrow is the direction, the word says whether it helps for this metric."""
    if new is None or old is None:
        return NONE
    d = round(float(new) - float(old), 6)
    if d == 0:
        return "= 0"
    better = d < 0 if metric in tasks.LOWER_IS_BETTER else d > 0
    text = f"{'▲' if d > 0 else '▼'} {d:+.4f} {'better' if better else 'worse'}"
    return f"**{text}**" if abs(d) > bold_above else text


def deltas(task: str, new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, float]:
    """new - old for every metric of the task both have (report.json's deltas)."""
    if not old:
        return {}
    return {
        m: round(float(new[m]) - float(old[m]), 6)
        for m in tasks.METRICS[task]
        if new.get(m) is not None and old.get(m) is not None
    }


def _size(n: float | None) -> str:
    if n is None:
        return NONE
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# --------------------------------------------------------------------------- the top


def verdict_line(model: str, verdict: Verdict) -> str:
    """`✅ m: passes the quality gate (7 checks passed)` or `❌ m: fails ... (2 reasons)`."""
    if verdict.passed:
        ran = sum(1 for c in verdict.checks if c.outcome == "pass")
        return f"✅ {model}: passes the quality gate ({_plural(ran, 'check')} passed)"
    return f"❌ {model}: fails the quality gate ({_plural(len(verdict.reasons), 'reason')})"


def summary_section(sections: list[ModelSection], unchanged: list[str], base: str) -> str:
    """The first lines: the overall result, a verdict line per changed model, the unchanged ones."""
    failed = [s for s in sections if not s.verdict.passed]
    if not sections:
        head = f"## ✅ No model changed against `{base}`: the quality gate passes"
        lines = [
            head,
            "",
            "No model's packaged outputs or gate policy differ from the base, so none was re-evaluated.",
        ]
    else:
        n = len(sections)
        if failed:
            who = "The changed model fails" if n == 1 else f"{len(failed)} of {n} changed models fail"
            head = f"## ❌ {who}{'s' if n > 1 and len(failed) == 1 else ''} the quality gate"
        else:
            who = "The changed model passes" if n == 1 else f"All {n} changed models pass"
            head = f"## ✅ {who} the quality gate"
        lines = [head, ""] + [f"- {verdict_line(s.model, s.verdict)}" for s in sections]
    lines.append("")
    if unchanged:
        names = ", ".join(f"`{m}`" for m in unchanged)
        lines.append(
            f"Unchanged (outputs identical to `{base}`: not re-evaluated, nothing to merge): {names}."
        )
    else:
        lines.append("Unchanged models: none.")
    return "\n".join(lines) + "\n"


def model_heading(section: ModelSection, env: str) -> str:
    """A model's heading, why it is here, and its gate verdict with every check collapsed."""
    verdict = section.verdict
    word = "passes" if verdict.passed else "fails"
    icon = "✅" if verdict.passed else "❌"
    against = (
        f"champion {section.champion} in {env}"
        if section.champion
        else f"no champion in {env} yet (first deployment)"
    )
    lines = [
        f"## {icon} {section.model}: {word} the quality gate",
        "",
        f"{section.task} model on dataset `{section.dataset}`; "
        f"in this report because: {', '.join(section.why)}.",
        f"Compared with {against}.",
    ]
    if not verdict.passed:
        lines += ["", *(f"- {r}" for r in verdict.reasons)]
    if not verdict.checks:
        return "\n".join(lines) + "\n\nThe gate policy has no checks.\n"
    icons = {"pass": "✅", "fail": "❌", "skipped": "⏭️"}
    rows = [f"| {icons[c.outcome]} {c.outcome} | {c.kind} | {c.message} |" for c in verdict.checks]
    counts = {o: sum(1 for c in verdict.checks if c.outcome == o) for o in icons}
    summary = f"Gate checks: {counts['pass']} passed, {counts['fail']} failed, {counts['skipped']} skipped"
    lines += [
        "",
        f"<details><summary>{summary}</summary>",
        "",
        "| result | check | detail |",
        "|---|---|---|",
    ]
    lines += [*rows, "", "</details>"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- per model


def metrics_section(
    task: str,
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    champion_label: str | None,
    main: dict[str, Any] | None,
    base: str,
    policy: GatePolicy,
    notes: list[str] | None = None,
    intervals: Intervals | None = None,
) -> str:
    """Challenger vs champion (same test rows), each delta with its interval, and vs the base branch."""
    lines = ["### Champion vs challenger", ""]
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
    found = intervals.deltas if intervals else {}
    if champion is not None:
        level = intervals.label if intervals else "95%"
        head += [f"champion {champion_label}", "Δ vs champion", f"{level} interval", "significant?"]
    if main is not None:
        head += [f"`{base}`", f"Δ vs `{base}`"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in metric_order(task):
        new = challenger.get(m)
        row = [m + (" (lower is better)" if m in tasks.LOWER_IS_BETTER else ""), _metric(new)]
        if champion is not None:
            row += [_metric(champion.get(m)), delta(m, new, champion.get(m), threshold(m, policy))]
            row += [interval_cell(found.get(m)), significance_cell(m, found.get(m))]
        if main is not None:
            row += [_metric(main.get(m)), delta(m, new, main.get(m), threshold(m, policy))]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Δ = challenger - other. ▲/▼ is the direction of the number; *better*/*worse* depends on the "
        "metric. **Bold**: larger than the gate's allowed regression for that metric "
        f"(or {SIGNIFICANT} where the gate sets none).",
    ]
    if champion is not None:
        lines += ["", footnote(intervals)]
    return "\n".join(lines) + "\n"


def changes_section(
    params_diff: dict[str, dict[str, Any]] | None,
    data: dict[str, Any] | None,
    validation: dict[str, Any] | None,
    base: str,
) -> str:
    """What this branch changed for one model: its params, its dataset, that dataset's checks."""
    out = [
        f"### What changed vs `{base}`",
        "",
        "**Params** (this model's, its dataset's, evaluation, gate)",
        "",
    ]
    if params_diff is None:
        out.append(f"Not available (params.yaml of `{base}` could not be read).")
    elif not params_diff:
        out.append("No params changed.")
    else:
        out += ["| param | old | new |", "|---|---|---|"]
        for key, change in sorted(params_diff.items()):
            out.append(f"| `{key}` | {_param(change.get('old'))} | {_param(change.get('new'))} |")
        if any(k.startswith("gate.") or ".gate." in k for k in params_diff):
            out.append("\n⚠️ This branch changes the gate policy itself: review it as such.")
    out += ["", "**Data**", ""]
    out += _data_lines(data)
    out += ["", "**Data checks (Great Expectations)**", ""]
    out += validation_lines(validation, (data or {}).get("dataset"))
    return "\n".join(out) + "\n"


def _param(value: Any) -> str:
    return NONE if value is None else f"`{json.dumps(value)}`"


def _data_lines(data: dict[str, Any] | None) -> list[str]:
    if not data:
        return ["No data information (no dvc.lock or validation summary)."]
    cur, old = data.get("current") or {}, data.get("base") or {}
    name = f"`{data.get('file', '?')}`"
    if not old.get("md5"):
        head = f"{name}: the base has no record of it (new data)."
    elif old.get("md5") == cur.get("md5"):
        head = f"{name}: unchanged (md5 `{cur.get('md5')}`)."
    else:
        head = f"{name}: **changed**."
    lines = [head, "", "| | base | this branch |", "|---|---|---|"]
    lines.append(f"| md5 | `{old.get('md5') or NONE}` | `{cur.get('md5') or NONE}` |")
    rows_old, rows_new = old.get("rows"), cur.get("rows")
    lines.append(
        f"| rows | {NONE if rows_old is None else f'{rows_old:,}'} | "
        f"{NONE if rows_new is None else f'{rows_new:,}'} |"
    )
    if old.get("prepared_md5") or cur.get("prepared_md5"):
        lines.append(
            f"| prepared md5 | `{old.get('prepared_md5') or NONE}` | `{cur.get('prepared_md5') or NONE}` |"
        )
    ids = data.get("ids")
    if ids:
        lines.append(
            f"\nRows by `{data.get('id', 'id')}`: {ids['added']:,} added, {ids['removed']:,} removed, "
            f"{ids['changed']:,} changed."
        )
    elif old.get("md5") and old.get("md5") != cur.get("md5"):
        lines.append("\nRows added/removed by id: the base file is not in the local DVC cache.")
    return lines


def validation_lines(summary: dict[str, Any] | None, dataset: str | None) -> list[str]:
    if not summary:
        where = f"data/{dataset}/validation.json" if dataset else "the validation summary"
        stage = f"validate@{dataset}" if dataset else "validate"
        return [f"No validation summary (`{where}` missing: run `dvc repro {stage}`)."]
    if summary.get("error"):
        return [f"❌ The data could not be read: {summary['error']}"]
    counts = summary.get("counts") or {}
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
        return "### Plots\n\nNo plots (no test predictions).\n"
    return "\n".join(["### Plots", "", *(f"![{title}]({path})" for title, path in files.items())]) + "\n"


def cost_section(challenger: Side, champion: Side | None, ratio: float | None, allowed: float | None) -> str:
    """Size on disk and predict latency of both, measured now in this process; slow ones flagged."""
    lines = ["### Cost", ""]
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

    size = ["size on disk", _size(challenger.size_bytes)]
    if champion:
        size += [_size(champion.size_bytes), _ratio(challenger.size_bytes, champion.size_bytes)]
    lines.append("| " + " | ".join(size) + " |")
    lines.append(row("predict, 1 row", "predict_single_ms"))
    batch = int(challenger.latency.get("batch_rows", 0)) or "batch"
    lines.append(row(f"predict, {batch} rows", "predict_batch_ms"))
    lines.append(
        "\nMedian predict time (probabilities, or values for regression) of the scikit-learn pipeline on "
        "one thread, both models timed in turns in the same process just now.\n"
    )
    if ratio is not None and allowed is not None:
        flag = "⚠️ **slower than the gate allows**" if ratio > allowed else "within the gate"
        lines.append(f"Latency ratio (the larger of the two): **{ratio:.2f}x**, {flag} (max {allowed:.2f}x).")
    return "\n".join(lines) + "\n"


def _ratio(new: float | None, old: float | None) -> str:
    if new is None or not old:
        return NONE
    return f"{new / old:.2f}x"


def deploy_section(diff: str | None, message: str, env: str = DEPLOY_ENV) -> str:
    """The exact gitops/ change merging will commit for this model (`modelops promote --dry-run`)."""
    lines = [f"### Deploy preview ({env})", ""]
    if diff:
        lines += [f"Merging this pull request commits this change to `gitops/envs/{env}`:", "", "```diff"]
        lines += [diff.rstrip("\n"), "```"]
    else:
        lines.append(message or "No preview available.")
    return "\n".join(lines) + "\n"


def links_section(links: dict[str, str]) -> str:
    """Where to look further: the MLflow run, the DVC outputs, the workflow run."""
    if not links:
        return "### Links\n\nNone recorded.\n"
    return "### Links\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in links.items()) + "\n"


def code_section(code: list[str] | None, base: str) -> str:
    """The pipeline's files this branch touched, shared by every model."""
    lines = [f"## Code and pipeline paths touched vs `{base}`", ""]
    if code is None:
        lines.append(f"Not available (`git diff {base}...HEAD` failed).")
    elif not code:
        lines.append("None.")
    else:
        lines += [f"- `{p}`" for p in code]
    return "\n".join(lines) + "\n"


def document(
    sections: list[ModelSection], unchanged: list[str], code: list[str] | None, base: str, env: str
) -> str:
    """The whole comment: summary, one part per changed model, the code paths."""
    parts = [summary_section(sections, unchanged, base)]
    for s in sections:
        parts += [model_heading(s, env), *s.body]
    parts.append(code_section(code, base))
    return "\n".join(parts)
