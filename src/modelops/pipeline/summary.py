"""What `modelops show` prints: a metrics table per task (each has its own metrics) and where each
model's MLflow run lives."""

from __future__ import annotations

import json

from modelops import tasks
from modelops.config import Params
from modelops.pipeline.outputs import latency_file, metrics_file


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "—"


def table(params: Params, task: str, models: list[str]) -> list[str]:
    """One markdown table of the models of one task: its metrics, then predict latency."""
    columns = tasks.METRICS[task]
    header = ["model", "dataset", *columns, "single ms", "batch ms"]
    lines = [f"{task}:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in models:
        dataset = params.model(name).dataset
        if not metrics_file(name).exists():
            lines.append(f"| {name} | {dataset} | (not evaluated yet: run `dvc repro`) |")
            continue
        scores = json.loads(metrics_file(name).read_text())
        timing = json.loads(latency_file(name).read_text()) if latency_file(name).exists() else {}
        cells = [_cell(scores.get(c)) for c in columns]
        cells += [
            f"{timing.get('predict_single_ms', float('nan')):.2f}",
            f"{timing.get('predict_batch_ms', float('nan')):.2f}",
        ]
        lines.append(f"| {name} | {dataset} | " + " | ".join(cells) + " |")
    return lines


def render(params: Params) -> str:
    """A markdown table per task of its models' metrics, then each model's latest MLflow run."""
    from modelops.pipeline.tracking import latest_runs

    by_task: dict[str, list[str]] = {}
    for name in params.models:
        by_task.setdefault(params.dataset_of(name).task, []).append(name)
    lines: list[str] = []
    for task in tasks.TASKS:
        if task in by_task:
            lines += [*table(params, task, by_task[task]), ""]
    runs = latest_runs(params)
    for name in params.models:
        if name in runs:
            r = runs[name]
            lines.append(
                f"{name}: MLflow run {r['run_id']} at {r['tracking_uri']} "
                f"(artifacts {r['artifact_uri']}, commit {r['commit']})"
            )
        else:
            lines.append(f"{name}: no MLflow run yet")
    lines.append("Browse them with `make mlflow-ui`.")
    return "\n".join(lines)
