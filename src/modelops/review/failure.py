"""The comment when data validation stops the pipeline: no model was trained, so no report.

`modelops report --validation-log LOG` writes it as report.md, which model-pr.yml posts like a
report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelops.config import load_params
from modelops.review import changes
from modelops.review.render import validation_lines
from modelops.review.report import REPORT_MD


def data_failure(out: Path, log: Path, tail: int = 40) -> list[str]:
    """Write the data-validation failure note to out/report.md; the datasets whose suite failed.

    Each validate stage writes its summary before it fails, so the failing datasets are the ones
    whose validation.json says so; the log's last lines say the rest (an ingest error, say).
    """
    params = load_params()
    failing = []
    for name in params.datasets:
        ds = params.dataset(name)
        summary = changes.read_validation(ds.validation_file)
        if summary is not None and not summary.get("success", True):
            failing.append(
                {
                    "dataset": name,
                    "suite": ds.suite_file.as_posix(),
                    "data": ds.raw_file.as_posix(),
                    "models": params.models_of(name),
                    "summary": summary,
                }
            )
    text = changes.read_text(log) or ""
    lines = [ln for ln in text.splitlines() if ln.strip()][-tail:]
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_MD).write_text(data_failure_section(failing, "\n".join(lines)))
    return [item["dataset"] for item in failing]


def data_failure_section(failing: list[dict[str, Any]], log_tail: str) -> str:
    """The comment when validation stops the pipeline: each rejected dataset, its suite, its failures.

    `failing`: one entry per dataset whose validation failed ({dataset, suite, data, models,
    summary}); empty when a data stage failed before any suite ran (then only the log says why).
    """
    lines = ["## ❌ Data validation failed: no model was trained", ""]
    if not failing:
        lines.append(
            "A data stage failed before any Great Expectations suite could run; the log below says why."
        )
    for item in failing:
        summary = item.get("summary") or {}
        counts = summary.get("counts") or {}
        models = ", ".join(f"`{m}`" for m in item.get("models") or []) or "none"
        what = (
            f"could not read it: {summary['error']}"
            if summary.get("error")
            else f"{counts.get('failed', '?')} of {counts.get('evaluated', '?')} expectations failed"
        )
        lines.append(
            f"- ❌ dataset `{item['dataset']}`: the suite `{item['suite']}` rejected `{item['data']}` "
            f"({what}); its models: {models}."
        )
    if failing:
        lines += ["", "Fix the data (or, if the change is intended, the suite) and push again."]
    for item in failing:
        failures = (item.get("summary") or {}).get("failures") or []
        if failures:
            lines += [
                "",
                f"### `{item['dataset']}`",
                "",
                *validation_lines(item.get("summary"), item["dataset"])[1:],
            ]
    lines += ["", "<details><summary>The validation log (last lines)</summary>", "", "```text"]
    lines += [log_tail.rstrip("\n") or "(empty)", "```", "", "</details>"]
    return "\n".join(lines) + "\n"
