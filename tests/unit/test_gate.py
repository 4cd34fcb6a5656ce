"""The quality gate: floors (log_loss a ceiling), regression vs the champion (significant or not),
required improvements, latency ratio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from modelops import cli
from modelops.config import GatePolicy
from modelops.errors import ParamsError
from modelops.review import gate
from modelops.review.report import ReportError, gate_from_report
from modelops.review.uncertainty import Intervals
from modelops.stats import Interval
from tests.conftest import declaration, make_params

ROOT = Path(__file__).resolve().parents[2]
POLICY = GatePolicy(
    minimum={"roc_auc": 0.80, "f1": 0.45, "log_loss": 0.50},
    max_regression={"roc_auc": 0.01, "f1": 0.03, "log_loss": 0.02},
    max_latency_ratio=2.0,
)
GOOD = {"accuracy": 0.80, "precision": 0.6, "recall": 0.55, "f1": 0.60, "roc_auc": 0.85, "log_loss": 0.42}


def outcomes(verdict: gate.Verdict) -> dict[tuple[str, str], str]:
    return {(c.kind, c.metric): c.outcome for c in verdict.checks}


def test_a_candidate_at_least_as_good_as_the_champion_passes_every_check() -> None:
    verdict = gate.evaluate(GOOD, dict(GOOD), 1.1, POLICY, "v3")
    assert verdict.passed and verdict.reasons == []
    assert set(outcomes(verdict).values()) == {"pass"}
    assert len(verdict.checks) == 3 + 3 + 1
    assert verdict.line() == "PASS: all 7 gate checks passed"


def test_a_floor_names_the_metric_the_value_and_the_minimum() -> None:
    verdict = gate.evaluate(GOOD | {"roc_auc": 0.781}, None, None, POLICY)
    assert not verdict.passed
    assert verdict.reasons == ["roc_auc 0.781 < minimum 0.800"]


def test_log_loss_minimum_is_a_ceiling() -> None:
    assert gate.evaluate(GOOD | {"log_loss": 0.49}, None, None, POLICY).passed
    verdict = gate.evaluate(GOOD | {"log_loss": 0.55}, None, None, POLICY)
    assert verdict.reasons == ["log_loss 0.550 > maximum 0.500"]


def test_a_value_equal_to_the_floor_passes() -> None:
    assert gate.evaluate(GOOD | {"roc_auc": 0.80}, None, None, POLICY).passed


def test_close_values_get_enough_decimals_to_differ() -> None:
    verdict = gate.evaluate(GOOD | {"roc_auc": 0.7996}, None, None, POLICY)
    assert verdict.reasons == ["roc_auc 0.7996 < minimum 0.8000"]


def test_a_regression_beyond_the_allowance_names_the_champion_and_the_numbers() -> None:
    champion = GOOD | {"f1": 0.652}
    verdict = gate.evaluate(GOOD, champion, 1.0, POLICY, "v3")
    assert verdict.reasons == ["f1 fell 0.052 vs champion v3 (0.652 -> 0.600; allowed 0.030)"]


def test_a_regression_within_the_allowance_passes() -> None:
    verdict = gate.evaluate(GOOD, GOOD | {"f1": 0.62}, 1.0, POLICY, "v3")
    assert verdict.passed
    assert "f1 fell 0.020 vs champion v3 (allowed 0.030)" in [c.message for c in verdict.checks]


def test_log_loss_regression_is_an_increase() -> None:
    verdict = gate.evaluate(GOOD | {"log_loss": 0.45}, GOOD | {"log_loss": 0.40}, 1.0, POLICY, "v2")
    assert verdict.reasons == ["log_loss rose 0.050 vs champion v2 (0.400 -> 0.450; allowed 0.020)"]
    # a lower log_loss is an improvement, however large
    assert gate.evaluate(GOOD | {"log_loss": 0.30}, GOOD, 1.0, POLICY, "v2").passed


def test_without_a_champion_regression_and_latency_checks_are_skipped_and_say_so() -> None:
    verdict = gate.evaluate(GOOD, None, None, POLICY)
    assert verdict.passed
    skipped = [c for c in verdict.checks if c.outcome == "skipped"]
    assert {c.kind for c in skipped} == {"regression", "latency"} and len(skipped) == 4
    assert all("no champion deployed yet" in c.message for c in skipped)
    assert verdict.line() == "PASS: all 3 gate checks passed (4 skipped)"


def test_a_slow_candidate_fails_on_the_latency_ratio() -> None:
    verdict = gate.evaluate(GOOD, GOOD, 2.5, POLICY, "v1")
    assert verdict.reasons == ["predicts 2.50x slower than the champion (allowed 2.00x)"]
    assert gate.evaluate(GOOD, GOOD, 2.0, POLICY, "v1").passed


def test_a_missing_metric_fails_instead_of_passing_silently() -> None:
    verdict = gate.evaluate({k: v for k, v in GOOD.items() if k != "f1"}, GOOD, 1.0, POLICY, "v1")
    assert "f1 is missing from the candidate's metrics" in verdict.reasons


def test_a_champion_that_cannot_be_loaded_fails_the_gate() -> None:
    verdict = gate.evaluate(GOOD, None, None, POLICY, "v4", champion_error="content hash mismatch")
    assert not verdict.passed
    assert verdict.reasons == [
        "the champion v4 could not be loaded, so regressions were not checked: content hash mismatch"
    ]


def test_every_failure_is_reported_not_only_the_first() -> None:
    verdict = gate.evaluate(GOOD | {"roc_auc": 0.70, "f1": 0.40}, GOOD, 3.0, POLICY, "v1")
    assert len(verdict.reasons) == 5  # two floors, two regressions, latency
    assert verdict.line().startswith("FAIL: f1 0.400 < minimum 0.450; roc_auc 0.700 < minimum 0.800; ")


def test_an_empty_policy_passes_with_only_the_latency_check() -> None:
    verdict = gate.evaluate(GOOD, GOOD, 1.0, GatePolicy(max_latency_ratio=2.0))
    assert verdict.passed and [c.kind for c in verdict.checks] == ["latency"]
    unbounded = gate.evaluate(GOOD, GOOD, 9.0, GatePolicy())
    assert unbounded.passed and unbounded.checks[0].outcome == "skipped"


def test_regression_metrics_use_their_direction() -> None:
    policy = GatePolicy(minimum={"r2": 0.5, "rmse": 8.0}, max_regression={"r2": 0.02, "mae": 0.5})
    good = {"rmse": 6.0, "mae": 4.0, "r2": 0.8}
    assert gate.evaluate(good, good | {"mae": 3.6}, None, policy, "v1").passed
    verdict = gate.evaluate(good | {"rmse": 9.0, "mae": 4.7}, good, None, policy, "v1")
    assert verdict.reasons == [
        "rmse 9.000 > maximum 8.000",
        "mae rose 0.700 vs champion v1 (4.000 -> 4.700; allowed 0.500)",
    ]


def test_enforce_all_names_each_failing_model_with_its_reasons() -> None:
    ok = gate.evaluate(GOOD, None, None, POLICY)
    bad = gate.evaluate(GOOD | {"roc_auc": 0.70}, GOOD, 1.0, POLICY, "v2")
    gate.enforce_all({"a": ok})
    gate.enforce_all({})  # no changed model: nothing to fail
    with pytest.raises(gate.GateFailed) as info:
        gate.enforce_all({"a": ok, "b": bad})
    text = str(info.value)
    assert "failed for 1 of 2 changed models" in text
    assert "  b:\n    - roc_auc 0.700 < minimum 0.800" in text and "  a:" not in text


def test_enforce_raises_gate_failed_with_every_reason_and_exit_code_10() -> None:
    verdict = gate.evaluate(GOOD | {"roc_auc": 0.70}, None, None, POLICY)
    with pytest.raises(gate.GateFailed) as info:
        gate.enforce(verdict)
    assert info.value.exit_code == 10
    assert "roc_auc 0.700 < minimum 0.800" in str(info.value)
    gate.enforce(gate.evaluate(GOOD, None, None, POLICY))  # a pass raises nothing


def test_verdict_to_dict_is_json_ready() -> None:
    data = gate.evaluate(GOOD, None, None, POLICY).to_dict()
    assert json.loads(json.dumps(data))["passed"] is True
    assert {"kind", "metric", "outcome", "message", "value", "bound"} <= set(data["checks"][0])


# --------------------------------------------------------------------------- `modelops gate`

# Two models on two tasks, each with its own gate: credit's task default plus an override.
DATASETS = {"credit": declaration("credit"), "concrete": declaration("concrete")}
GATE = {
    "binary": POLICY.model_dump(),
    "regression": {"minimum": {"r2": 0.5}, "max_regression": {"r2": 0.02}},
}
MODELS = {
    "tiny": {"dataset": "credit", "estimator": "hist_gradient_boosting", "gate": {"minimum": {"f1": 0.5}}},
    "reg": {"dataset": "concrete", "estimator": "ridge"},
}
REG = {"rmse": 6.0, "mae": 4.0, "r2": 0.8}


def _report(tmp_path: Path, models: dict[str, tuple[dict, dict | None, float | None]]) -> Path:
    path = tmp_path / "report" / "report.json"
    path.parent.mkdir(exist_ok=True)
    entries = {
        name: {
            "gate_inputs": {
                "candidate": candidate,
                "champion": champion,
                "champion_version": "v3",
                "latency_ratio": ratio,
            }
        }
        for name, (candidate, champion, ratio) in models.items()
    }
    path.write_text(json.dumps({"models": entries}))
    return path


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    for name in DATASETS:
        (tmp_path / "data" / name).mkdir(parents=True)
        shutil.copy(ROOT / "data" / name / "dataset.yaml", tmp_path / "data" / name / "dataset.yaml")
    raw = {"datasets": {name: {} for name in DATASETS}, "gate": GATE, "models": MODELS}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_gate_from_report_re_evaluates_each_model_under_its_own_policy(tmp_path: Path) -> None:
    params = make_params(MODELS, DATASETS, gate=GATE)
    path = _report(
        tmp_path, {"tiny": (GOOD, GOOD | {"f1": 0.7}, 1.0), "reg": (REG | {"r2": 0.4}, None, None)}
    )
    verdicts = gate_from_report(path, params)
    assert list(verdicts) == ["tiny", "reg"]
    # tiny: the binary default's regression rule and the model's own f1 floor (0.5 over 0.45)
    assert verdicts["tiny"].reasons == ["f1 fell 0.100 vs champion v3 (0.700 -> 0.600; allowed 0.030)"]
    assert ("minimum", "f1") in outcomes(verdicts["tiny"])
    assert next(c.bound for c in verdicts["tiny"].checks if c.metric == "f1" and c.kind == "minimum") == 0.5
    # reg: the regression default
    assert verdicts["reg"].reasons == ["r2 0.400 < minimum 0.500"]


def test_gate_from_report_refuses_an_old_report_and_an_unknown_model(tmp_path: Path) -> None:
    params = make_params(MODELS, DATASETS, gate=GATE)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"gate_inputs": {"candidate": GOOD}}))
    with pytest.raises(ReportError, match="no per-model gate inputs"):
        gate_from_report(old, params)
    with pytest.raises(ParamsError, match="no model 'gone'"):
        gate_from_report(_report(tmp_path, {"gone": (GOOD, None, None)}), params)


def test_gate_command_exits_0_on_pass_and_10_naming_each_failing_model(
    tmp_path: Path, params_file: Path
) -> None:
    runner = CliRunner()
    ok = _report(tmp_path, {"tiny": (GOOD, GOOD, 1.0), "reg": (REG, REG, 1.0)})
    result = runner.invoke(cli.app, ["gate", "--report", str(ok), "--params", str(params_file)])
    assert result.exit_code == 0, result.output
    assert "tiny: PASS: all" in result.stdout and "reg: PASS: all" in result.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(ok.read_text().replace('"roc_auc": 0.85', '"roc_auc": 0.7'))
    result = runner.invoke(cli.app, ["gate", "--report", str(bad), "--params", str(params_file)])
    assert result.exit_code == 10
    assert "tiny:\n    - roc_auc 0.700 < minimum 0.800" in result.stderr
    assert "reg:" not in result.stderr


def test_gate_command_passes_when_no_model_changed(tmp_path: Path, params_file: Path) -> None:
    empty = _report(tmp_path, {})
    result = CliRunner().invoke(cli.app, ["gate", "--report", str(empty), "--params", str(params_file)])
    assert result.exit_code == 0, result.output
    assert "no model changed" in result.stdout


def test_gate_command_without_a_report_says_to_run_report_first(tmp_path: Path, params_file: Path) -> None:
    result = CliRunner().invoke(
        cli.app, ["gate", "--report", str(tmp_path / "none.json"), "--params", str(params_file)]
    )
    assert result.exit_code == 5
    assert "run `modelops report` first" in result.stderr


# --------------------------------------------------------------------------- intervals


def intervals(**deltas: tuple[float, float, float]) -> Intervals:
    return Intervals({m: Interval(*v) for m, v in deltas.items()}, 0.95, 1000, 0, 872)


# f1 0.652 -> 0.600 (allowed 0.030): within noise, or significant
F1_NOISE = intervals(f1=(-0.052, -0.110, 0.004))
F1_WORSE = intervals(f1=(-0.052, -0.080, -0.020))


def test_a_regression_beyond_the_allowance_within_noise_passes_and_says_so() -> None:
    champion = GOOD | {"f1": 0.652}
    verdict = gate.evaluate(GOOD, champion, 1.0, POLICY, "v3", intervals=F1_NOISE)
    assert verdict.passed
    [check] = [c for c in verdict.checks if (c.kind, c.metric) == ("regression", "f1")]
    assert check.outcome == "pass" and (check.value, check.bound) == (pytest.approx(0.052), 0.03)
    assert check.message == (
        "f1 fell 0.052 vs champion v3, more than the 0.030 allowed, but within noise: "
        "its 95% interval [-0.1100, +0.0040] includes 0"
    )


def test_a_significant_regression_beyond_the_allowance_fails_with_its_interval() -> None:
    verdict = gate.evaluate(GOOD, GOOD | {"f1": 0.652}, 1.0, POLICY, "v3", intervals=F1_WORSE)
    assert verdict.reasons == [
        "f1 fell 0.052 vs champion v3 (0.652 -> 0.600; allowed 0.030; 95% interval [-0.0800, -0.0200], "
        "significant)"
    ]


def test_without_significant_regression_noise_beyond_the_allowance_fails() -> None:
    policy = POLICY.model_copy(update={"significant_regression": False})
    verdict = gate.evaluate(GOOD, GOOD | {"f1": 0.652}, 1.0, policy, "v3", intervals=F1_NOISE)
    assert verdict.reasons == [
        "f1 fell 0.052 vs champion v3 (0.652 -> 0.600; allowed 0.030; 95% interval [-0.1100, +0.0040]: "
        "within noise, but significance is not required)"
    ]


def test_significance_of_a_lower_is_better_regression_is_an_interval_above_zero() -> None:
    worse = GOOD | {"log_loss": 0.45}
    rose = intervals(log_loss=(0.03, 0.012, 0.047))  # the challenger's log_loss is significantly higher
    noise = intervals(log_loss=(0.03, -0.004, 0.061))
    assert gate.evaluate(worse, GOOD, 1.0, POLICY, "v2", intervals=noise).passed
    verdict = gate.evaluate(worse, GOOD, 1.0, POLICY, "v2", intervals=rose)
    assert verdict.reasons == [
        "log_loss rose 0.030 vs champion v2 (0.420 -> 0.450; allowed 0.020; 95% interval "
        "[+0.0120, +0.0470], significant)"
    ]
    # below zero would be a significant improvement: not a regression at all
    assert gate.evaluate(
        GOOD, worse, 1.0, POLICY, "v2", intervals=intervals(log_loss=(-0.03, -0.05, -0.01))
    ).passed


def test_a_regression_without_a_recorded_interval_is_judged_on_its_point_value() -> None:
    verdict = gate.evaluate(GOOD, GOOD | {"f1": 0.652}, 1.0, POLICY, "v3", intervals=intervals())
    assert verdict.reasons == ["f1 fell 0.052 vs champion v3 (0.652 -> 0.600; allowed 0.030)"]


def test_require_improvement_passes_only_a_significant_improvement_in_the_metrics_direction() -> None:
    policy = GatePolicy(require_improvement=["log_loss", "roc_auc"])
    better = intervals(roc_auc=(0.012, 0.004, 0.02), log_loss=(-0.02, -0.03, -0.01))
    verdict = gate.evaluate(GOOD, GOOD, 1.0, policy, "v3", intervals=better)
    assert verdict.passed
    # the project's metric order, whatever the policy's
    assert [(c.kind, c.metric) for c in verdict.checks] == [
        ("improvement", "roc_auc"),
        ("improvement", "log_loss"),
        ("latency", "latency"),
    ]
    assert verdict.checks[0].message == (
        "roc_auc improved significantly on champion v3: +0.0120 (95% interval [+0.0040, +0.0200])"
    )
    mixed = intervals(roc_auc=(0.0019, -0.003, 0.007), log_loss=(0.02, 0.01, 0.03))
    verdict = gate.evaluate(GOOD, GOOD, 1.0, policy, "v3", intervals=mixed)
    assert verdict.reasons == [
        "roc_auc must improve significantly on champion v3; it is within noise: +0.0019 "
        "(95% interval [-0.0030, +0.0070])",
        "log_loss must improve significantly on champion v3; it got significantly worse: +0.0200 "
        "(95% interval [+0.0100, +0.0300])",
    ]


def test_require_improvement_is_skipped_before_a_first_deployment_and_fails_without_intervals() -> None:
    policy = GatePolicy(require_improvement=["f1"])
    first = gate.evaluate(GOOD, None, None, policy)
    assert first.passed
    assert [c.message for c in first.checks if c.kind == "improvement"] == [
        "f1: no champion deployed yet, improvement not required"
    ]
    verdict = gate.evaluate(GOOD, GOOD, 1.0, policy, "v3")
    assert verdict.reasons == ["f1 must improve significantly on champion v3, but no interval was recorded"]
    missing = gate.evaluate({"roc_auc": 0.9}, GOOD, 1.0, policy, "v3", intervals=F1_WORSE)
    assert missing.reasons == ["f1 is missing from the candidate's metrics"]


def test_policy_merge_keeps_explicit_false_and_empty_and_inherits_none() -> None:
    task = GatePolicy(significant_regression=False, require_improvement=["f1"])
    assert GatePolicy().over(task).significant_regression is False  # None inherits the task's false
    assert GatePolicy(significant_regression=True).over(task).significant_regression is True
    assert GatePolicy(require_improvement=[]).over(task).require_improvement == []
    assert GatePolicy().over(task).require_improvement == ["f1"]
    assert not task.needs_significance and GatePolicy().needs_significance  # unset: the default, true
    assert (
        GatePolicy(significant_regression=False)
        .over(GatePolicy(significant_regression=True))
        .needs_significance
        is False
    )


def test_the_task_default_is_significant_and_each_level_overrides_key_by_key() -> None:
    gates = GATE | {
        "binary": POLICY.model_dump(exclude_none=True) | {"significant_regression": False},
        "regression": GATE["regression"] | {"require_improvement": ["rmse"]},
    }
    models = MODELS | {
        "strict": {
            "dataset": "credit",
            "estimator": "random_forest",
            "gate": {"require_improvement": ["f1"]},
        },
        "noisy": {"dataset": "concrete", "estimator": "ridge", "gate": {"significant_regression": True}},
    }
    params = make_params(models, DATASETS, gate=gates)
    assert make_params(MODELS, DATASETS, gate=GATE).gate_policy("reg").significant_regression is True
    tiny, strict = params.gate_policy("tiny"), params.gate_policy("strict")
    assert tiny.significant_regression is False and tiny.require_improvement is None
    assert strict.significant_regression is False and strict.require_improvement == ["f1"]
    reg, noisy = params.gate_policy("reg"), params.gate_policy("noisy")
    assert reg.significant_regression is True and reg.require_improvement == ["rmse"]
    assert noisy.significant_regression is True and noisy.require_improvement == ["rmse"]


def test_gate_from_report_applies_the_policy_to_the_recorded_intervals(tmp_path: Path) -> None:
    path = _report(tmp_path, {"tiny": (GOOD, GOOD | {"f1": 0.652}, 1.0)})
    data = json.loads(path.read_text())
    data["models"]["tiny"]["gate_inputs"]["intervals"] = F1_NOISE.to_dict()
    path.write_text(json.dumps(data))
    assert gate_from_report(path, make_params(MODELS, DATASETS, gate=GATE))["tiny"].passed
    strict = GATE | {"binary": POLICY.model_dump(exclude_none=True) | {"significant_regression": False}}
    [reason] = gate_from_report(path, make_params(MODELS, DATASETS, gate=strict))["tiny"].reasons
    assert reason.startswith("f1 fell 0.052") and "within noise, but significance is not required" in reason
    wanting = MODELS | {"tiny": MODELS["tiny"] | {"gate": {"require_improvement": ["roc_auc"]}}}
    [reason] = gate_from_report(path, make_params(wanting, DATASETS, gate=GATE))["tiny"].reasons
    assert reason == "roc_auc must improve significantly on champion v3, but no interval was recorded"

    data["models"]["tiny"]["gate_inputs"]["intervals"]["deltas"]["f1"] = {"value": -0.05}
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match=r"models\.tiny\.gate_inputs: malformed"):
        gate_from_report(path, make_params(MODELS, DATASETS, gate=GATE))
