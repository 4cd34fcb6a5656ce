"""`modelops report` and `modelops gate` on a real pull-request branch: real git, DVC, MLflow (SQLite)
and a local artifact store, with main's model promoted to production as the champion."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from modelops.config import QUALITY, parse_params
from modelops.review import gate
from tests.conftest import clone_with_outputs, run

MODEL = "credit-hgb"
METRICS = f"models/{MODEL}/metrics.json"


def champion_scores(repo: Path, uri: str, digest: str) -> dict[str, float]:
    """Re-evaluate the production model on the branch's test split, independently of the report."""
    code = (
        "import json,sys;from modelops import dataset;from modelops.pipeline.evaluate import quality;"
        "from modelops.pipeline.prepare import read_split;from modelops_serving.model import load_model;"
        "m=load_model(sys.argv[1],expected_hash=sys.argv[2],name='c',version='c');"
        "f=read_split(dataset.TEST_FILE);"
        "p=m.pipeline.predict_proba(dataset.to_features(f))[:,1];"
        "print(json.dumps(quality(dataset.to_target(f).to_numpy(),p)))"
    )
    return json.loads(run(["python", "-c", code, uri, digest], repo).stdout)


def row(markdown: str, metric: str) -> list[str]:
    line = next(ln for ln in markdown.splitlines() if ln.startswith(f"| {metric} ") or ln == f"| {metric} |")
    return [c.strip() for c in line.strip("|").split("|")]


def test_report_compares_the_branch_with_the_production_champion_and_the_gate_agrees(
    trained_repo: Path, tmp_path: Path
) -> None:
    work, env = clone_with_outputs(trained_repo, tmp_path / "work")

    def modelops(*args: str, check: bool = True):
        return run(["modelops", *args], work, check=check, env=env)

    modelops("promote", MODEL, "--env", "production")
    production = yaml.safe_load((work / f"gitops/envs/production/{MODEL}.yaml").read_text())
    uri = next(op["value"] for op in production if op["path"].endswith("graph/modelUri"))
    digest = next(op["value"] for op in production if op["path"].endswith("env/2/value"))
    main_metrics = json.loads((work / METRICS).read_text())

    # The pull request: far fewer boosting rounds, so the candidate regresses beyond the gate.
    run(["git", "checkout", "-q", "-b", "fewer-rounds"], work)
    params_text = (work / "params.yaml").read_text()
    assert "max_iter: 200" in params_text
    (work / "params.yaml").write_text(params_text.replace("max_iter: 200", "max_iter: 8"))
    run(["dvc", "repro", "-q"], work, env=env)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-q", "-m", "fewer rounds"], work)

    out = modelops("report", "--base", "main", "--env", "production")
    report_dir = work / "report"
    markdown = (report_dir / "report.md").read_text()
    data = json.loads((report_dir / "report.json").read_text())
    challenger = json.loads((work / METRICS).read_text())
    champion = champion_scores(work, uri, digest)

    # numbers: the challenger's are the metrics file's, the champion's a re-evaluation on the same rows
    assert data["metrics"]["challenger"] == challenger
    assert {m: data["metrics"]["champion"][m] for m in QUALITY} == champion
    # the champion is main's model and the data did not change: its re-evaluation equals main's file
    assert all(abs(champion[m] - main_metrics[m]) < 1e-6 for m in QUALITY)
    assert data["metrics"]["base"] == main_metrics
    for m in QUALITY:
        d = round(challenger[m] - champion[m], 6)
        assert data["deltas"]["vs_champion"][m] == d
        cells = row(markdown, m)
        assert cells[1] == f"{challenger[m]:.4f}" and cells[2] == f"{champion[m]:.4f}"
        assert cells[4] == f"{main_metrics[m]:.4f}"
        assert f"{d:+.4f}" in cells[3] or (d == 0 and cells[3] == "= 0")
    assert "champion v1" in markdown

    # the verdict is gate.evaluate's on the same inputs, and it is the first thing in the report
    policy = parse_params(yaml.safe_load(params_text)).gate
    expected = gate.evaluate(challenger, champion, data["gate_inputs"]["latency_ratio"], policy, "v1")
    assert data["verdict"]["passed"] is expected.passed is False
    assert data["verdict"]["reasons"] == expected.reasons
    assert markdown.splitlines()[0] == f"## ❌ {MODEL}: fails the quality gate"
    assert all(f"- {r}" in markdown for r in expected.reasons)
    assert any(r.startswith("roc_auc fell") for r in expected.reasons)
    assert expected.line() in out.stdout

    # what changed: the param, and the code paths (params.yaml, dvc.lock is not a code path)
    assert "| `models.credit-hgb.hyperparams.max_iter` | `200` | `8` |" in markdown
    assert "- `params.yaml`" in markdown
    assert "`data/raw/credit.csv`: unchanged" in markdown
    assert "✅ passed: 37 of 37 expectations" in markdown

    # plots are files next to report.md, referenced by relative path
    for png in ("roc.png", "prc.png", "confusion-challenger.png", "confusion-champion.png", "importance.png"):
        assert (report_dir / png).stat().st_size > 0 and f"]({png})" in markdown

    # the deploy preview is the staging diff, with the challenger's content-addressed URI
    new_digest = data["challenger"]["content_hash"]
    assert new_digest != digest
    store_uri = (tmp_path / "store" / MODEL / new_digest).as_uri() + "/"
    assert f"+  value: {store_uri}" in markdown
    assert "--- a/gitops/envs/staging/credit-hgb.yaml" in markdown
    assert re.search(r"\| predict, 1 row \| [\d.]+ ms \| [\d.]+ ms \| [\d.]+x \|", markdown)

    # the gate fails the check with its reasons; nothing in git changed
    failed = modelops("gate", check=False)
    assert failed.returncode == 10
    assert all(r in failed.stderr for r in expected.reasons)
    assert run(["git", "status", "--porcelain", "--untracked-files=no"], work).stdout == ""
