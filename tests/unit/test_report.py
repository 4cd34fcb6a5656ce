"""The report's markdown and plots on plain inputs, per task, with the empty and first-deployment cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelops.config import GatePolicy
from modelops.delivery import preview
from modelops.errors import ModelopsError
from modelops.review import failure, figures, gate, render, report
from modelops.review.render import ModelSection, Side
from modelops.review.uncertainty import Intervals
from modelops.stats import Interval
from tests.conftest import declaration, make_params

ROOT = Path(__file__).resolve().parents[2]
POLICY = GatePolicy(
    minimum={"roc_auc": 0.75}, max_regression={"roc_auc": 0.01, "f1": 0.03}, max_latency_ratio=2.0
)
CHALLENGER = {
    "accuracy": 0.80,
    "precision": 0.66,
    "recall": 0.55,
    "f1": 0.60,
    "roc_auc": 0.84,
    "log_loss": 0.43,
    "test_rows": 872,
}
CHAMPION = CHALLENGER | {"f1": 0.65, "roc_auc": 0.835, "log_loss": 0.45}
MULTI = {"accuracy": 0.71, "macro_f1": 0.62, "log_loss": 0.80, "test_rows": 300}
REG = {"rmse": 6.1, "mae": 4.2, "r2": 0.86, "test_rows": 200}


def table_row(markdown: str, metric: str) -> list[str]:
    line = next(ln for ln in markdown.splitlines() if ln.startswith(f"| {metric}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def metric_rows(markdown: str) -> list[str]:
    """The first cell of each row of the metrics table."""
    table = markdown.split("| metric |")[1].split("\n\n")[0]
    return [ln.split("|")[1].strip() for ln in table.splitlines()[2:]]


# --------------------------------------------------------------------------- deltas


def test_delta_arrow_is_the_direction_and_the_word_is_the_meaning() -> None:
    assert render.delta("roc_auc", 0.84, 0.835) == "▲ +0.0050 better"
    assert render.delta("f1", 0.60, 0.65) == "**▼ -0.0500 worse**"  # beyond the 0.01 default
    assert render.delta("log_loss", 0.43, 0.45) == "**▼ -0.0200 better**"
    assert render.delta("log_loss", 0.45, 0.449) == "▲ +0.0010 worse"
    assert render.delta("rmse", 5.0, 6.0) == "**▼ -1.0000 better**"
    assert render.delta("r2", 0.80, 0.85) == "**▼ -0.0500 worse**"
    assert render.delta("f1", 0.6, 0.6) == "= 0"
    assert render.delta("f1", 0.6, None) == render.NONE
    assert render.delta("f1", 0.60, 0.65, bold_above=0.1) == "▼ -0.0500 worse"


def test_deltas_are_the_tasks_metrics_challenger_minus_other() -> None:
    assert render.deltas("binary", CHALLENGER, CHAMPION) == {
        "accuracy": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": -0.05,
        "roc_auc": 0.005,
        "log_loss": -0.02,
    }
    assert render.deltas("regression", REG, REG | {"rmse": 7.0}) == {"rmse": -0.9, "mae": 0.0, "r2": 0.0}
    assert render.deltas("binary", CHALLENGER, None) == {}
    assert render.deltas("binary", CHALLENGER, {"f1": None}) == {}


def test_significance_is_the_gates_allowance_or_the_default() -> None:
    assert render.threshold("f1", POLICY) == 0.03
    assert render.threshold("accuracy", POLICY) == render.SIGNIFICANT


# --------------------------------------------------------------------------- the top and the headings


def _section(
    model: str, verdict: gate.Verdict, task: str = "binary", champion: str | None = "v3"
) -> ModelSection:
    return ModelSection(model, task, "d", ["packaged model changed"], verdict, champion, ["BODY\n"])


PASS = gate.evaluate(CHALLENGER, CHALLENGER, 1.0, POLICY, "v3")
FAIL = gate.evaluate(CHALLENGER, CHAMPION, 1.0, POLICY, "v3")


def test_summary_has_a_verdict_line_per_changed_model_and_lists_the_unchanged() -> None:
    text = render.summary_section([_section("a", PASS), _section("b", FAIL)], ["c", "d"], "main")
    lines = text.splitlines()
    assert lines[0] == "## ❌ 1 of 2 changed models fails the quality gate"
    assert "- ✅ a: passes the quality gate (4 checks passed)" in lines
    assert "- ❌ b: fails the quality gate (1 reason)" in lines
    assert "not re-evaluated, nothing to merge): `c`, `d`." in text


def test_summary_when_every_model_passes_and_when_none_changed() -> None:
    one = render.summary_section([_section("a", PASS)], [], "main")
    assert one.startswith("## ✅ The changed model passes the quality gate")
    failing = render.summary_section([_section("a", FAIL)], [], "main")
    assert failing.startswith("## ❌ The changed model fails the quality gate")
    three = render.summary_section([_section(m, FAIL) for m in "abc"], [], "main")
    assert three.startswith("## ❌ 3 of 3 changed models fail the quality gate")
    assert "Unchanged models: none." in one
    two = render.summary_section([_section("a", PASS), _section("b", PASS)], [], "main")
    assert two.startswith("## ✅ All 2 changed models pass the quality gate")
    none = render.summary_section([], ["a", "b"], "main")
    assert none.startswith("## ✅ No model changed against `main`: the quality gate passes")
    assert "`a`, `b`" in none


def test_model_heading_fail_puts_every_reason_first() -> None:
    text = render.model_heading(_section("credit-hgb", FAIL), "production")
    assert text.splitlines()[0] == "## ❌ credit-hgb: fails the quality gate"
    assert "binary model on dataset `d`; in this report because: packaged model changed." in text
    assert "Compared with champion v3 in production." in text
    assert "- f1 fell 0.050 vs champion v3 (0.650 -> 0.600; allowed 0.030)" in text
    assert "1 failed" in text


def test_model_heading_first_deployment_and_empty_policy() -> None:
    verdict = gate.evaluate(CHALLENGER, None, None, POLICY)
    text = render.model_heading(_section("m", verdict, champion=None), "production")
    assert text.startswith("## ✅ m: passes the quality gate")
    assert "no champion in production yet (first deployment)" in text and "3 skipped" in text
    assert "has no checks" in render.model_heading(_section("m", gate.Verdict(True)), "production")


def test_document_orders_summary_models_then_code() -> None:
    doc = render.document(
        [_section("a", PASS), _section("b", FAIL)], ["c"], ["params.yaml"], "main", "production"
    )
    order = [
        doc.index(s) for s in ("changed models fails", "## ✅ a:", "BODY", "## ❌ b:", "## Code and pipeline")
    ]
    assert order == sorted(order)
    assert "- `params.yaml`" in doc
    assert "`git diff main...HEAD` failed" in render.code_section(None, "main")
    assert "None." in render.code_section([], "main")


# --------------------------------------------------------------------------- metrics per task


BINARY_INTERVALS = Intervals(
    {
        "f1": Interval(-0.05, -0.08, -0.02),
        "roc_auc": Interval(0.005, -0.002, 0.012),
        "log_loss": Interval(-0.02, -0.031, -0.009),
    },
    0.95,
    1000,
    0,
    872,
)


def test_binary_metrics_show_values_deltas_with_intervals_and_the_base() -> None:
    text = render.metrics_section(
        "binary",
        CHALLENGER,
        CHAMPION,
        "v3",
        CHALLENGER | {"roc_auc": 0.80},
        "main",
        POLICY,
        intervals=BINARY_INTERVALS,
    )
    head = "| metric | challenger | champion v3 | Δ vs champion | 95% interval | significant? | `main` |"
    assert head + " Δ vs `main` |" in text
    assert table_row(text, "roc_auc") == [
        "roc_auc",
        "0.8400",
        "0.8350",
        "▲ +0.0050 better",
        "[-0.0020, +0.0120]",
        "no: within noise",
        "0.8000",
        "**▲ +0.0400 better**",
    ]
    assert table_row(text, "f1")[3:6] == ["**▼ -0.0500 worse**", "[-0.0800, -0.0200]", "⚠️ yes: worse"]
    assert table_row(text, "log_loss")[0] == "log_loss (lower is better)"
    assert table_row(text, "log_loss")[4:6] == ["[-0.0310, -0.0090]", "✅ yes: better"]
    assert table_row(text, "accuracy")[4:6] == ["—", "—"]  # no interval recorded for it
    assert "872 rows" in text
    assert "95% interval: paired bootstrap of Δ vs champion over the 872 test rows (1000 resamples" in text
    # headline metrics first, then the rest of the task's
    assert metric_rows(text)[:3] == ["f1", "roc_auc", "log_loss (lower is better)"]
    assert len(metric_rows(text)) == 6
    # the level the report was built with names the column
    wide = Intervals(BINARY_INTERVALS.deltas, 0.99, 1000, 0, 872)
    assert "| 99% interval |" in render.metrics_section(
        "binary", CHALLENGER, CHAMPION, "v3", None, "m", POLICY, [], wide
    )
    assert "No intervals" in render.metrics_section("binary", CHALLENGER, CHAMPION, "v3", None, "m", POLICY)


def test_multiclass_metrics_are_its_own() -> None:
    found = Intervals({"macro_f1": Interval(-0.08, -0.11, -0.05), "accuracy": Interval(0.0, -0.01, 0.01)})
    text = render.metrics_section(
        "multiclass", MULTI, MULTI | {"macro_f1": 0.70}, "v1", None, "main", GatePolicy(), intervals=found
    )
    assert metric_rows(text) == ["accuracy", "macro_f1", "log_loss (lower is better)"]
    assert table_row(text, "macro_f1")[3:] == ["**▼ -0.0800 worse**", "[-0.1100, -0.0500]", "⚠️ yes: worse"]
    assert table_row(text, "accuracy")[3:] == ["= 0", "[-0.0100, +0.0100]", "no: within noise"]
    assert "roc_auc" not in text


def test_regression_metrics_lower_is_better_and_first_deployment() -> None:
    text = render.metrics_section("regression", REG, None, None, REG | {"rmse": 7.0}, "main", GatePolicy())
    assert metric_rows(text) == ["rmse (lower is better)", "mae (lower is better)", "r2"]
    assert table_row(text, "rmse") == ["rmse (lower is better)", "6.1000", "7.0000", "**▼ -0.9000 better**"]
    assert "first deployment" in text and "compared with `main` only" in text
    assert "interval" not in text  # nothing to resample against
    found = Intervals({"rmse": Interval(-0.9, -1.3, -0.5), "r2": Interval(0.0, -0.01, 0.02)})
    text = render.metrics_section(
        "regression", REG, REG | {"rmse": 7.0}, "v2", None, "main", GatePolicy(), None, found
    )
    assert table_row(text, "rmse")[3:] == ["**▼ -0.9000 better**", "[-1.3000, -0.5000]", "✅ yes: better"]
    assert table_row(text, "r2")[3:] == ["= 0", "[-0.0100, +0.0200]", "no: within noise"]


def test_metrics_without_champion_or_base_metrics() -> None:
    text = render.metrics_section("binary", CHALLENGER, None, None, None, "main", POLICY, notes=["a note"])
    assert "`main` has no metrics for this model" in text
    assert "> a note" in text
    assert table_row(text, "roc_auc") == ["roc_auc", "0.8400"]


# --------------------------------------------------------------------------- what changed

VALIDATION_OK = {
    "counts": {"evaluated": 37, "failed": 0, "passed": 37},
    "failures": [],
    "rows": 4454,
    "success": True,
    "suite": "data/credit/expectations.json",
}
VALIDATION_FAILED = VALIDATION_OK | {
    "counts": {"evaluated": 37, "failed": 2, "passed": 35},
    "success": False,
    "failures": [
        {"column": "age", "message": "age (expect_column_values_to_be_between): 3 values below 18"},
        {"column": None, "message": "table (expect_table_row_count_to_be_between): 10 rows"},
    ],
}
DATA = {
    "dataset": "credit",
    "file": "data/credit/raw.csv",
    "id": "row_id",
    "current": {"md5": "b" * 32, "rows": 4500, "prepared_md5": "p2.dir"},
    "base": {"md5": "a" * 32, "rows": 4454, "prepared_md5": "p1.dir"},
    "ids": {"added": 50, "removed": 4, "changed": 3},
}


def test_changes_section_lists_params_data_and_its_datasets_checks() -> None:
    params = {"models.credit-hgb.hyperparams.max_iter": {"old": 200, "new": 50}}
    text = render.changes_section(params, DATA, VALIDATION_OK, "main")
    assert "| `models.credit-hgb.hyperparams.max_iter` | `200` | `50` |" in text
    assert "`data/credit/raw.csv`: **changed**." in text
    assert f"| md5 | `{'a' * 32}` | `{'b' * 32}` |" in text
    assert "| rows | 4,454 | 4,500 |" in text
    assert "| prepared md5 | `p1.dir` | `p2.dir` |" in text
    assert "Rows by `row_id`: 50 added, 4 removed, 3 changed" in text
    assert "✅ passed: 37 of 37 expectations passed on 4,454 rows (`data/credit/expectations.json`)" in text
    assert "gate policy itself" not in text


def test_changes_section_flags_a_change_to_the_gate_itself() -> None:
    for key in ("gate.binary.minimum.roc_auc", "models.m.gate.minimum.f1"):
        text = render.changes_section({key: {"old": 0.75, "new": 0.5}}, None, None, "main")
        assert "changes the gate policy itself" in text


def test_changes_section_when_nothing_is_known_names_the_datasets_summary() -> None:
    text = render.changes_section(None, {"dataset": "hpc", "current": {}, "base": {}}, None, "main")
    assert "params.yaml of `main` could not be read" in text
    assert "`data/hpc/validation.json` missing: run `dvc repro validate@hpc`" in text
    assert "No data information" in render.changes_section({}, None, None, "main")


def test_changes_section_when_nothing_changed() -> None:
    same = {"file": "f.csv", "current": {"md5": "a" * 32, "rows": 10}, "base": {"md5": "a" * 32, "rows": 10}}
    text = render.changes_section({}, same, VALIDATION_OK, "main")
    assert "No params changed." in text and "`f.csv`: unchanged (md5" in text


def test_changes_section_new_data_and_unobtainable_base_file() -> None:
    text = render.changes_section(
        {}, {"file": "f.csv", "current": {"md5": "c" * 32, "rows": 5}, "base": {}}, None, "m"
    )
    assert "the base has no record of it (new data)" in text
    no_ids = {k: v for k, v in DATA.items() if k != "ids"}
    assert "not in the local DVC cache" in render.changes_section({}, no_ids, None, "main")


def test_changes_section_names_failing_columns_and_unreadable_data() -> None:
    text = render.changes_section({}, None, VALIDATION_FAILED, "main")
    assert "❌ failed: 35 of 37 expectations passed" in text
    assert "Failing columns: `age`" in text
    assert "- age (expect_column_values_to_be_between): 3 values below 18" in text
    text = render.changes_section({}, None, VALIDATION_OK | {"error": "data/credit/raw.csv: empty"}, "main")
    assert "could not be read: data/credit/raw.csv: empty" in text


# --------------------------------------------------------------------------- plots per task


def test_plots_section_links_relative_paths_and_handles_none() -> None:
    text = render.plots_section({"ROC": "m/roc.png", "Confusion: champion v1": "m/confusion-champion.png"})
    assert "![ROC](m/roc.png)" in text and "![Confusion: champion v1](m/confusion-champion.png)" in text
    assert "No plots" in render.plots_section({})


def _proba(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = rng.random((len(y), k)) + np.eye(k)[y] * 0.8
    return scores / scores.sum(axis=1, keepdims=True)


def _scored(label: str, predicted: np.ndarray) -> Side:
    return Side(label, label, "h", "u", {}, predicted=predicted)


def _importance(tmp_path: Path) -> Path:
    path = tmp_path / "importance.json"
    path.write_text(json.dumps([{"feature": "a", "importance": 0.1}, {"feature": "b", "importance": 0.05}]))
    return path


def test_binary_plots_overlay_curves_and_a_confusion_each(tmp_path: Path) -> None:
    y = np.array([0, 1] * 50)
    files = figures.render_plots(
        tmp_path / "out" / "m",
        _scored("challenger", _proba(y, 2, 0)),
        _scored("champion v1", _proba(y, 2, 1)),
        y,
        declaration_of("credit"),
        _importance(tmp_path),
        "m/",
    )
    assert list(files.values()) == [
        "m/roc.png",
        "m/prc.png",
        "m/confusion-challenger.png",
        "m/confusion-champion.png",
        "m/importance.png",
    ]
    assert all((tmp_path / "out" / f).stat().st_size > 1000 for f in files.values())


def test_multiclass_plots_are_confusions_and_importance(tmp_path: Path) -> None:
    ds = declaration_of("hpc")
    y = np.arange(120) % len(ds.classes)
    files = figures.render_plots(
        tmp_path / "out", _scored("challenger", _proba(y, 4, 0)), None, y, ds, _importance(tmp_path)
    )
    assert list(files) == ["Confusion: challenger", "Feature importance (challenger)"]
    assert all((tmp_path / "out" / f).stat().st_size > 1000 for f in files.values())


def test_regression_plots_overlay_predicted_vs_actual_and_residuals(tmp_path: Path) -> None:
    y = np.linspace(10, 60, 80)
    files = figures.render_plots(
        tmp_path / "out",
        _scored("challenger", y + np.sin(y)),
        _scored("champion v2", y + 3 + np.cos(y)),
        y,
        declaration_of("concrete"),
        tmp_path / "no-importance.json",
    )
    assert files == {"Predicted vs actual": "predicted_actual.png", "Residuals": "residuals.png"}
    assert all((tmp_path / "out" / f).stat().st_size > 1000 for f in files.values())
    assert (
        figures.render_plots(
            tmp_path / "x", Side("c", "", "", "", {}), None, y, declaration_of("concrete"), tmp_path
        )
        == {}
    )


def declaration_of(name: str):
    return make_params(
        {"m": {"dataset": name, "estimator": "random_forest"}}, {name: declaration(name)}
    ).dataset(name)


# --------------------------------------------------------------------------- cost, deploy, links


def _cost_side(label: str, single: float, batch: float, size: int) -> Side:
    latency = {"predict_single_ms": single, "predict_batch_ms": batch, "batch_rows": 1000}
    return Side(label, label.split()[-1], "h", "u", {}, latency=latency, size_bytes=size)


def test_cost_section_compares_and_flags_a_slow_challenger() -> None:
    new = _cost_side("challenger", 6.0, 30.0, 2 * 1024 * 1024)
    old = _cost_side("champion v2", 5.0, 10.0, 1024**2)
    text = render.cost_section(new, old, 3.0, 2.0)
    assert "| size on disk | 2.0 MiB | 1.0 MiB | 2.00x |" in text
    assert "| predict, 1 row | 6.00 ms | 5.00 ms | 1.20x |" in text
    assert "| predict, 1000 rows | 30.00 ms | 10.00 ms | 3.00x |" in text
    assert "slower than the gate allows" in text
    assert "within the gate" in render.cost_section(new, old, 1.2, 2.0)


def test_cost_section_first_deployment_and_without_measurements() -> None:
    text = render.cost_section(_cost_side("challenger", 6.0, 30.0, 500), None, None, 2.0)
    assert "No champion to compare with" in text
    assert "| size on disk | 500 B |" in text and "ratio" not in text
    assert "| predict, 1 row | — |" in render.cost_section(
        Side("challenger", "", "", "", {}), None, None, 2.0
    )


def test_deploy_section_shows_the_diff_in_a_diff_block() -> None:
    diff = "--- a/x\n+++ b/x\n-  value: unpromoted://m/\n+  value: file:///s/m/abc/\n"
    text = render.deploy_section(diff, "dry run")
    assert "```diff\n--- a/x\n" in text and text.rstrip().endswith("```")
    assert "`gitops/envs/staging`" in text
    text = render.deploy_section(None, "Merging changes nothing in gitops/: already deployed.")
    assert "```" not in text and "already deployed" in text
    assert "No preview available." in render.deploy_section("", "")


def test_deploy_preview_catches_a_promote_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelops.delivery import promote

    def fail(*a, **k):
        raise promote.PromoteError("gitops/ not found")

    monkeypatch.setattr(promote, "promote", fail)
    assert preview.deploy_preview("m") == (None, "No preview: gitops/ not found")


def test_links_section() -> None:
    text = render.links_section({"Workflow run": "https://github.com/o/r/actions/runs/1"})
    assert "- **Workflow run**: https://github.com/o/r/actions/runs/1" in text
    assert "None recorded." in render.links_section({})


LINK_PARAMS = make_params({"m": {"dataset": "credit", "estimator": "random_forest"}})


def test_gather_links_uses_the_run_of_this_content_the_lock_and_the_workflow_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("dvc.lock").write_text(
        "stages:\n  package@m:\n    outs:\n    - path: models/m/model\n      md5: 0123456789abcdef.dir\n"
        "  ingest@credit:\n    outs:\n    - path: data/credit/raw.csv\n      md5: fedcba9876543210\n"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "org/repo")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    monkeypatch.setattr(preview, "find_run", lambda model, digest: "run123")
    links = report.gather_links("m", "h" * 64, LINK_PARAMS)
    assert links["MLflow run"] == "[run123](http://mlflow.example:5000/#/runs/run123)"
    assert links["Workflow run"] == "https://github.com/org/repo/actions/runs/42"
    assert links["DVC outputs (dvc.lock md5)"] == (
        "`data/credit/raw.csv` fedcba987654, `models/m/model` 0123456789ab"
    )


def test_gather_links_when_the_tracking_server_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*a):
        raise ConnectionError("refused")

    monkeypatch.chdir(tmp_path)
    for key in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(preview, "find_run", down)
    assert report.gather_links("m", "h" * 64, LINK_PARAMS) == {
        "MLflow": "not reachable (ConnectionError: refused)"
    }


def test_champion_release_is_none_before_the_first_deployment_and_for_a_new_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "gitops", tmp_path / "gitops")
    monkeypatch.chdir(tmp_path)
    assert preview.champion_release("production", "credit-hgb") is None
    assert preview.champion_release("production", "not-in-gitops-yet") is None
    with pytest.raises(ModelopsError, match="unknown env 'nowhere'"):
        preview.champion_release("nowhere", "credit-hgb")


def test_load_side_unpickles_only_content_whose_hash_matches(tmp_path: Path) -> None:
    import cloudpickle
    from modelops_serving.integrity import tree_hash
    from modelops_serving.storage import ModelLoadError

    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors:\n  sklearn:\n    pickled_model: model.pkl\n")
    (model / "model.pkl").write_bytes(cloudpickle.dumps({"a": "pipeline"}))
    digest = tree_hash(model)
    assert report.load_side(str(model), digest) == ({"a": "pipeline"}, model)
    with pytest.raises(ModelLoadError, match="content hash mismatch"):
        report.load_side(str(model), "0" * 64)
    (model / "model.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="cannot load the model"):
        report.load_side(str(model), tree_hash(model))


# --------------------------------------------------------------------------- data validation failed


def test_data_failure_names_each_rejected_datasets_suite_and_its_failures() -> None:
    item = {
        "dataset": "credit",
        "suite": "data/credit/expectations.json",
        "data": "data/credit/raw.csv",
        "models": ["credit-hgb", "credit-forest"],
        "summary": VALIDATION_FAILED,
    }
    unreadable = item | {"dataset": "hpc", "suite": "data/hpc/expectations.json", "data": "data/hpc/raw.csv"}
    unreadable |= {"models": [], "summary": {"error": "data/hpc/raw.csv: the file is empty"}}
    text = failure.data_failure_section([item, unreadable], "line 1\nline 2\n")
    assert text.startswith("## ❌ Data validation failed: no model was trained")
    assert (
        "- ❌ dataset `credit`: the suite `data/credit/expectations.json` rejected `data/credit/raw.csv` "
        "(2 of 37 expectations failed); its models: `credit-hgb`, `credit-forest`." in text
    )
    assert "(could not read it: data/hpc/raw.csv: the file is empty); its models: none." in text
    assert "### `credit`" in text and "- age (expect_column_values_to_be_between): 3 values below 18" in text
    assert "Failing columns: `age`" in text and "### `hpc`" not in text
    assert "```text\nline 1\nline 2\n```" in text
    before = failure.data_failure_section([], "")
    assert "failed before any Great Expectations suite could run" in before and "(empty)" in before


def shipped_declarations(root: Path) -> None:
    """params.yaml and the shipped dataset declarations under `root`."""
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    for name in ("credit", "hpc", "concrete"):
        (root / "data" / name).mkdir(parents=True)
        shutil.copy(ROOT / "data" / name / "dataset.yaml", root / "data" / name / "dataset.yaml")


def test_build_refuses_an_unknown_model_and_a_tree_never_reproduced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelops.errors import ParamsError, PipelineError

    shipped_declarations(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError, match="no model 'nope'"):
        report.build(models=["nope"])
    with pytest.raises(PipelineError, match=r"dvc\.lock: not found \(run `dvc repro` first\)"):
        report.build()
    assert not Path("report").exists()


def test_data_failure_reads_the_summaries_the_failed_stages_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped_declarations(tmp_path)
    monkeypatch.chdir(tmp_path)
    Path("data/credit/validation.json").write_text(json.dumps(VALIDATION_OK))
    Path("data/hpc/validation.json").write_text(
        json.dumps(VALIDATION_FAILED | {"suite": "data/hpc/expectations.json"})
    )
    Path("validate.log").write_text("\n".join(f"line {i}" for i in range(100)) + "\n\n\n")

    assert failure.data_failure(Path("out"), Path("validate.log")) == ["hpc"]

    text = Path("out/report.md").read_text()
    assert "- ❌ dataset `hpc`: the suite `data/hpc/expectations.json` rejected `data/hpc/raw.csv`" in text
    assert "its models: `hpc-forest`." in text and "`credit`" not in text
    assert "line 60\n" in text and "line 59\n" not in text  # the last 40 non-blank lines
