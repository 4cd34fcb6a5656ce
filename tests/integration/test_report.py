"""`modelops report` and `modelops gate` on real pull-request branches of the three-model repo: real
git, DVC, MLflow (SQLite) and a local artifact store, with main's models promoted as champions.

Only what changed moves: a PR that changes one model's params reports and gates that model alone
and lists the other two as unchanged; a PR that changes the gate of two tasks re-gates their models
without retraining; a PR that changes neither reports no model and passes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from modelops import tasks
from modelops.config import load_params
from modelops.review import gate, uncertainty
from modelops.review.uncertainty import Intervals
from tests import inprocess
from tests.conftest import clone_with_outputs, run

MODELS = ["credit-hgb", "hpc-forest", "concrete-hgb"]


def champion_scores(repo: Path, uri: str, digest: str) -> dict[str, float]:
    """Re-evaluate credit-hgb's production model on the branch's test split, apart from the report."""
    code = (
        "import json,sys;from modelops import tasks;from modelops.config import load_params;"
        "from modelops.pipeline import dataset;from modelops.pipeline.prepare import read_split;"
        "from modelops_serving.model import load_model;"
        "ds=load_params().dataset_of('credit-hgb');"
        "m=load_model(sys.argv[1],expected_hash=sys.argv[2],name='c',version='c');"
        "f=read_split(ds.test_file);p=m.pipeline.predict_proba(dataset.to_features(ds,f));"
        "print(json.dumps(tasks.quality('binary',dataset.to_target(ds,f).to_numpy(),p)))"
    )
    return json.loads(run(["python", "-c", code, uri, digest], repo).stdout)


def row(markdown: str, metric: str) -> list[str]:
    line = next(ln for ln in markdown.splitlines() if ln.startswith(f"| {metric} ") or ln == f"| {metric} |")
    return [c.strip() for c in line.strip("|").split("|")]


def production(work: Path, model: str) -> tuple[str, str]:
    """(modelUri, content hash) the production manifest of a model names."""
    ops = yaml.safe_load((work / f"gitops/envs/production/{model}.yaml").read_text())
    uri = next(op["value"] for op in ops if op["path"].endswith("graph/modelUri"))
    digest = next(op["value"] for op in ops if op["path"].endswith("env/2/value"))
    return uri, digest


def test_a_pr_changing_one_model_reports_and_gates_that_model_only(
    trained_repo: Path, tmp_path: Path
) -> None:
    work, env = clone_with_outputs(trained_repo, tmp_path / "work")
    model = "credit-hgb"

    def modelops(*args: str, check: bool = True):
        return inprocess.modelops(list(args), work, env, check=check)

    modelops("promote", model, "--env", "production")
    uri, digest = production(work, model)
    main_metrics = json.loads((work / f"models/{model}/metrics.json").read_text())

    # The pull request: far fewer boosting rounds for credit-hgb, so it regresses beyond the gate.
    run(["git", "checkout", "-q", "-b", "fewer-rounds"], work)
    params_text = (work / "params.yaml").read_text()
    assert "max_iter: 200" in params_text
    (work / "params.yaml").write_text(params_text.replace("max_iter: 200", "max_iter: 8"))
    proc = run(["dvc", "repro"], work, env=env)
    ran = re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr)
    assert sorted(ran) == [f"{stage}@{model}" for stage in ("evaluate", "package", "train")], ran
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-q", "-m", "fewer rounds"], work)

    out = modelops("report", "--base", "main", "--env", "production")
    report_dir = work / "report"
    markdown = (report_dir / "report.md").read_text()
    data = json.loads((report_dir / "report.json").read_text())
    entry = data["models"][model]
    challenger = json.loads((work / f"models/{model}/metrics.json").read_text())
    champion = champion_scores(work, uri, digest)
    metrics = tasks.METRICS["binary"]

    # which models: the changed one has a section, the other two are listed and nothing more
    assert data["changed"] == [model] and list(data["models"]) == [model]
    assert data["unchanged"] == ["hpc-forest", "concrete-hgb"]
    assert entry["why"] == ["packaged model changed", "metrics changed"]
    assert "`hpc-forest`, `concrete-hgb`." in markdown.split("\n\n## ")[0]
    assert not re.search(r"^## .*(hpc-forest|concrete-hgb)", markdown, re.MULTILINE)
    assert sorted(p.name for p in report_dir.iterdir()) == [model, "report.json", "report.md"]

    # numbers: the challenger's are the metrics file's, the champion's a re-evaluation on the same rows
    assert entry["metrics"]["challenger"] == challenger
    assert {m: entry["metrics"]["champion"][m] for m in metrics} == champion
    assert all(abs(champion[m] - main_metrics[m]) < 1e-6 for m in metrics)  # same data, main's model
    assert entry["metrics"]["base"] == main_metrics
    # each delta vs the champion carries its interval, centred on the delta shown (paired bootstrap)
    recorded = entry["gate_inputs"]["intervals"]
    assert {k: recorded[k] for k in ("method", "level", "rounds", "seed", "rows")} == {
        "method": "paired bootstrap over the test rows",
        "level": 0.95,
        "rounds": 1000,
        "seed": 0,
        "rows": challenger["test_rows"],
    }
    intervals = Intervals.from_dict(recorded)
    for m in metrics:
        d = round(challenger[m] - champion[m], 6)
        assert entry["deltas"]["vs_champion"][m] == d == intervals.deltas[m].value
        assert entry["deltas"]["vs_champion_significance"][m] == uncertainty.direction(m, intervals.deltas[m])
        cells = row(markdown, m)
        assert cells[1] == f"{challenger[m]:.4f}" and cells[2] == f"{champion[m]:.4f}"
        assert cells[4:6] == [
            uncertainty.span(intervals.deltas[m]),
            uncertainty.significance_cell(m, intervals.deltas[m]),
        ]
        assert cells[6] == f"{main_metrics[m]:.4f}"
        assert f"{d:+.4f}" in cells[3] or (d == 0 and cells[3] == "= 0")
    # 8 boosting rounds instead of 200: worse beyond doubt on the ranking and the fit
    assert {entry["deltas"]["vs_champion_significance"][m] for m in ("roc_auc", "log_loss")} == {"worse"}
    assert "95% interval: paired bootstrap of Δ vs champion over the" in markdown

    # the verdict is gate.evaluate's under the model's policy (task default + its own f1 floor)
    policy = load_params(work / "params.yaml").gate_policy(model)
    assert policy.minimum == {"roc_auc": 0.75, "f1": 0.45} and policy.significant_regression is True
    ratio = entry["gate_inputs"]["latency_ratio"]
    expected = gate.evaluate(challenger, champion, ratio, policy, "v1", None, intervals)
    assert entry["verdict"]["passed"] is expected.passed is False and data["passed"] is False
    assert entry["verdict"]["reasons"] == expected.reasons
    lines = markdown.splitlines()
    assert lines[0] == "## ❌ The changed model fails the quality gate"
    assert f"- ❌ {model}: fails the quality gate ({len(expected.reasons)} reasons)" in lines
    assert f"## ❌ {model}: fails the quality gate" in lines
    assert all(f"- {r}" in markdown for r in expected.reasons)
    assert any(r.startswith("roc_auc fell") and r.endswith(", significant)") for r in expected.reasons)
    assert f"{model}: {expected.line()}" in out.stdout

    # what changed: the param, its dataset, its dataset's checks, the code paths
    assert "| `models.credit-hgb.hyperparams.max_iter` | `200` | `8` |" in markdown
    assert "`data/credit/raw.csv`: unchanged" in markdown
    assert re.search(r"✅ passed: (\d+) of \1 expectations .*\(`data/credit/expectations.json`\)", markdown)
    assert "- `params.yaml`" in markdown

    # plots are files in the model's folder next to report.md, referenced by relative path
    for png in ("roc.png", "prc.png", "confusion-challenger.png", "confusion-champion.png", "importance.png"):
        assert (report_dir / model / png).stat().st_size > 0 and f"]({model}/{png})" in markdown

    # the deploy preview is the staging diff, with the challenger's content-addressed URI
    new_digest = entry["challenger"]["content_hash"]
    assert new_digest != digest
    store_uri = (tmp_path / "store" / model / new_digest).as_uri() + "/"
    assert f"+  value: {store_uri}" in markdown
    assert f"--- a/gitops/envs/staging/{model}.yaml" in markdown
    assert re.search(r"\| predict, 1 row \| [\d.]+ ms \| [\d.]+ ms \| [\d.]+x \|", markdown)

    # the gate fails the check naming the model and its reasons; nothing in git changed
    failed = modelops("gate", check=False)
    assert failed.returncode == 10
    assert f"  {model}:\n" in failed.stderr and all(r in failed.stderr for r in expected.reasons)
    assert "hpc-forest" not in failed.stderr and "concrete-hgb" not in failed.stderr
    assert run(["git", "status", "--porcelain", "--untracked-files=no"], work).stdout == ""

    # A fresh clone of the branch reports the same numbers and intervals, byte for byte (only the
    # latency, timed on a busy machine, may differ, and it is not in what is compared here).
    (tmp_path / "again").mkdir()
    again, _ = clone_with_outputs(work, tmp_path / "again" / "work")  # the branch and its outputs
    assert run(["git", "branch", "--show-current"], again).stdout.strip() == "fewer-rounds"
    inprocess.modelops(["report", "--base", "main", "--env", "production"], again, env)
    second = json.loads((again / "report/report.json").read_text())["models"][model]
    for key in ("metrics", "deltas"):
        assert json.dumps(second[key], sort_keys=True) == json.dumps(entry[key], sort_keys=True), key
    for key in ("candidate", "champion", "intervals"):
        assert json.dumps(second["gate_inputs"][key]) == json.dumps(entry["gate_inputs"][key]), key
    table = markdown.split("### Champion vs challenger")[1].split("### ")[0]
    assert (again / "report/report.md").read_text().split("### Champion vs challenger")[1].split("### ")[
        0
    ] == table


def test_a_gate_change_re_gates_its_tasks_models_and_no_change_passes(
    trained_repo: Path, tmp_path: Path
) -> None:
    work, env = clone_with_outputs(trained_repo, tmp_path / "work")

    def modelops(*args: str, check: bool = True):
        return inprocess.modelops(list(args), work, env, check=check)

    main_metrics = json.loads((work / "models/concrete-hgb/metrics.json").read_text())

    # A PR that only tightens the regression gate and loosens the multiclass one: no stage reads
    # `gate:`, so nothing retrains, but both models must be gated again under the new policy.
    run(["git", "checkout", "-q", "-b", "gates"], work)
    text = (work / "params.yaml").read_text()
    text = text.replace("      r2: 0.5\n", "      r2: 0.99\n", 1).replace(
        "      macro_f1: 0.5\n", "      macro_f1: 0.4\n", 1
    )
    (work / "params.yaml").write_text(text)
    run(["git", "commit", "-q", "-am", "gates"], work)
    assert run(["dvc", "status"], work, env=env).stdout.strip() == "Data and pipelines are up to date."

    modelops("report", "--out", "gated")
    data = json.loads((work / "gated/report.json").read_text())
    markdown = (work / "gated/report.md").read_text()
    assert data["changed"] == ["hpc-forest", "concrete-hgb"] and data["unchanged"] == ["credit-hgb"]
    hpc, concrete = data["models"]["hpc-forest"], data["models"]["concrete-hgb"]
    assert hpc["why"] == concrete["why"] == ["gate policy changed"]
    # regression: never deployed, so compared with main (the same model: Δ = 0) under the new floor
    assert concrete["champion"] is None and concrete["metrics"]["base"] == main_metrics
    assert concrete["deltas"]["vs_base"] == {"rmse": 0.0, "mae": 0.0, "r2": 0.0}
    assert concrete["verdict"]["reasons"] == [f"r2 {main_metrics['r2']:.3f} < minimum 0.990"]
    assert sorted(concrete["plots"].values()) == [
        "concrete-hgb/importance.png",
        "concrete-hgb/predicted_actual.png",
        "concrete-hgb/residuals.png",
    ]
    assert row(markdown, "rmse (lower is better)") == [
        "rmse (lower is better)",
        f"{main_metrics['rmse']:.4f}",
        f"{main_metrics['rmse']:.4f}",
        "= 0",
    ]
    # multiclass: first deployment, its own metrics and plots, passes the loosened floor
    assert hpc["champion"] is None and hpc["verdict"]["passed"] is True
    assert set(hpc["metrics"]["challenger"]) >= set(tasks.METRICS["multiclass"])
    assert sorted(hpc["plots"].values()) == [
        "hpc-forest/confusion-challenger.png",
        "hpc-forest/importance.png",
    ]
    assert markdown.startswith("## ❌ 1 of 2 changed models fails the quality gate")
    assert "- ✅ hpc-forest: passes the quality gate" in markdown
    assert "- ❌ concrete-hgb: fails the quality gate (1 reason)" in markdown
    assert "| `gate.regression.minimum.r2` | `0.5` | `0.99` |" in markdown
    failed = modelops("gate", "--report", "gated/report.json", check=False)
    assert failed.returncode == 10 and "concrete-hgb:" in failed.stderr and "hpc-forest" not in failed.stderr

    # A PR that changes nothing any model reads: no model is reported and the gate passes.
    run(["git", "checkout", "-q", "main"], work)
    run(["git", "checkout", "-q", "-b", "monitor"], work)
    text = (work / "params.yaml").read_text()
    (work / "params.yaml").write_text(re.sub(r"(?m)^(  psi: )\S+", r"\g<1>0.25", text, count=1))
    run(["git", "commit", "-q", "-am", "monitor"], work)
    modelops("report", "--out", "none")
    data = json.loads((work / "none/report.json").read_text())
    assert data["changed"] == [] and data["models"] == {} and data["passed"] is True
    assert (work / "none/report.md").read_text().startswith("## ✅ No model changed against `main`")
    passed = modelops("gate", "--report", "none/report.json")
    assert "no model changed" in passed.stdout
