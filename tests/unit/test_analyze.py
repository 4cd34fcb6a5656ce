"""`modelops analyze` and `modelops canaries` around the rule: which predictors the manifests name,
the feedback log read against its contract, the online checks (two samples, or pairs for a shadow),
the report and the JSON. The rule itself is measured in test_canary_rule.py; the whole command
runs against real servers (and a real Prometheus) in tests/integration/test_analyze.py."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modelops import cli
from modelops.delivery.promote import Extra, Release, render_state
from modelops.monitoring import analysis_render, canary, rule
from modelops.monitoring.counters import AnalysisError, ArmCounts, runtime_backends, slow_bound
from modelops.params_after import CanaryParams
from modelops.workspace import PROJECT_ROOT
from tests import feedback_log

MODEL = "credit-hgb"
A = Release("v1", "a" * 64, f"file:///store/{MODEL}/{'a' * 64}/")
B = Release("v2", "b" * 64, f"file:///store/{MODEL}/{'b' * 64}/")
C = Release("v3", "c" * 64, f"file:///store/{MODEL}/{'c' * 64}/")
SINCE = datetime(2026, 11, 23, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch copy of the project's gitops/, params.yaml and declarations, as the cwd."""
    shutil.copytree(PROJECT_ROOT / "gitops", tmp_path / "gitops")
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    for declaration in PROJECT_ROOT.glob("data/*/dataset.yaml"):
        (tmp_path / declaration.parent.relative_to(PROJECT_ROOT)).mkdir(parents=True)
        shutil.copy(declaration, tmp_path / declaration.relative_to(PROJECT_ROOT))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def deploy(root: Path, main: Release, extras: list[Extra], env: str = "production") -> None:
    path = root / "gitops" / "envs" / env / f"{MODEL}.yaml"
    path.write_text(render_state(path, MODEL, main, extras))


# --------------------------------------------------------------------------- the predictors


def test_the_manifest_names_main_and_the_canary_or_the_shadow(project: Path) -> None:
    deploy(project, A, [Extra("canary", B, 20), Extra("shadow", C, 0)])
    pair = canary.predictors(MODEL, "production")
    assert (pair.kind, pair.namespace, pair.canary.traffic) == ("canary", "modelops-production", 20)
    assert (pair.main.version, pair.canary.version, pair.hashes) == (
        "v1",
        "v2",
        (A.content_hash, B.content_hash),
    )
    shadow = canary.predictors(MODEL, "production", which="shadow")
    assert (shadow.kind, shadow.canary.version) == ("shadow", "v3")


def test_a_model_without_canary_or_shadow_is_an_error_naming_its_predictors(project: Path) -> None:
    deploy(project, A, [])
    with pytest.raises(
        AnalysisError, match=r"credit-hgb has no canary or shadow .* \(predictors: main v1\)"
    ) as e:
        canary.predictors(MODEL, "production")
    assert e.value.exit_code == 14
    with pytest.raises(AnalysisError, match="unknown env 'qa'"):
        canary.predictors(MODEL, "qa")
    result = CliRunner().invoke(
        cli.app, ["analyze", MODEL, "--env", "production", "--runtime", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 14 and "has no canary or shadow" in result.output


def test_canaries_lists_the_models_with_a_canary_or_shadow(project: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli.app, ["canaries", "--env", "production"]).output == ""
    assert json.loads(runner.invoke(cli.app, ["canaries", "--env", "production", "--json"]).output) == []
    deploy(project, A, [Extra("shadow", B, 0)])
    deploy(project, A, [Extra("canary", B, 10)], env="staging")
    assert runner.invoke(cli.app, ["canaries", "--env", "production"]).output == f"{MODEL}\n"
    assert json.loads(runner.invoke(cli.app, ["canaries", "--env", "staging", "--json"]).output) == [MODEL]
    bad = runner.invoke(cli.app, ["canaries", "--env", "qa"])
    assert bad.exit_code == 14 and "unknown env 'qa'" in bad.output


# --------------------------------------------------------------------------- the feedback log


def test_outcomes_are_read_against_the_contract_with_bad_lines_counted(tmp_path: Path) -> None:
    lines = feedback_log.outcomes(A.content_hash, "v1", ["good", "bad", "good"], ["good", "good", "bad"])
    feedback_log.write(tmp_path, lines)
    day = tmp_path / MODEL / "feedback" / "2026-11-23"
    with (day / "000000-1-0.jsonl").open("a") as fh:
        fh.write('{"model": "credit-hgb", "ts": "2026-11-23T07:00:00Z"}\n')  # no hash, truth, ...
        fh.write(json.dumps(lines[0] | {"model": "other"}) + "\n")
        fh.write('{"model": "credit-hgb", "ts": "2026-11-2')  # a torn last line
    (tmp_path / MODEL / "feedback" / "2026-11-25").mkdir()  # outside the window: not read
    found = canary.read_outcomes(tmp_path, MODEL, "binary", SINCE, UNTIL)
    assert [r["outcome"].loss for r in found.rows] == [0.0, 1.0, 1.0]
    assert found.skipped == 3 and "no 64-hex 'hash'" in found.skip_examples[0]
    # the inference log's reader does not take the feedback directory for a day of inference rows
    from modelops.monitoring.logs import read_records

    assert read_records(tmp_path, MODEL, SINCE, UNTIL).files == 0


def test_a_regression_outcome_is_its_absolute_error(tmp_path: Path) -> None:
    feedback_log.write(tmp_path, feedback_log.outcomes(A.content_hash, "v1", [10.0, 3.0], [12.5, 3.0]))
    found = canary.read_outcomes(tmp_path, MODEL, "regression", SINCE, UNTIL)
    assert [r["outcome"].loss for r in found.rows] == [2.5, 0.0]


def _pair(kind: str = "canary") -> canary.Pair:
    from modelops.runtime.desired import PredictorSpec

    def spec(name: str, release: Release, traffic: int, shadow: bool = False) -> PredictorSpec:
        return PredictorSpec(name, traffic, shadow, 1, release.uri, release.version, release.content_hash, ())

    extra = spec("shadow", B, 0, True) if kind == "shadow" else spec("canary", B, 25)
    return canary.Pair(MODEL, "production", "modelops-production", spec("main", A, 75), extra)


def _classified(rng: np.random.Generator, release: Release, n: int, wrong: float, **kw) -> list[dict]:
    truths = rng.choice(["good", "bad"], n)
    flip = rng.random(n) < wrong
    predictions = np.where(flip, np.where(truths == "good", "bad", "good"), truths)
    return feedback_log.outcomes(
        release.content_hash, release.version, truths.tolist(), predictions.tolist(), **kw
    )


def test_a_canary_misclassifying_more_is_aborted_and_a_shadow_is_judged_on_the_same_rows(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    plan = rule.Plan(0.05, 0.1, 1, 20)
    margins = CanaryParams(margins={"online_error": 0.2}).margins  # n_req ~ 70: a small window decides
    # main from 06:00 to 08:00, the canary from 07:00: main's earlier rows are not compared
    feedback_log.write(tmp_path, _classified(rng, A, 1800, 0.1, step=timedelta(seconds=4)))
    late = feedback_log.START + timedelta(hours=1)
    feedback_log.write(tmp_path, _classified(rng, B, 600, 0.4, start=late), name="000000-2-0.jsonl")
    found = canary.read_outcomes(tmp_path, MODEL, "binary", SINCE, UNTIL)
    result = canary.online_check(_pair(), plan, margins, "binary", found)
    assert (result.name, result.status) == ("online_error", "abort")
    assert result.main.n == result.canary.n == result.n_req and result.p_value < plan.level
    assert result.n_req < 600  # main's 900 rows before 07:00 were left out, or it would have had them

    # a shadow: the same request ids; its answers differ from main's on a few rows only
    shadow_dir = tmp_path / "shadow"
    ids = [f"{i:032x}" for i in range(400)]
    truths = rng.choice(["good", "bad"], 400).tolist()
    main_pred = [t if rng.random() > 0.2 else ("bad" if t == "good" else "good") for t in truths]
    shadow_pred = [p if i % 50 else ("bad" if p == "good" else "good") for i, p in enumerate(main_pred)]
    feedback_log.write(
        shadow_dir, feedback_log.outcomes(A.content_hash, "v1", truths, main_pred, request_ids=ids)
    )
    feedback_log.write(
        shadow_dir,
        feedback_log.outcomes(B.content_hash, "v2", truths, shadow_pred, request_ids=ids),
        name="b.jsonl",
    )
    found = canary.read_outcomes(shadow_dir, MODEL, "binary", SINCE, UNTIL)
    paired = canary.online_check(_pair("shadow"), plan, margins, "binary", found)
    assert (paired.kind, paired.status) == ("paired", "pass")
    assert paired.samples.startswith("first") and "pairs" in paired.samples


def test_no_outcomes_leave_the_online_check_out_of_the_rule(tmp_path: Path) -> None:
    found = canary.read_outcomes(tmp_path, MODEL, "binary", SINCE, UNTIL)
    result = canary.online_check(
        _pair(), rule.Plan(0.05, 0.1, 2, 200), CanaryParams().margins, "binary", found
    )
    assert result.status == "inactive" and "no outcomes" in result.note


# --------------------------------------------------------------------------- counters


def test_the_latency_bound_is_the_bucket_at_or_above_the_pooled_p95() -> None:
    inf = float("inf")
    main = ArmCounts(100, 0, {0.005: 90, 0.01: 97, 0.025: 100, inf: 100})
    slow = ArmCounts(100, 0, {0.005: 50, 0.01: 80, 0.025: 99, inf: 100})
    assert slow_bound(main) == 0.01 and slow_bound(main, slow) == 0.025
    assert main.above(0.01) == 3 and slow_bound(ArmCounts(10, 0, {0.005: 0, inf: 10})) is None


def test_the_runtime_must_serve_what_git_says() -> None:
    status = {
        "env": "production",
        "deployments": [
            {
                "namespace": "modelops-production",
                "name": MODEL,
                "predictors": [{"content_hash": A.content_hash, "backends": ["http://127.0.0.1:1"]}],
            }
        ],
    }
    assert runtime_backends(status, "modelops-production", MODEL, (A.content_hash,)) == {
        A.content_hash: ["http://127.0.0.1:1"]
    }
    with pytest.raises(AnalysisError, match="behind gitops/"):
        runtime_backends(status, "modelops-production", MODEL, (A.content_hash, B.content_hash))


# --------------------------------------------------------------------------- the report


def test_the_report_and_json_carry_the_answer_the_checks_and_the_rule(tmp_path: Path) -> None:
    plan = rule.Plan(0.05, 0.1, 2, 200)
    checks = [
        rule.counts("errors", plan, 0.01, (2, 5000), (30, 5000), "counters from A to B (first n_req)"),
        rule.Result("slow", "proportion", "wait", 0.05, note="no timed requests yet"),
        rule.Result("online_error", "proportion", "inactive", note="no outcomes fed back"),
    ]
    decision, reason = rule.decide(checks)
    result = canary.Analysis(
        _pair(), SINCE, UNTIL, "binary", plan, CanaryParams().margins, checks, decision, reason,
        "Prometheus at http://prom", ["sum by (hash) (...)"], tmp_path,
        {"rows": {"main": 0, "canary": 0}, "note": "no inference-log rows of main in the window"},
    )  # fmt: skip
    assert (decision, result.exit_code) == ("abort", 20)
    md, js = analysis_render.write(result, tmp_path / "out")
    data = json.loads(js.read_text())
    assert {"model", "env", "decision", "canary", "main", "checks", "rule"} <= set(data)
    assert data["canary"] == {
        "kind": "canary", "predictor": "canary", "version": "v2", "hash": B.content_hash, "traffic": 25
    }  # fmt: skip
    assert data["main"]["hash"] == A.content_hash and data["rule"]["k"] == 2
    errors = data["checks"][0]
    assert errors["status"] == "abort" and errors["canary"]["events"] == 30 and errors["n_req"] > 200
    text = md.read_text()
    assert "## 🛑 credit-hgb in production: abort the canary v2" in text
    assert "| errors | 0.01 |" in text and "**worse: abort**" in text and "### The rule" in text
    assert "alpha/k = 0.025" in text and "sum by (hash)" in text
    with pytest.raises(Exception) as raised:
        canary.enforce(result)
    assert raised.value.exit_code == 20


def test_a_shadows_agreement_with_main_is_counted_on_the_requests_both_logged() -> None:
    from modelops.config import load_params
    from modelops.monitoring import divergence
    from modelops.monitoring.logs import Records

    ds = load_params(PROJECT_ROOT / "params.yaml").dataset_of(MODEL)
    negative, positive = ds.classes

    def rec(content_hash: str, rid: str, label: str, p: float) -> dict:
        probabilities = {negative: 1 - p, positive: p}
        ts = "2026-11-23T06:00:00.000000Z"
        return {
            "ts": ts,
            "hash": content_hash,
            "request_id": rid,
            "inputs": {},
            "prediction": label,
            "probabilities": probabilities,
        }

    rows = [rec(A.content_hash, f"r{i}", negative, 0.2) for i in range(10)]
    # the shadow logged 8 of the 10 requests (each log samples on its own), and differs on 2
    rows += [
        rec(B.content_hash, f"r{i}", positive if i < 2 else negative, 0.7 if i < 2 else 0.2) for i in range(8)
    ]
    info = divergence.describe((A.content_hash, B.content_hash), "shadow", ds, Records(Path("."), rows))
    assert info["rows"] == {"main": 10, "canary": 8}
    assert info["agreement"] == {"pairs": 8, "same_class": 0.75}
    assert info["classes"]["main"][negative] == 1.0 and info["classes"]["shift"] == 0.25
