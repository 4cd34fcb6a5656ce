"""What `modelops show` prints: a metrics table per model and where its MLflow run lives."""

from __future__ import annotations

import json

from modelops.config import Params
from modelops.pipeline.evaluate import latency_file, metrics_file

COLUMNS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")


def render(params: Params) -> str:
    """A markdown table of every model's metrics, then its latest MLflow run."""
    from modelops.pipeline.tracking import latest_runs

    header = ["model", *COLUMNS, "single ms", "batch ms"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in params.models:
        if not metrics_file(name).exists():
            lines.append(f"| {name} | (not evaluated yet: run `dvc repro`) |")
            continue
        scores = json.loads(metrics_file(name).read_text())
        timing = json.loads(latency_file(name).read_text()) if latency_file(name).exists() else {}
        cells = [f"{scores[c]:.4f}" for c in COLUMNS]
        cells += [
            f"{timing.get('predict_single_ms', float('nan')):.2f}",
            f"{timing.get('predict_batch_ms', float('nan')):.2f}",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    runs = latest_runs(params)
    lines.append("")
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
