"""The quality gate: floors (log_loss a ceiling), regression vs the champion, latency ratio."""

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
