"""`modelops report`: what a reviewer needs to decide whether a pull request's models ship.

Only the models whose outputs changed against the base (`pipeline.lock.changed_models`, the rule
promote.yml also uses), or whose gate policy changed, are evaluated: for each, the challenger (this
branch's packaged model) and the champion (what `gitops/envs/<env>` deploys now, fetched from its
modelUri and hash-verified) are scored on the same rows, the branch's test split of the model's
dataset; every delta between them gets a paired bootstrap interval (`uncertainty`). The other
models are only listed. Gathering lives here and in `changes`; the markdown in `render`, the plots
in `figures`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelops import tasks
from modelops.config import Params, load_params
from modelops.delivery import preview
from modelops.errors import ModelopsError, PipelineError
from modelops.review import changes, render, uncertainty
from modelops.review import gate as quality_gate
from modelops.review.gate import Verdict
from modelops.review.render import DEPLOY_ENV, ModelSection, Side
from modelops.review.uncertainty import Intervals

REPORT_MD, REPORT_JSON = "report.md", "report.json"


class ReportError(ModelopsError):
    """The report cannot be built or read; the message names the missing input."""

    exit_code = 11


@dataclass
class Report:
    """What `build` wrote: a verdict per changed model, the markdown, report.json's data, the files."""

    verdicts: dict[str, Verdict]
    unchanged: list[str]
    markdown: str
    data: dict[str, Any]
    files: list[Path]

    @property
    def passed(self) -> bool:
        """No changed model fails (no changed model at all is a pass)."""
        return all(v.passed for v in self.verdicts.values())

    def lines(self) -> list[str]:
        """One line per changed model (or that none changed), for the log."""
        if not self.verdicts:
            return ["PASS: no model changed, nothing to gate"]
        return [f"{m}: {v.line()}" for m, v in self.verdicts.items()]


# --------------------------------------------------------------------------- one side


def load_side(uri: str, content_hash: str) -> tuple[Any, Path]:
    """Fetch a model the way the server does and unpickle it only once its content hash matches.

    The server's own loader also builds and checks its fast predict path, which the report does
    not use; the trust step, hash before unpickling, is the same.
    """
    import cloudpickle
    import yaml
    from modelops_serving.integrity import tree_hash
    from modelops_serving.storage import ModelLoadError, resolve

    path = resolve(uri)
    try:
        found = tree_hash(path)
    except OSError as exc:
        raise ModelLoadError(f"{uri}: {exc}") from None
    if found != content_hash:
        raise ModelLoadError(
            f"{uri}: content hash mismatch: expected {content_hash}, found {found}; "
            "refusing to load a model that is not the one the manifest names"
        )
    try:
        mlmodel = yaml.safe_load((path / "MLmodel").read_text()) or {}
        rel = ((mlmodel.get("flavors") or {}).get("sklearn") or {}).get("pickled_model", "model.pkl")
        with (path / rel).open("rb") as fh:
            return cloudpickle.load(fh), path
    except Exception as exc:  # a pickle can raise anything; all mean the model is unusable here
        raise ModelLoadError(f"{uri}: cannot load the model: {type(exc).__name__}: {exc}") from None


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def score(side: Side, pipeline: Any, task: str, x: Any, y: np.ndarray, threads: int) -> None:
    """Predict the test rows (probabilities or values) and, unless given, the task's metrics."""
    from modelops.pipeline.evaluate import predict
    from modelops.pipeline.train import pinned_threads

    with pinned_threads(threads):
        side.predicted = predict(pipeline, task, x)
    if not side.metrics:
        side.metrics = tasks.quality(task, y, side.predicted) | {"test_rows": len(y)}
        if task == "binary":
            side.metrics["positive_rate"] = round(float(y.mean()), 6)


def time_sides(sides: list[tuple[Side, Any]], x: Any, params: Params, task: str) -> float | None:
    """Time the sides in turns once nothing else runs; the larger challenger/champion ratio."""
    from modelops.pipeline.evaluate import paired_latency
    from modelops.pipeline.train import pinned_threads

    with pinned_threads(1):  # what one serving worker gets, like the package stage
        measured = paired_latency([pipeline for _, pipeline in sides], x, params.evaluate, task)
    for (side, _), values in zip(sides, measured, strict=True):
        side.latency = values
    if len(sides) < 2:
        return None
    new, old = sides[0][0].latency, sides[1][0].latency
    ratios = [new[k] / old[k] for k in ("predict_single_ms", "predict_batch_ms") if old.get(k)]
    return round(max(ratios), 3) if ratios else None


# --------------------------------------------------------------------------- links and preview


def gather_links(model: str, content_hash: str, params: Params) -> dict[str, str]:
    """The MLflow run that logged this content, the DVC lock hashes, the workflow run."""
    from modelops.pipeline import lock, tracking

    links: dict[str, str] = {}
    uri = tracking.tracking_uri()
    run_id, note = None, ""
    try:
        run_id = preview.find_run(model, content_hash)
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
    text = changes.read_text(lock.LOCK_FILE)
    ds = params.dataset_of(model)
    shown = {
        ds.raw_file.as_posix(): None,
        ds.prepared_dir.as_posix(): None,
        f"models/{model}/pipeline.pkl": f"train@{model}",
        f"models/{model}/metrics.json": f"evaluate@{model}",
        f"models/{model}/model": f"package@{model}",
    }
    tags = {path: lock.out_md5(text, path, stage) for path, stage in shown.items()}
    if any(tags.values()):
        links["DVC outputs (dvc.lock md5)"] = ", ".join(f"`{k}` {v[:12]}" for k, v in tags.items() if v)
    server, repo, run = (
        os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    )
    if server and repo and run:
        links["Workflow run"] = f"{server}/{repo}/actions/runs/{run}"
    return links


# --------------------------------------------------------------------------- one model


@dataclass
class Context:
    """What every model's part shares: params, the base, both locks, the params diff."""

    params: Params
    base: str
    rev: str | None
    env: str
    out: Path
    old_lock: str | None
    new_lock: str | None
    params_diff: dict[str, Any] | None


def build_model(ctx: Context, name: str, why: list[str]) -> tuple[ModelSection, dict[str, Any], list[Path]]:
    """Score, gate, plot and describe one changed model: its section, its report.json entry, files."""
    from modelops_serving.integrity import tree_hash
    from modelops_serving.storage import ModelLoadError

    from modelops.pipeline import dataset
    from modelops.pipeline.outputs import metrics_file, package_dir, plots_dir
    from modelops.pipeline.prepare import read_split
    from modelops.review import figures

    params, ds = ctx.params, ctx.params.dataset_of(name)
    task, policy, threads = ds.task, params.gate_policy(name), params.model(name).threads
    if not (package_dir(name) / "MLmodel").exists():
        raise PipelineError(f"{package_dir(name)}: no packaged model (run `dvc repro` first)")
    if not metrics_file(name).exists():
        raise PipelineError(f"{metrics_file(name)}: not found (run `dvc repro` first)")
    frame = read_split(ds.test_file)
    x, y = dataset.to_features(ds, frame), dataset.to_target(ds, frame).to_numpy()

    digest = tree_hash(package_dir(name))
    recorded = json.loads(metrics_file(name).read_text())
    challenger = Side("challenger", "this branch", digest, package_dir(name).as_posix(), {})
    pipeline, path = load_side(package_dir(name).as_posix(), digest)
    challenger.size_bytes = _dir_size(path)
    score(challenger, pipeline, task, x, y, threads)
    timed = [(challenger, pipeline)]
    notes = []
    stale = [
        m
        for m in tasks.METRICS[task]
        if abs(challenger.metrics[m] - float(recorded.get(m, np.nan))) > 1e-6 or recorded.get(m) is None
    ]
    if stale:
        notes.append(
            f"{metrics_file(name)} disagrees with the packaged model on {', '.join(stale)}: "
            "outputs are stale, run `dvc repro`."
        )
    challenger.metrics = recorded  # the numbers of record are the metrics file's

    release = preview.champion_release(ctx.env, name)
    champion: Side | None = None
    champion_error = None
    if release is not None:
        champion = Side(f"champion {release.version}", release.version, release.content_hash, release.uri, {})
        try:
            pipeline, path = load_side(release.uri, release.content_hash)
            champion.size_bytes = _dir_size(path)
            score(champion, pipeline, task, x, y, threads)
            timed.append((champion, pipeline))
        except ModelLoadError as exc:
            champion_error = str(exc)
            notes.append(f"The champion {release.version} could not be loaded: {exc}")
            champion = None
    ratio = time_sides(timed, x, params, task)
    intervals = None
    if champion is not None:
        intervals, note = uncertainty.compare(
            task,
            y,
            challenger.predicted,
            champion.predicted,
            recorded,
            champion.metrics,
            params.gate.bootstrap,
        )
        notes += [note] if note else []
    main = changes.base_metrics(ctx.rev, name)
    champion_metrics = champion.metrics if champion else None
    label = release.version if release else None
    verdict = quality_gate.evaluate(
        recorded, champion_metrics, ratio, policy, label or "the champion", champion_error, intervals
    )
    validation = changes.read_validation(ds.validation_file)
    importance = plots_dir(name) / "importance.json"
    files = figures.render_plots(ctx.out / name, challenger, champion, y, ds, importance, f"{name}/")
    diff, message = preview.deploy_preview(name)
    data = changes.data_diff(ds, ctx.rev, ctx.new_lock, ctx.old_lock, validation)
    body = [
        render.metrics_section(
            task, recorded, champion_metrics, label, main, ctx.base, policy, notes, intervals
        ),
        render.changes_section(changes.params_of(name, params, ctx.params_diff), data, validation, ctx.base),
        render.plots_section(files),
        render.cost_section(challenger, champion, ratio, policy.max_latency_ratio),
        render.deploy_section(diff, message),
        render.links_section(gather_links(name, digest, params)),
    ]
    section = ModelSection(name, task, ds.name, why, verdict, label, body)
    found = intervals.deltas if intervals else {}
    metrics = tasks.METRICS[task]
    entry = {
        "task": task,
        "dataset": ds.name,
        "why": why,
        "verdict": verdict.to_dict(),
        "gate_inputs": {
            "candidate": {m: recorded.get(m) for m in metrics},
            "champion": {m: champion_metrics.get(m) for m in metrics} if champion_metrics else None,
            "champion_version": label,
            "champion_error": champion_error,
            "latency_ratio": ratio,
            "intervals": intervals.to_dict() if intervals else None,
        },
        "metrics": {"challenger": recorded, "champion": champion_metrics, "base": main},
        "deltas": {
            "vs_champion": render.deltas(task, recorded, champion_metrics),
            "vs_champion_significance": {m: uncertainty.direction(m, i) for m, i in found.items()},
            "vs_base": render.deltas(task, recorded, main),
        },
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
        "data": data,
        "validation": validation,
        "deploy_preview": {"env": DEPLOY_ENV, "diff": diff, "message": message},
        "plots": files,
    }
    return section, entry, [ctx.out / f for f in files.values()]


# --------------------------------------------------------------------------- build


def build(
    base: str = "main",
    env: str = "production",
    out: Path = Path("report"),
    models: list[str] | None = None,
) -> Report:
    """Write out/report.md, report.json and PNGs for the changed models (plus any asked for).

    The gate is evaluated here, per model, and enforced by `modelops gate`.
    """
    from modelops.pipeline import lock

    params = load_params()
    for name in models or []:
        params.model(name)  # an unknown name fails here, naming the known ones
    rev = changes.resolve_base(base)
    new_lock = changes.read_text(lock.LOCK_FILE)
    if new_lock is None:
        raise PipelineError(f"{lock.LOCK_FILE}: not found (run `dvc repro` first)")
    old_lock = changes.show(rev, lock.LOCK_FILE)
    diff = changes.params_diff(rev)
    why = changes.affected(params, old_lock, new_lock, diff)
    for name in models or []:
        why.setdefault(name, []).append(changes.ASKED)
    chosen = [m for m in params.models if m in why]
    unchanged = [m for m in params.models if m not in why]
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(params, base, rev, env, out, old_lock, new_lock, diff)
    sections, entries, files = [], {}, []
    for name in chosen:
        section, entry, written = build_model(ctx, name, why[name])
        sections.append(section)
        entries[name] = entry
        files += written
    code = changes.code_paths(rev)
    markdown = render.document(sections, unchanged, code, base, env)
    if rev is None:
        markdown += (
            f"\n> The base `{base}` is not a revision git knows here: every built model counts as new.\n"
        )
    verdicts = {s.model: s.verdict for s in sections}
    data = {
        "env": env,
        "base": base,
        "passed": all(v.passed for v in verdicts.values()),
        "changed": chosen,
        "unchanged": unchanged,
        "models": entries,
        "code_paths": code,
    }
    (out / REPORT_MD).write_text(markdown)
    (out / REPORT_JSON).write_text(json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")
    return Report(verdicts, unchanged, markdown, data, [out / REPORT_MD, out / REPORT_JSON, *files])


def gate_from_report(path: Path, params: Params) -> dict[str, Verdict]:
    """Re-evaluate each changed model's gate on the inputs the report recorded, under its policy now."""
    try:
        data = json.loads(path.read_text())
        entries = data["models"]
        inputs = {name: entry["gate_inputs"] for name, entry in entries.items()}
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found (run `modelops report` first)") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ReportError(
            f"{path}: not a report written by `modelops report` (no per-model gate inputs: {exc!r})"
        ) from None
    verdicts = {}
    for name, given in inputs.items():
        try:
            recorded = given.get("intervals")
            intervals = Intervals.from_dict(recorded) if recorded is not None else None
            verdicts[name] = quality_gate.evaluate(
                given["candidate"],
                given.get("champion"),
                given.get("latency_ratio"),
                params.gate_policy(name),
                given.get("champion_version") or "the champion",
                given.get("champion_error"),
                intervals,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ReportError(f"{path}: models.{name}.gate_inputs: malformed ({exc!r})") from None
    return verdicts
