"""What `modelops analyze` writes: `<out>/<model>.md` for people (a PR body, a commit message) and
`<out>/<model>.json` for machines (`modelops conclude`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from modelops.monitoring import rule
from modelops.monitoring.canary import Analysis
from modelops.monitoring.logs import iso
from modelops.params_after import CanaryMargins, CanaryParams

ICON = {"promote": "✅", "abort": "🛑", "wait": "⏸️"}
MARGIN_OF = {
    "errors": "error_rate",
    "slow": "slow_rate",
    "online_error": "online_error",
    "online_abs_error": "online_abs_error_ratio",
}
WHAT = {
    "errors": "share of requests answered 5xx",
    "slow": "share of requests slower than the latency bucket bound at or above the pooled p95",
    "online_error": "share of fed-back rows misclassified",
    "online_abs_error": "mean absolute error of fed-back rows",
}


def rule_lines(plan: rule.Plan, margins: CanaryMargins) -> list[str]:
    """The rule with this analysis' numbers, as markdown."""
    m = margins.model_dump()
    return [
        f'Each of the k = {plan.k} active checks tests H0 "the canary is no worse than main" '
        '(delta <= 0) against H1 "worse by at least the check\'s margin" with a one-sided test: '
        "Fisher's exact test for shares, Welch's z for the regression loss, the paired z for a "
        f"shadow's outcomes. It rejects H0 when its p-value is below alpha/k = {plan.level:.4g} "
        f"(alpha = {plan.alpha:g}, Bonferroni; z > {plan.z_alpha:.3f} for the z-tests): a healthy "
        f"canary is aborted with probability at most {plan.alpha:g}.",
        "",
        "A check answers only with n_req samples per predictor: n_req = max(min_samples, "
        "ceil((z(1 - alpha/k) + z(1 - beta))^2 * (var_main + var_alt) / margin^2)), "
        f"min_samples = {plan.min_samples}, z(1 - beta) = {plan.z_beta:.3f} (beta = {plan.beta:g}): "
        f"a canary worse by the margin is promoted with probability at most {plan.beta:g}. "
        "var_main is main's variance, var_alt the alternative's (a share p + margin; a loss (1 + "
        "ratio) times main's), estimated from both predictors' samples pooled; shares add Fleiss' "
        "continuity correction for the exact test. `slow` counts effective samples: each "
        "predictor's requests divided by the dispersion of its slow share over time blocks (at least "
        "1), since a stalled server answers a burst of requests slowly together.",
        "",
        f"Margins (`canary.margins`): error_rate {m['error_rate']:g}, slow_rate {m['slow_rate']:g}, "
        f"online_error {m['online_error']:g} (absolute shares); online_abs_error_ratio "
        f"{m['online_abs_error_ratio']:g} (times main's mean absolute error).",
        "",
        "Answer: **abort** if any check rejects H0; **promote** if every active check has its n_req "
        "and none rejects; **wait** otherwise. Each check decides on the first n_req samples of "
        "each predictor (in time order; for counters, from Prometheus or the local runtime's "
        "history, the first moment both had n_req), so a later run does not re-roll the dice.",
    ]


def _n(value: float | None, spec: str = ",.0f") -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def _arm(arm: rule.Arm | None, kind: str) -> str:
    if arm is None:
        return "—"
    if kind == "mean":
        return f"{_n(arm.n)}: mean {arm.mean:.4g}"
    if arm.events is not None:
        return f"{_n(arm.events)} / {_n(arm.n)} = {arm.mean:.4g}"
    return f"{_n(arm.n)}: {arm.mean:.4g}"


def render_markdown(a: Analysis) -> str:
    """The report: the answer and why, the predictors, each check, what informs, the rule."""
    p = a.pair
    share = "shadow (mirrored)" if p.kind == "shadow" else f"{p.canary.traffic}%"
    lines = [
        f"## {ICON[a.decision]} {a.headline}",
        "",
        f"Why: {a.reason}.",
        "",
        "| predictor | version | content hash | traffic |",
        "|---|---|---|---|",
        f"| main | {p.main.version} | `{p.main.content_hash[:12]}` | {p.main.traffic}% |",
        f"| {p.canary.name} | {p.canary.version} | `{p.canary.content_hash[:12]}` | {share} |",
        "",
        f"Window {iso(a.since)} to {iso(a.until)}; counters from {a.source}; logs `{a.log_dir}`.",
        "",
        "### Checks",
        "",
        "| check | margin | n_req | main | canary | delta | z | p-value | level | answer |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for c in a.checks:
        answer = {"abort": "**worse: abort**", "pass": "no worse", "wait": "wait", "inactive": "inactive"}
        lines.append(
            f"| {c.name} | {_n(c.margin, '.4g')} | {_n(c.n_req)} | {_arm(c.main, c.kind)} | "
            f"{_arm(c.canary, c.kind)} | {_n(c.delta, '+.4g')} | {_n(c.z, '.3f')} | {_n(c.p_value, '.3g')} "
            f"| {_n(c.level, '.3g')} | {answer[c.status]} |"
        )
    lines.append("")
    for c in a.checks:
        detail = "; ".join(x for x in (c.samples, c.note) if x)
        lines.append(f"- **{c.name}** ({WHAT[c.name]}; {c.test}): {detail or '—'}")
    lines += ["", "### How the predictions differ (informs; does not decide)", "", *_info(a.info, p.kind), ""]
    lines += ["### The rule", "", *rule_lines(a.plan, a.margins), ""]
    if a.skipped:
        lines += ["Unreadable log lines were skipped, e.g.:", "", *(f"- `{s}`" for s in a.skipped), ""]
    if a.queries:
        lines += ["<details><summary>Queries</summary>", "", "```", *a.queries, "```", "", "</details>", ""]
    return "\n".join(lines)


def _info(info: dict[str, Any], kind: str) -> list[str]:
    rows = info.get("rows", {})
    lines = [
        f"Inference-log rows in the window: main {rows.get('main', 0):,}, {kind} {rows.get('canary', 0):,}."
    ]
    if note := info.get("note"):
        return [*lines, "", f"{note}."]
    if score := info.get("score"):
        lines.append(
            f"- {score['what']}: PSI {score['psi']:.3f} on main's quantile bins; mean "
            f"{score['main_mean']:.4g} (main), {score['canary_mean']:.4g} ({kind})."
        )
    if classes := info.get("classes"):
        shares = ", ".join(
            f"{k} {classes['main'][k]:.1%} → {classes['canary'][k]:.1%}" for k in classes["main"]
        )
        lines.append(
            f"- predicted classes (main → {kind}): {shares}; total variation {classes['shift']:.3f}."
        )
    if (agree := info.get("agreement")) is not None:
        if "same_class" in agree:
            lines.append(
                f"- agreement with main on {agree['pairs']:,} shared requests: {agree['same_class']:.1%}."
            )
        elif "mean_abs_difference" in agree:
            lines.append(
                f"- on {agree['pairs']:,} shared requests the shadow's value differs from main's by "
                f"{agree['mean_abs_difference']:.4g} on average."
            )
        else:
            lines.append("- no request was logged by both main and the shadow.")
    return lines


def to_json(a: Analysis) -> dict[str, Any]:
    """`<model>.json`: the answer, the predictors, every check and the rule's numbers."""
    p = a.pair
    return {
        "model": p.model,
        "env": p.env,
        "decision": a.decision,
        "reason": a.reason,
        "exit_code": a.exit_code,
        "task": a.task,
        "window": {"since": iso(a.since), "until": iso(a.until)},
        "main": {
            "predictor": p.main.name,
            "version": p.main.version,
            "hash": p.main.content_hash,
            "traffic": p.main.traffic,
        },
        "canary": {
            "kind": p.kind,
            "predictor": p.canary.name,
            "version": p.canary.version,
            "hash": p.canary.content_hash,
            "traffic": p.canary.traffic,
        },
        "checks": [c.as_dict() for c in a.checks],
        "info": a.info,
        "rule": {
            "alpha": a.plan.alpha,
            "beta": a.plan.beta,
            "k": a.plan.k,
            "z_alpha": round(a.plan.z_alpha, 6),
            "z_beta": round(a.plan.z_beta, 6),
            "min_samples": a.plan.min_samples,
            "margins": a.margins.model_dump(),
            "text": "\n".join(rule_lines(a.plan, a.margins)),
        },
        "evidence": {
            "counters": a.source,
            "queries": a.queries,
            "logs": str(a.log_dir),
            "skipped_examples": a.skipped,
        },
    }


def write(a: Analysis, out: Path) -> tuple[Path, Path]:
    """Write `<out>/<model>.md` and `<out>/<model>.json`, each whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{a.pair.model}.md", out / f"{a.pair.model}.json"
    for path, text in (
        (js, json.dumps(to_json(a), indent=2, sort_keys=True) + "\n"),
        (md, render_markdown(a)),
    ):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return md, js


# The situations docs/delivery.md tabulates n_req for, by what main looks like.
HALF_NORMAL_CV2 = math.pi / 2 - 1  # |error| of normally distributed errors: var / mean^2


def sample_sizes(
    alpha: float, beta: float, min_samples: int, margins: dict[str, float], k: int
) -> list[tuple[str, str, int]]:
    """(check, condition, n_req per predictor) for the default situations, at k active checks."""
    plan = rule.Plan(alpha, beta, k, min_samples)
    rows = []

    def share(check: str, margin: float, rates: tuple[float, ...], what: str) -> None:
        for p in rates:
            n = plan.n_required(float(rule.share_variance(p, margin)), margin, share=True)
            rows.append((check, f"{what} up to {p:.1%}", int(n)))

    share("errors", margins["error_rate"], (0.001, 0.01), "main's 5xx share")
    share("slow", margins["slow_rate"], (0.05,), "share above the bound (by construction)")
    share("online_error", margins["online_error"], (0.1, 0.2, 0.3), "main's misclassified share")
    r = margins["online_abs_error_ratio"]
    for cv2, what in (
        (HALF_NORMAL_CV2, "normal errors (CV of the absolute error 0.76)"),
        (1.0, "CV of the absolute error up to 1"),
    ):
        rows.append(("online_abs_error", what, int(plan.n_required(cv2 * (1 + (1 + r) ** 2), r))))
    m = margins["online_error"]
    for q in (0.05, 0.1, 0.2):
        n = plan.n_required(max(q, m * (1 - m)), m)
        rows.append(("online_error, shadow (pairs)", f"answers differ from main's on up to {q:.0%}", int(n)))
    for s in (0.5, 1.0):  # the paired differences' spread, relative to main's mean |error|
        n = plan.n_required(s**2, r)
        rows.append(
            (
                "online_abs_error, shadow (pairs)",
                f"sd of the absolute-error differences up to {s:g} x main's mean absolute error",
                int(n),
            )
        )
    return rows


def sample_size_table(params: CanaryParams) -> str:
    """n_req per predictor for `params` (docs/delivery.md holds it for the defaults, tested)."""
    margins = params.margins.model_dump()
    two, three = (sample_sizes(params.alpha, params.beta, params.min_samples, margins, k) for k in (2, 3))
    lines = [
        "| check | situation | n_req, no outcomes (k = 2) | n_req, with outcomes (k = 3) |",
        "|---|---|---:|---:|",
    ]
    for (check, situation, n2), (_, _, n3) in zip(two, three, strict=True):
        first = f"{n2:,}" if check in ("errors", "slow") else "—"
        lines.append(f"| {check} | {situation} | {first} | {n3:,} |")
    return "\n".join(lines) + "\n"
