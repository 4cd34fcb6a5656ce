"""Judging one model's window: which reference each served version is compared with, and the verdict.

Records are grouped by the content hash of the model that answered them; each big-enough group is
compared with that exact model's own ``reference.json`` (its features, its task's prediction), so
a classifier and a regressor, or two versions of one model, are each held to their own normal.
Outcomes (ground-truth feedback) are grouped the same way and held to the metrics the same
reference records for the test split (`outcomes`: concept drift).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from modelops.errors import ModelopsError
from modelops.monitoring import drift
from modelops.monitoring.logs import HASH, LOG_DIR_ENV, MonitorError, Records, Traffic, frames, iso
from modelops.monitoring.outcomes import Feedback, Online, assess
from modelops.params_after import MonitorParams
from modelops.pipeline import reference as ref_stats


class DriftDetected(ModelopsError):
    """The window's traffic drifted from the reference of the model that served it, or its outcomes
    show concept drift."""

    exit_code = 12


class InsufficientData(ModelopsError):
    """Too few logged rows to judge: not drift, but not a clean bill of health either."""

    exit_code = 15


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
    from modelops.pipeline.outputs import package_dir

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
    task: str = ""  # from the reference: binary | multiclass | regression
    checks: list[drift.Check] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    online: Online | None = None  # what its outcomes say; None when it had none in the window

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
            if c.effect_name == "psi" and c.effect is not None and c.subject == "feature"
        ]
        return max(values) if values else None


@dataclass
class Compared:
    """What one group was compared with, kept for the plots."""

    group: Group
    reference: dict[str, Any]
    traffic: Traffic


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
    compared: list[Compared] = field(default_factory=list, repr=False)
    dataset: str = ""  # the dataset the model learns (params.yaml; else its reference's)
    feedback: Feedback | None = None  # the outcomes read, when the feedback log was read
    outcome_level: float = 0.0  # the online metrics' interval level (1 - alpha / versions judged)

    @property
    def rows(self) -> int:
        """Rows of this model in the window."""
        return sum(g.rows for g in self.groups)

    @property
    def outcomes(self) -> int:
        """Outcome lines of this model in the window."""
        return len(self.feedback.rows) if self.feedback else 0

    @property
    def input_drift(self) -> bool:
        """Some version's inputs or predictions drifted from its reference."""
        return any(g.status == "drift" for g in self.groups)

    @property
    def concept(self) -> str:
        """drift (some version), ok (every version that needs a verdict has one), insufficient_data,
        or none (no outcomes in the window)."""
        scored = [g for g in self.groups if g.online]
        if not scored:
            return "none"
        if any(g.online.status == "drift" for g in scored):
            return "drift"
        # as for the inputs: versions git deploys now must each be judged, leftovers need not
        needed = [g for g in scored if g.role] or scored
        return "ok" if all(g.online.status == "ok" for g in needed) else "insufficient_data"

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
    feedback: Feedback | None = None,
) -> ModelResult:
    """Group the records (and outcomes) by content hash and compare each big-enough group with its
    own reference."""
    by_hash: dict[str, list[dict[str, Any]]] = {}
    for rec in records.rows:
        by_hash.setdefault(rec["hash"], []).append(rec)
    outcomes: dict[str, list[tuple[dict[str, Any], str]]] = {}
    if feedback is not None:
        for rec, at in zip(feedback.rows, feedback.where, strict=True):
            outcomes.setdefault(rec["hash"], []).append((rec, at))
    groups = []
    for content_hash in sorted(set(by_hash) | set(roles) | set(outcomes)):
        rows = by_hash.get(content_hash, [])
        answered = rows + [r for r, _ in outcomes.get(content_hash, [])]
        versions = sorted({str(r.get("version", "unknown")) for r in answered})
        if not versions and content_hash in roles:  # deployed, but no traffic in the window
            versions = [roles[content_hash].split()[-1]]
        groups.append(Group(content_hash, versions, len(rows), roles.get(content_hash, "")))
    references: dict[str, dict[str, Any]] = {}
    compared = []
    for group in groups:
        enough_outcomes = len(outcomes.get(group.content_hash, [])) >= policy.min_outcomes
        if group.rows < policy.min_rows and not enough_outcomes:
            continue
        reference, group.reference = find_reference(model, group.content_hash, group.version, store)
        references[group.content_hash] = reference
        group.task = drift.task_of(reference)
        if group.rows < policy.min_rows:
            continue
        traffic = frames(by_hash[group.content_hash], reference)
        group.checks = drift.compare(reference, traffic.inputs, traffic.labels, traffic.score, policy)
        compared.append(Compared(group, reference, traffic))
    # One family for the whole run: several versions in one window must not multiply false alarms.
    tests = sum(drift.tested(g.checks) for g in groups)
    for group in groups:
        if group.checks:
            group.checks = drift.decide(group.checks, policy, tests)
            group.status = "drift" if group.drifting() else "ok"
    online, outcome_level = assess(outcomes, references, policy)
    for group in groups:
        group.online = online.get(group.content_hash)
    status, message = _summarize(model, env, records, groups, since, until, policy)
    level = policy.alpha / max(tests, 1)
    dataset = next((str(r.get("dataset", "")) for r in references.values()), "")
    return ModelResult(
        model,
        env,
        since,
        until,
        records.directory.parent,
        status,
        message,
        groups,
        records,
        level,
        compared,
        dataset,
        feedback,
        outcome_level,
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
    span = f"{iso(since)} to {iso(until)}"
    drifting = [g for g in groups if g.status == "drift"]
    concept = [g for g in groups if g.online and g.online.status == "drift"]
    if drifting or concept:
        found = []
        if drifting:
            found.append(
                f"drift detected ({'; '.join(f'{g.version}: {", ".join(g.drifting())}' for g in drifting)})"
            )
        if concept:
            found.append(
                f"concept drift detected ({'; '.join(f'{g.version}: {g.online.note}' for g in concept)})"
            )
        return "drift", f"{where}: {'; '.join(found)}"
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
    scored = sum(g.online.outcomes for g in groups if g.online and g.online.status == "ok")
    also = f" and {scored:,} outcomes" if scored else ""
    return "ok", f"{where}: no drift in {judged:,} rows{also} from {span}"


def enforce(results: list[ModelResult]) -> None:
    """Exit status for CI: DriftDetected (12) over InsufficientData (15) over success."""
    if not results:
        raise InsufficientData("nothing was judged: no model is deployed in the env and none had traffic")
    if any(r.status == "drift" for r in results):
        raise DriftDetected("\n".join(r.message for r in results if r.status == "drift"))
    if any(r.status == "insufficient_data" for r in results):
        raise InsufficientData("\n".join(r.message for r in results if r.status == "insufficient_data"))
