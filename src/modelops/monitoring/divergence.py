"""What informs a canary analysis without deciding it: how the canary's predictions differ from main's.

From the sampled inference log: the population stability index of the score (P(positive) for binary,
the top probability for multiclass, the predicted value for regression) on main's quantile bins,
the predicted-class shares and their total variation distance, and for a shadow its agreement with
main on the same requests (the same request id, row by row). None of these is a check of the rule:
a canary may answer differently on purpose (that is why it is a new model); the report shows them
so a reviewer sees how.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from modelops.declarations import Dataset
from modelops.monitoring import drift
from modelops.monitoring.logs import Records, frames, parse_time
from modelops.pipeline import reference


def _score_name(ds: Dataset) -> str:
    if ds.task == "regression":
        return "predicted value"
    return f"P({ds.positive})" if ds.task == "binary" else "top probability"


def describe(hashes: tuple[str, str], kind: str, ds: Dataset, records: Records) -> dict[str, Any]:
    """The prediction distributions of main and the canary or shadow (`kind`, by content hashes
    (main, canary)) in the window, and a shadow's agreement with main."""
    main_hash, canary_hash = hashes
    canary = [r for r in records.rows if r["hash"] == canary_hash]
    main = [r for r in records.rows if r["hash"] == main_hash]
    if canary and kind == "canary":  # the same traffic period for both
        start = min(parse_time(r["ts"]) for r in canary)
        main = [r for r in main if parse_time(r["ts"]) >= start]
    out: dict[str, Any] = {
        "log_dir": str(records.directory.parent),
        "rows": {"main": len(main), "canary": len(canary)},
    }
    if not main or not canary:
        out["note"] = f"no inference-log rows of {'main' if not main else kind} in the window"
        return out
    shape = {"features": {}, "prediction": {"task": ds.task, "positive_class": ds.positive}}
    m, c = frames(main, shape), frames(canary, shape)
    ms, cs = (s.to_numpy(dtype="float64") for s in (m.score, c.score))
    ms, cs = ms[np.isfinite(ms)], cs[np.isfinite(cs)]
    if len(ms) and len(cs):
        edges = reference.cuts(ms)
        out["score"] = {
            "what": _score_name(ds),
            "psi": _r(drift.psi(reference.bin_counts(ms, edges), reference.bin_counts(cs, edges))),
            "main_mean": _r(float(ms.mean())),
            "canary_mean": _r(float(cs.mean())),
        }
    if ds.task != "regression":
        classes = list(ds.classes or [])
        share = lambda labels: {k: _r(float((labels == k).mean())) for k in classes}  # noqa: E731
        sm, sc = share(m.labels), share(c.labels)
        out["classes"] = {
            "main": sm,
            "canary": sc,
            "shift": _r(0.5 * sum(abs(sm[k] - sc[k]) for k in classes)),
        }
    if kind == "shadow":
        out["agreement"] = agreement(main, canary, ds.task)
    return out


def _keyed(rows: list[dict[str, Any]]) -> dict[tuple[str, int], Any]:
    """(request id, row within the request) -> prediction; a request's rows are logged in order."""
    seen: dict[str, int] = defaultdict(int)
    out = {}
    for r in rows:
        rid = str(r.get("request_id", ""))
        out[(rid, seen[rid])] = r.get("prediction")
        seen[rid] += 1
    return out


def agreement(main: list[dict[str, Any]], shadow: list[dict[str, Any]], task: str) -> dict[str, Any]:
    """How often the shadow answered as main on the requests both logged (each log samples on its
    own, so the pairs are the requests sampled by both)."""
    a, b = _keyed(main), _keyed(shadow)
    both = [k for k in a if k in b]
    out: dict[str, Any] = {"pairs": len(both)}
    if not both:
        return out
    if task == "regression":
        x = np.array([float(a[k]) for k in both])
        y = np.array([float(b[k]) for k in both])
        out["mean_abs_difference"] = _r(float(np.abs(y - x).mean()))
        scale = float(np.abs(x).mean())
        out["relative_difference"] = _r(float(np.abs(y - x).mean()) / scale) if scale else None
    else:
        out["same_class"] = _r(sum(1 for k in both if a[k] == b[k]) / len(both))
    return out


def _r(value: float) -> float:
    return float(f"{value:.6g}")
