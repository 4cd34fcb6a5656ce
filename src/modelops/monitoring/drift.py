"""Drift statistics: one window of traffic against one model's reference (pure functions).

Every check has a test (a p-value) and an effect size. A check flags drift only when both hold:

- the difference is **significant**: p < alpha / m, where m is the number of checks in the run
  (Bonferroni). A dozen features, their missing rates and the prediction checks are ~28 tests per
  window; without the correction a 5% test per check would alarm on most healthy windows. With it,
  the chance that a window of in-distribution traffic raises any alarm is at most alpha.
- the difference is **material**: the effect is at least its threshold (PSI, class shift, missing
  rate increase). A very large window makes negligible differences significant; those are not
  worth waking anyone for.

Two-sample tests (KS against the reference's sample, chi-square on a 2-row contingency table of
reference and current counts, Fisher's exact test) account for the reference being a sample too.

The prediction is checked per task, from the model's reference: classification compares the
predicted-class shares and the distribution of one score (the positive class's probability, or
the top probability of a multiclass model); regression compares the predicted value's
distribution like a numeric feature's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from modelops.params_after import MonitorParams
from modelops.pipeline import reference

EPS = 1e-4  # proportion floor in PSI: an empty bin on one side would make it infinite
MIN_EXPECTED = 5  # chi-square cells expected to hold fewer current rows are pooled into one


@dataclass(frozen=True)
class Check:
    """One comparison: which distribution, the test, its effect, and (after `decide`) the verdict."""

    name: str  # what is compared: a feature, "<feature> (missing)", "prediction", "predicted class"
    test: str  # ks | chi2 | fisher
    effect_name: str  # psi | class shift | missing increase
    threshold: float
    rows: int
    statistic: float | None = None
    p_value: float | None = None
    effect: float | None = None
    note: str = ""
    drift: bool = False
    subject: str = "feature"  # feature | prediction: the drift score is the features' largest PSI

    def as_dict(self) -> dict[str, Any]:
        """For monitor.json: rounded so the file stays readable."""
        out = asdict(self)
        for key in ("statistic", "p_value", "effect"):
            if out[key] is not None:
                out[key] = float(f"{out[key]:.6g}")
        return out


def psi(ref_counts: list[int] | np.ndarray, cur_counts: list[int] | np.ndarray) -> float:
    """Population stability index: sum of (cur - ref) * ln(cur / ref) over bins (shares floored at EPS)."""
    ref = np.asarray(ref_counts, dtype="float64")
    cur = np.asarray(cur_counts, dtype="float64")
    if ref.sum() == 0 or cur.sum() == 0:
        return 0.0
    p = np.clip(ref / ref.sum(), EPS, None)
    q = np.clip(cur / cur.sum(), EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _numbers(values: pd.Series) -> np.ndarray:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    return x[np.isfinite(x)]


def numeric(name: str, ref: dict[str, Any], values: pd.Series, policy: MonitorParams) -> Check:
    """KS against the reference sample; PSI on the reference's quantile bins."""
    x = _numbers(values)
    check = Check(name, "ks", "psi", policy.psi, rows=len(x))
    if len(x) == 0:
        return replace(check, note="no values in the window (all missing)")
    ks = stats.ks_2samp(x, np.asarray(ref["sample"], dtype="float64"))
    effect = psi(ref["counts"], reference.bin_counts(x, ref["cuts"]))
    return replace(check, statistic=float(ks.statistic), p_value=float(ks.pvalue), effect=effect)


def _chi2(ref_counts: list[int], cur_counts: list[int]) -> tuple[float, float]:
    """Two-sample chi-square; sparse cells (by the reference's share) are pooled first."""
    ref = np.asarray(ref_counts, dtype="float64")
    cur = np.asarray(cur_counts, dtype="float64")
    n_cur = cur.sum()
    share = ref / ref.sum() if ref.sum() else np.zeros_like(ref)
    rare = share * n_cur < MIN_EXPECTED
    if rare.any():
        ref = np.append(ref[~rare], ref[rare].sum())
        cur = np.append(cur[~rare], cur[rare].sum())
    keep = (ref + cur) > 0
    table = np.vstack([ref[keep], cur[keep]])
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def categorical(name: str, ref: dict[str, Any], values: pd.Series, policy: MonitorParams) -> Check:
    """Chi-square of category counts against the reference's; PSI over categories (+ unseen)."""
    present = values[values.notna()].astype(str)
    check = Check(name, "chi2", "psi", policy.psi, rows=len(present))
    if len(present) == 0:
        return replace(check, note="no values in the window (all missing)")
    known = list(ref["counts"])
    observed = present.value_counts()
    unseen = observed[~observed.index.isin(known)]
    ref_counts = [ref["counts"][c] for c in known] + [0]
    cur_counts = [int(observed.get(c, 0)) for c in known] + [int(unseen.sum())]
    statistic, p = _chi2(ref_counts, cur_counts)
    note = ""
    if len(unseen):
        shown = ", ".join(f"{v!r} ({n})" for v, n in unseen.sort_index().head(5).items())
        note = f"unseen categories: {shown}"
    return replace(check, statistic=statistic, p_value=p, effect=psi(ref_counts, cur_counts), note=note)


def missing(name: str, ref: dict[str, Any], values: pd.Series, policy: MonitorParams) -> Check:
    """One-sided Fisher test: is the missing rate higher than the reference's? Effect: the increase."""
    n = len(values)
    # a number column counts what is not a finite number (null, NaN, a stray string) as missing
    absent = int(n - len(_numbers(values))) if ref["kind"] == "numeric" else int(values.isna().sum())
    ref_rate = ref["missing"] / ref["rows"] if ref["rows"] else 0.0
    check = Check(f"{name} (missing)", "fisher", "missing increase", policy.max_missing_increase, rows=n)
    if n == 0:
        return check
    table = [[absent, n - absent], [ref["missing"], ref["rows"] - ref["missing"]]]
    result = stats.fisher_exact(table, alternative="greater")
    return replace(
        check,
        statistic=absent / n,
        p_value=float(result.pvalue),
        effect=absent / n - ref_rate,
        note=f"{absent / n:.1%} missing (reference {ref_rate:.1%})",
    )


def classes(ref: dict[str, Any], labels: pd.Series, policy: MonitorParams) -> Check:
    """Chi-square of predicted-class counts; effect: total variation distance of the proportions."""
    known = list(ref["classes"])
    present = labels[labels.notna()].astype(str)
    check = Check(
        "predicted class",
        "chi2",
        "class shift",
        policy.max_class_shift,
        rows=len(present),
        subject="prediction",
    )
    if len(present) == 0:
        return replace(check, note="no predictions in the window")
    observed = present.value_counts()
    ref_counts = [ref["classes"][c] for c in known] + [0]
    cur_counts = [int(observed.get(c, 0)) for c in known] + [int((~present.isin(known)).sum())]
    statistic, p = _chi2(ref_counts, cur_counts)
    p_ref = np.asarray(ref_counts, dtype="float64") / max(sum(ref_counts), 1)
    p_cur = np.asarray(cur_counts, dtype="float64") / len(present)
    shares = ", ".join(
        f"{c} {q:.1%} (reference {r:.1%})" for c, q, r in zip(known, p_cur, p_ref, strict=False)
    )
    tvd = float(0.5 * np.abs(p_cur - p_ref).sum())
    return replace(check, statistic=statistic, p_value=p, effect=tvd, note=shares)


def task_of(ref: dict[str, Any]) -> str:
    """The task a reference describes (references packaged before tasks existed were binary)."""
    pred = ref["prediction"]
    return str(pred.get("task") or ("regression" if "value" in pred else "binary"))


def score_stats(ref: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The reference distribution of the prediction's one number per row, and what it is."""
    pred = ref["prediction"]
    task = task_of(ref)
    if task == "regression":
        return pred["value"], "predicted value"
    if task == "binary":
        return pred["probability"], f"P({pred.get('positive_class')})"
    return pred["probability"], str(pred.get("score") or "top probability")


def prediction(
    ref: dict[str, Any], labels: pd.Series, score: pd.Series, policy: MonitorParams
) -> list[Check]:
    """The prediction's checks for the reference's task: the score (or value) distribution, and
    for classification the predicted-class shares."""
    stats_, what = score_stats(ref)
    value = numeric("prediction", stats_, score, policy)
    checks = [replace(value, note=f"{what}: {value.note}" if value.note else what, subject="prediction")]
    if task_of(ref) != "regression":
        checks.append(classes(ref["prediction"], labels, policy))
    return checks


def compare(
    ref: dict[str, Any], inputs: pd.DataFrame, labels: pd.Series, score: pd.Series, policy: MonitorParams
) -> list[Check]:
    """Every check of one window against one reference, not yet decided (see `decide`).

    `labels` are the predicted classes (unused for regression); `score` is one number per row:
    P(positive) for binary, the top probability for multiclass, the predicted value for regression.
    """
    checks: list[Check] = []
    for name, stats_ in ref["features"].items():
        column = inputs[name] if name in inputs else pd.Series([None] * len(inputs), dtype=object)
        judge = numeric if stats_["kind"] == "numeric" else categorical
        checks.append(judge(name, stats_, column, policy))
        checks.append(missing(name, stats_, column, policy))
    return checks + prediction(ref, labels, score, policy)


def tested(checks: list[Check]) -> int:
    """How many checks produced a p-value: the m of the Bonferroni correction."""
    return sum(1 for c in checks if c.p_value is not None)


def decide(checks: list[Check], policy: MonitorParams, tests: int | None = None) -> list[Check]:
    """Flag the checks that are significant at alpha / tests and material.

    `tests` defaults to the checks given; pass the run's total when several groups (model
    versions) are judged in one run, so the whole run keeps its false-alarm rate at alpha.
    """
    level = policy.alpha / max(tests if tests is not None else tested(checks), 1)
    return [
        replace(
            c,
            drift=c.p_value is not None
            and c.effect is not None
            and c.p_value < level
            and c.effect >= c.threshold,
        )
        for c in checks
    ]
