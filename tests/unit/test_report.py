"""The report's section builders on plain inputs, each with its empty and first-deployment case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelops.config import GateParams
from modelops.review import gate, report

ROOT = Path(__file__).resolve().parents[2]
POLICY = GateParams(
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


def table_row(markdown: str, metric: str) -> list[str]:
    line = next(ln for ln in markdown.splitlines() if ln.startswith(f"| {metric}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


# --------------------------------------------------------------------------- deltas


def test_delta_arrow_is_the_direction_and_the_word_is_the_meaning() -> None:
    assert report.delta("roc_auc", 0.84, 0.835) == "▲ +0.0050 better"
    assert report.delta("f1", 0.60, 0.65) == "**▼ -0.0500 worse**"  # beyond the 0.01 default
    assert report.delta("log_loss", 0.43, 0.45) == "**▼ -0.0200 better**"
    assert report.delta("log_loss", 0.45, 0.449) == "▲ +0.0010 worse"
    assert report.delta("f1", 0.6, 0.6) == "= 0"
    assert report.delta("f1", 0.6, None) == report.NONE
    assert report.delta("f1", 0.60, 0.65, bold_above=0.1) == "▼ -0.0500 worse"


def test_deltas_are_challenger_minus_other_and_empty_without_other() -> None:
    assert report.deltas(CHALLENGER, CHAMPION) == {
        "accuracy": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": -0.05,
        "roc_auc": 0.005,
        "log_loss": -0.02,
    }
    assert report.deltas(CHALLENGER, None) == {}
    assert report.deltas(CHALLENGER, {"f1": None}) == {}


def test_significance_is_the_gates_allowance_or_the_default() -> None:
    assert report.threshold("f1", POLICY) == 0.03
    assert report.threshold("accuracy", POLICY) == report.SIGNIFICANT


# --------------------------------------------------------------------------- verdict


def test_verdict_section_fail_puts_every_reason_first() -> None:
    verdict = gate.evaluate(CHALLENGER, CHAMPION, 1.0, POLICY, "v3")
    text = report.verdict_section(verdict, "credit-hgb", "v3", "production")
    assert text.splitlines()[0] == "## ❌ credit-hgb: fails the quality gate"
    assert "Compared with champion v3 in production." in text
    assert "- f1 fell 0.050 vs champion v3 (0.650 -> 0.600; allowed 0.030)" in text
    assert "1 failed" in text


def test_verdict_section_first_deployment_says_so() -> None:
    verdict = gate.evaluate(CHALLENGER, None, None, POLICY)
    text = report.verdict_section(verdict, "credit-hgb", None, "production")
    assert text.startswith("## ✅ credit-hgb: passes the quality gate")
    assert "no champion in production yet (first deployment)" in text
    assert "3 skipped" in text


def test_verdict_section_with_an_empty_policy() -> None:
    text = report.verdict_section(gate.Verdict(True), "m", None, "production")
    assert "has no checks" in text


# --------------------------------------------------------------------------- metrics


def test_metrics_section_shows_values_deltas_and_the_base() -> None:
    text = report.metrics_section(CHALLENGER, CHAMPION, "v3", CHALLENGER | {"roc_auc": 0.80}, "main", POLICY)
    assert "| metric | challenger | champion v3 | Δ vs champion | `main` | Δ vs `main` |" in text
    assert table_row(text, "roc_auc") == [
        "roc_auc",
        "0.8400",
        "0.8350",
        "▲ +0.0050 better",
        "0.8000",
        "**▲ +0.0400 better**",
    ]
    assert table_row(text, "f1")[3] == "**▼ -0.0500 worse**"
    assert table_row(text, "log_loss")[0] == "log_loss (lower is better)"
    assert "872 rows" in text


def test_metrics_section_first_deployment_compares_with_main_only() -> None:
    text = report.metrics_section(CHALLENGER, None, None, CHALLENGER, "main", POLICY)
    assert "first deployment" in text and "compared with `main` only" in text
    assert "champion" not in text.split("| metric")[1]
    assert table_row(text, "f1") == ["f1", "0.6000", "0.6000", "= 0"]


def test_metrics_section_without_champion_or_base_metrics() -> None:
    text = report.metrics_section(CHALLENGER, None, None, None, "main", POLICY, notes=["a note"])
    assert "`main` has no metrics for this model" in text
    assert "> a note" in text
    assert table_row(text, "roc_auc") == ["roc_auc", "0.8400"]


# --------------------------------------------------------------------------- what changed

VALIDATION_OK = {
    "counts": {"evaluated": 37, "failed": 0, "passed": 37},
    "failures": [],
    "rows": 4454,
    "success": True,
    "suite": "data/expectations/credit.json",
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
    "file": "data/raw/credit.csv",
    "current": {"md5": "b" * 32, "rows": 4500, "prepared_md5": "p2.dir"},
    "base": {"md5": "a" * 32, "rows": 4454, "prepared_md5": "p1.dir"},
    "ids": {"added": 50, "removed": 4, "changed": 3},
}


def test_changes_section_lists_params_data_code_and_checks() -> None:
    params = {"models.credit-hgb.hyperparams.max_iter": {"old": 200, "new": 50}}
    text = report.changes_section(
        params, DATA, ["params.yaml", "src/modelops/pipeline/train.py"], VALIDATION_OK, "main"
    )
    assert "| `models.credit-hgb.hyperparams.max_iter` | `200` | `50` |" in text
    assert "`data/raw/credit.csv`: **changed**." in text
    assert f"| md5 | `{'a' * 32}` | `{'b' * 32}` |" in text
    assert "| rows | 4,454 | 4,500 |" in text
    assert "50 added, 4 removed, 3 changed" in text
    assert "- `src/modelops/pipeline/train.py`" in text
    assert "✅ passed: 37 of 37 expectations passed on 4,454 rows" in text
    assert "gate policy itself" not in text


def test_changes_section_flags_a_change_to_the_gate_itself() -> None:
    text = report.changes_section({"gate.minimum.roc_auc": {"old": 0.75, "new": 0.5}}, None, [], None, "main")
    assert "changes the gate policy itself" in text


def test_changes_section_when_nothing_is_known() -> None:
    text = report.changes_section(None, None, None, None, "main")
    assert "`dvc params diff main` failed" in text
    assert "No data information" in text
    assert "`git diff main...HEAD` failed" in text
    assert "result.json` missing" in text


def test_changes_section_when_nothing_changed() -> None:
    same = {"current": {"md5": "a" * 32, "rows": 10}, "base": {"md5": "a" * 32, "rows": 10}}
    text = report.changes_section({}, same, [], VALIDATION_OK, "main")
    assert "No params changed." in text and "unchanged (md5" in text and "None." in text


def test_changes_section_first_data_and_unobtainable_base_file() -> None:
    text = report.changes_section({}, {"current": {"md5": "c" * 32, "rows": 5}, "base": {}}, [], None, "main")
    assert "the base has no record of it (new data)" in text
    no_ids = {k: v for k, v in DATA.items() if k != "ids"}
    text = report.changes_section({}, no_ids, [], None, "main")
    assert "not in the local DVC cache" in text


def test_changes_section_names_failing_columns() -> None:
    text = report.changes_section({}, None, [], VALIDATION_FAILED, "main")
    assert "❌ failed: 35 of 37 expectations passed" in text
    assert "Failing columns: `age`" in text
    assert "- age (expect_column_values_to_be_between): 3 values below 18" in text


def test_changes_section_unreadable_data() -> None:
    text = report.changes_section(
        {}, None, [], VALIDATION_OK | {"error": "data/raw/credit.csv: empty"}, "main"
    )
    assert "could not be read: data/raw/credit.csv: empty" in text


def test_lock_md5_reads_an_output_of_dvc_lock() -> None:
    lock = "stages:\n  ingest:\n    outs:\n    - path: data/raw/credit.csv\n      md5: abc\n"
    assert report.lock_md5(lock, "data/raw/credit.csv") == "abc"
    assert report.lock_md5(lock, "other") is None
    assert report.lock_md5(None, "data/raw/credit.csv") is None
    assert report.lock_md5("", "data/raw/credit.csv") is None


def test_row_changes_by_id(tmp_path: Path) -> None:
    old = pd.DataFrame({"id": [1, 2, 3, 4], "age": [30, 40, 50, 60]})
    new = pd.DataFrame({"id": [2, 3, 4, 5, 6], "age": [40, 51, 60, 20, 21]})
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)
    assert report.row_changes(tmp_path / "old.csv", tmp_path / "new.csv") == {
        "added": 2,
        "removed": 1,
        "changed": 1,
    }


def test_data_diff_with_no_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    diff = report.data_diff(None, {"md5": "m", "rows": 3})
    assert diff["current"] == {"md5": "m", "rows": 3, "prepared_md5": None}
    assert diff["base"] == {} and "ids" not in diff


# --------------------------------------------------------------------------- plots


def test_plots_section_links_relative_paths_and_handles_none() -> None:
    text = report.plots_section({"ROC": "roc.png", "Confusion: champion v1": "confusion-champion.png"})
    assert "![ROC](roc.png)" in text and "![Confusion: champion v1](confusion-champion.png)" in text
    assert "No plots" in report.plots_section({})


def _side(label: str, seed: int, y: np.ndarray) -> report.Side:
    rng = np.random.default_rng(seed)
    proba = np.clip(y * 0.6 + rng.random(len(y)) * 0.5, 0, 1)
    return report.Side(label, label, "h", "u", {}, proba=proba)


def test_render_plots_overlays_champion_and_challenger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    y = np.array([0, 1] * 50)
    files = report.render_plots(
        tmp_path / "out", _side("challenger", 0, y), _side("champion v1", 1, y), y, "m"
    )
    assert list(files.values()) == [
        "roc.png",
        "prc.png",
        "confusion-challenger.png",
        "confusion-champion.png",
    ]
    assert all((tmp_path / "out" / f).stat().st_size > 1000 for f in files.values())


def test_render_plots_first_deployment_and_importance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ranked = [{"feature": "age", "importance": 0.1}, {"feature": "income", "importance": 0.05}]
    Path("models/m/plots").mkdir(parents=True)
    Path("models/m/plots/importance.json").write_text(json.dumps(ranked))
    y = np.array([0, 1] * 50)
    files = report.render_plots(tmp_path / "out", _side("challenger", 0, y), None, y, "m")
    assert "confusion-champion.png" not in files.values()
    assert files["Feature importance (challenger)"] == "importance.png"
    empty = report.Side("challenger", "", "", "", {})
    assert report.render_plots(tmp_path / "out2", empty, None, y, "m") == {}


# --------------------------------------------------------------------------- cost


def _cost_side(label: str, single: float, batch: float, size: int) -> report.Side:
    latency = {"predict_single_ms": single, "predict_batch_ms": batch, "batch_rows": 1000}
    return report.Side(label, label.split()[-1], "h", "u", {}, latency=latency, size_bytes=size)


def test_cost_section_compares_and_flags_a_slow_challenger() -> None:
    new, old = (
        _cost_side("challenger", 6.0, 30.0, 2 * 1024 * 1024),
        _cost_side("champion v2", 5.0, 10.0, 1024**2),
    )
    text = report.cost_section(new, old, 3.0, 2.0)
    assert "| size on disk | 2.0 MiB | 1.0 MiB | 2.00x |" in text
    assert "| predict, 1 row | 6.00 ms | 5.00 ms | 1.20x |" in text
    assert "| predict, 1000 rows | 30.00 ms | 10.00 ms | 3.00x |" in text
    assert "slower than the gate allows" in text
    assert "within the gate" in report.cost_section(new, old, 1.2, 2.0)


def test_cost_section_first_deployment() -> None:
    text = report.cost_section(_cost_side("challenger", 6.0, 30.0, 500), None, None, 2.0)
    assert "No champion to compare with" in text
    assert "| size on disk | 500 B |" in text and "ratio" not in text


def test_cost_section_without_measurements() -> None:
    text = report.cost_section(report.Side("challenger", "", "", "", {}), None, None, 2.0)
    assert "| predict, 1 row | — |" in text


# --------------------------------------------------------------------------- deploy preview and links


def test_deploy_section_shows_the_diff_in_a_diff_block() -> None:
    diff = "--- a/x\n+++ b/x\n-  value: unpromoted://m/\n+  value: file:///s/m/abc/\n"
    text = report.deploy_section(diff, "dry run")
    assert "```diff\n--- a/x\n" in text and text.rstrip().endswith("```")
    assert "`gitops/envs/staging`" in text


def test_deploy_section_without_a_change() -> None:
    text = report.deploy_section(None, "Merging changes nothing in gitops/: already deployed.")
    assert "```" not in text and "already deployed" in text
    assert "No preview available." in report.deploy_section("", "")


def test_deploy_preview_catches_a_promote_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelops.delivery import promote

    def fail(*a, **k):
        raise promote.PromoteError("gitops/ not found")

    monkeypatch.setattr(promote, "promote", fail)
    assert report.deploy_preview("m") == (None, "No preview: gitops/ not found")


def test_links_section() -> None:
    text = report.links_section({"Workflow run": "https://github.com/o/r/actions/runs/1"})
    assert "- **Workflow run**: https://github.com/o/r/actions/runs/1" in text
    assert "None recorded." in report.links_section({})


def test_gather_links_uses_the_run_of_this_content_and_the_workflow_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelops.delivery import registry

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "org/repo")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    monkeypatch.setattr(registry, "find_run", lambda model, digest: "run123")
    links = report.gather_links("m", "h" * 64, None)
    assert links["MLflow run"] == "[run123](http://mlflow.example:5000/#/runs/run123)"
    assert links["Workflow run"] == "https://github.com/org/repo/actions/runs/42"
    assert "DVC outputs (dvc.lock md5)" not in links  # no dvc.lock here


def test_gather_links_when_the_tracking_server_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelops.delivery import registry

    def down(*a):
        raise ConnectionError("refused")

    monkeypatch.chdir(tmp_path)
    for key in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(registry, "find_run", down)
    links = report.gather_links("m", "h" * 64, None)
    assert links == {"MLflow": "not reachable (ConnectionError: refused)"}


# --------------------------------------------------------------------------- gathering from git/DVC


def test_base_metrics_reads_old_values_and_handles_a_base_without_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = {"models/m/metrics.json": {"f1": {"old": 0.5, "new": 0.6, "diff": 0.1}, "roc_auc": {"old": None}}}
    monkeypatch.setattr(report, "_dvc_json", lambda *a: found)
    assert report.base_metrics("main", "m") == {"f1": 0.5}
    monkeypatch.setattr(report, "_dvc_json", lambda *a: {})
    assert report.base_metrics("main", "m") is None
    assert report.base_metrics(None, "m") is None


def test_params_diff_flattens_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "_dvc_json", lambda *a: {"params.yaml": {"a.b": {"old": 1, "new": 2}}})
    assert report.params_diff("main") == {"a.b": {"old": 1, "new": 2}}
    monkeypatch.setattr(report, "_dvc_json", lambda *a: None)
    assert report.params_diff("main") is None
    assert report.params_diff(None) is None


def test_champion_release_is_none_before_the_first_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "gitops", tmp_path / "gitops")
    monkeypatch.chdir(tmp_path)
    assert report.champion_release("production", "credit-hgb") is None
