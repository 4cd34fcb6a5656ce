"""`modelops monitor`: has the traffic an env serves drifted from what its models were trained on,
and do its models still answer as well as they did on their test split?

Every model of the env is monitored: a window of its servers' inference logs (`logs`) is grouped
by the content hash of the model that answered, each group is compared with that model's own
``reference.json`` (`verdict`, with `drift` doing the statistics, per the model's task); the
outcomes its servers received (the feedback log, `outcomes`) give each version's online metrics
and the concept-drift verdict; ``monitor.md``, ``monitor.json``, PNG plots and ``drift.prom`` are
written (`render`). The exit status says what it found: 0 no drift, 12 drift (inputs or concept),
15 insufficient data (too few rows to judge: neither drift nor silence), 14 cannot monitor. Too
few outcomes is reported, never an exit status of its own: feedback is optional.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from modelops.config import Params
from modelops.monitoring.logs import (
    LOG_DIR_ENV,
    MonitorError,
    Records,
    Traffic,
    default_log_dir,
    frames,
    parse_duration,
    parse_time,
    read_records,
    window,
)
from modelops.monitoring.outcomes import Feedback, read_outcomes
from modelops.monitoring.render import MONITOR_JSON, MONITOR_MD, PROM_FILE, render_prom, write
from modelops.monitoring.verdict import (
    DriftDetected,
    Group,
    InsufficientData,
    ModelResult,
    deployed,
    enforce,
    find_reference,
    judge,
)

__all__ = [
    "LOG_DIR_ENV",
    "MONITOR_JSON",
    "MONITOR_MD",
    "PROM_FILE",
    "DriftDetected",
    "Feedback",
    "Group",
    "InsufficientData",
    "ModelResult",
    "MonitorError",
    "Records",
    "Traffic",
    "default_log_dir",
    "deployed",
    "enforce",
    "find_reference",
    "frames",
    "judge",
    "models_of_env",
    "parse_duration",
    "parse_time",
    "read_outcomes",
    "read_records",
    "render_prom",
    "run",
    "window",
    "write",
]


def models_of_env(env: str, params: Params) -> list[str]:
    """The models of params.yaml that `env` has a manifest for, in params order."""
    from modelops.delivery import promote

    deployed(env, "")  # checks the env exists
    found = [m for m in params.models if (promote.GITOPS / "envs" / env / f"{m}.yaml").exists()]
    if not found:
        raise MonitorError(f"no model of params.yaml has a manifest in gitops/envs/{env}/")
    return found


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
    """Monitor every model `env` has a manifest for (or `models`), each against its own
    references; write the outputs.

    A model found through the env's manifests that is not promoted there and had no traffic (nor
    outcomes) in the window is listed as idle, not judged: it serves nothing, so "too few rows"
    would be a false finding. Named with `models`, it is judged whatever its state.
    """
    log_dir = log_dir or default_log_dir(env)
    if models:
        for name in models:
            params.model(name)
    chosen = models or models_of_env(env, params)
    results, idle = [], []
    for m in chosen:
        roles, records = deployed(env, m), read_records(log_dir, m, since, until)
        feedback = read_outcomes(log_dir, m, since, until)
        if not models and not roles and not records.rows and not feedback.rows:
            idle.append(m)
            continue
        result = judge(m, env, records, roles, since, until, params.monitor, store, feedback)
        result.dataset = params.model(m).dataset
        results.append(result)
    write(results, out, params.monitor, now or datetime.now(UTC), idle)
    return results
