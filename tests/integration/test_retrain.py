"""retrain per dataset: the snapshot import, the declaration edit, the PR text, choosing datasets,
"no new data" on a real repo, and a real proposal that retrains only the dataset's models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelops.declarations import load_dataset, parse_dataset
from modelops.errors import DeclarationError, ParamsError
from modelops.monitoring import retrain
from modelops.workspace import PROJECT_ROOT
from tests import inprocess
from tests.conftest import clone_with_outputs, declaration, make_params, make_pipeline_repo, run

LOCK = """\
schema: '2.0'
stages:
  ingest@credit:
    cmd: modelops ingest credit
    outs:
    - path: data/credit/raw.csv
      hash: md5
      md5: 8ddfd0db4db91ef8c5765bf6864f46d2
      size: 312646
  ingest@hpc:
    cmd: modelops ingest hpc
    outs:
    - path: data/hpc/raw.csv
      hash: md5
      md5: 0123456789abcdef0123456789abcdef
  validate@credit:
    outs:
    - path: data/credit/validation.json
      md5: 2af2a11e3fad32161440eaeb87b8946d
"""


def shipped(name: str):
    return parse_dataset(name, declaration(name), f"data/{name}/dataset.yaml")


CREDIT, HPC, CONCRETE = shipped("credit"), shipped("hpc"), shipped("concrete")


def test_raw_md5_reads_the_datasets_own_ingest_stage() -> None:
    assert retrain.raw_md5(LOCK, CREDIT) == "8ddfd0db4db91ef8c5765bf6864f46d2"
    assert retrain.raw_md5(LOCK, HPC) == "0123456789abcdef0123456789abcdef"
    assert retrain.raw_md5(LOCK, CONCRETE) is None
    assert retrain.raw_md5(None, CREDIT) is None and retrain.raw_md5("", CREDIT) is None


def copy_declaration(root: Path, name: str) -> Path:
    dest = root / "data" / name / "dataset.yaml"
    dest.parent.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "data" / name / "dataset.yaml", dest)
    return dest


def test_the_snapshot_becomes_the_declared_source_and_comments_stay(tmp_path: Path) -> None:
    path = copy_declaration(tmp_path, "credit")
    before = path.read_text()
    target = retrain.snapshot_file("credit")
    assert target == Path("data/sources/credit.csv")

    assert retrain.point_declaration_at(CREDIT, target, tmp_path) is True

    after = path.read_text()
    assert yaml.safe_load(after)["source"] == {"kind": "file", "path": "data/sources/credit.csv"}
    # every comment line and every other key is as it was; only the source block changed
    comments = [ln for ln in before.splitlines() if ln.lstrip().startswith("#")]
    assert comments and all(c in after.splitlines() for c in comments)
    assert "classes: [good, bad]  # [negative, positive]" in after
    assert {k: v for k, v in yaml.safe_load(after).items() if k != "source"} == {
        k: v for k, v in yaml.safe_load(before).items() if k != "source"
    }
    assert load_dataset("credit", tmp_path).source.kind == "file"
    # Already the source: no change at all.
    assert retrain.point_declaration_at(CREDIT, target, tmp_path) is False
    assert path.read_text() == after


def test_a_declaration_the_edit_would_break_is_left_alone_and_the_key_is_named(tmp_path: Path) -> None:
    path = copy_declaration(tmp_path, "concrete")
    text = path.read_text()
    with pytest.raises(DeclarationError, match=r"data/concrete/dataset\.yaml.*\n.*source\.file\.path"):
        retrain.point_declaration_at(CONCRETE, Path("elsewhere/concrete.csv"), tmp_path)
    assert path.read_text() == text


def test_fetch_copies_a_path_or_url_whole_and_names_what_is_wrong(tmp_path: Path) -> None:
    src = tmp_path / "export.csv"
    src.write_bytes(b"id,status\n1,good\n")
    dest = tmp_path / "repo/data/sources/credit.csv"
    retrain.fetch_snapshot(str(src), dest)
    assert dest.read_bytes() == src.read_bytes()
    retrain.fetch_snapshot(src.as_uri(), dest)  # file:// through fsspec
    assert dest.read_bytes() == src.read_bytes()

    with pytest.raises(
        retrain.RetrainError, match=f"MODELOPS_DATA_SNAPSHOT: no data snapshot at {tmp_path}/nope"
    ):
        retrain.fetch_snapshot(str(tmp_path / "nope.csv"), dest)
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(retrain.RetrainError, match="is empty"):
        retrain.fetch_snapshot(str(tmp_path / "empty.csv"), dest)
    with pytest.raises(retrain.RetrainError, match="cannot read nosuchproto://x"):
        retrain.fetch_snapshot("nosuchproto://x", dest)
    # A failed fetch leaves the previous snapshot and no temporary file.
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["credit.csv"]


def frame(ids: list[int], statuses: list[str], income: list[float | None]) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "status": statuses, "income": income}).reindex(
        columns=list(CREDIT.columns)
    )


def test_data_diff_counts_added_removed_and_changed_rows_by_id() -> None:
    old = frame([1, 2, 3, 4], ["good", "bad", "good", "good"], [100.0, None, 80.0, 50.0])
    new = frame([2, 3, 4, 5, 6], ["bad", "good", "bad", "good", "good"], [None, 120.0, 50.0, 70.0, 60.0])
    rows = {what: (base, proposed) for what, base, proposed in retrain.data_diff(CREDIT, old, new)}
    assert rows["rows"] == ("4", "5")
    assert rows["rows added (new ids)"] == ("", "2")
    assert rows["rows removed"] == ("", "1")
    # id 2 is unchanged (missing income on both sides is equal), 3 has a new income, 4 a new label
    assert rows["rows changed (same id)"] == ("", "2")
    assert rows["share `bad`"] == ("25.0%", "40.0%")
    # Without main's data (not pulled) only the proposal's numbers are shown.
    assert retrain.data_diff(CREDIT, None, new)[0] == ("rows", "—", "5")
    assert retrain.data_diff(CREDIT, None, new)[-1] == ("share `bad`", "—", "40.0%")


def test_data_diff_summarises_the_target_per_task() -> None:
    jobs = pd.DataFrame({"id": [1, 2, 3, 4], "class": ["VF", "VF", "F", "L"]})
    more = pd.DataFrame({"id": [1, 2, 3, 4, 5], "class": ["VF", "VF", "F", "L", "L"]})
    rows = {w: (a, b) for w, a, b in retrain.data_diff(HPC, jobs, more)}
    assert [w for w in rows if w.startswith("share")] == ["share `VF`", "share `F`", "share `M`", "share `L`"]
    assert rows["share `L`"] == ("25.0%", "40.0%") and rows["share `M`"] == ("0.0%", "0.0%")
    mixes = pd.DataFrame({"id": [1, 2], "compressive_strength": [30.0, 50.0]})
    rows = {
        w: (a, b) for w, a, b in retrain.data_diff(CONCRETE, mixes, mixes.assign(compressive_strength=60))
    }
    assert rows["mean `compressive_strength`"] == ("40", "60")


def test_the_reason_keeps_the_report_and_drops_images_the_pr_cannot_show(tmp_path: Path) -> None:
    report = tmp_path / "monitor.md"
    report.write_text(
        "## ⚠️ credit-hgb in production: drift detected (v1: income)\n\n| a | b |\n"
        "![credit-hgb-abc-income.png](credit-hgb-abc-income.png)\n![remote](https://example.com/x.png)\n"
    )
    text = retrain.reason_text(report)
    assert text.startswith("## ⚠️ credit-hgb in production: drift detected")
    assert "income.png" not in text and "https://example.com/x.png" in text
    assert "Scheduled data refresh" in retrain.reason_text(None)
    report.write_text("x" * 10 + "\n" + "y" * retrain.MAX_REASON_CHARS)
    assert len(retrain.reason_text(report)) < retrain.MAX_REASON_CHARS
    with pytest.raises(retrain.RetrainError, match=r"--reason .*nope\.md: cannot read it"):
        retrain.reason_text(tmp_path / "nope.md")


def test_the_title_and_body_name_the_dataset_its_models_and_why() -> None:
    assert (
        retrain.title("credit", ["credit-hgb", "credit-forest"], "edf2cc6b69b9bbbb")
        == "retrain(credit-hgb, credit-forest): new credit snapshot edf2cc6b"
    )
    diff = [("rows", "4,454", "4,754"), ("rows added (new ids)", "", "300")]
    body = retrain.render_body(
        CREDIT,
        ["credit-hgb"],
        "8ddfd0db4db9aaaa",
        "edf2cc6b69b9bbbb",
        "s3://b/x.csv",
        "s3://b/x.csv",
        "WHY",
        diff,
    )
    assert (
        "Retrains credit-hgb on a new snapshot of dataset `credit` (`data/sources/credit.csv` from "
        "`s3://b/x.csv`, now its declared source)" in body
    )
    assert "| rows | 4,454 | 4,754 |" in body and "| rows added (new ids) |  | 300 |" in body
    assert "| raw md5 | `8ddfd0db4db9` | `edf2cc6b69b9` |" in body
    assert body.index("## Why") < body.index("WHY")
    again = retrain.render_body(CREDIT, ["credit-hgb"], None, "edf2cc6b69b9bbbb", None, "packaged", "", diff)
    assert "Retrains credit-hgb on re-ingested data of dataset `credit` (packaged)." in again


def test_choosing_datasets_named_every_one_or_from_the_drifting_models(tmp_path: Path) -> None:
    params = make_params(
        {"a-hgb": {"dataset": "credit", "estimator": "hist_gradient_boosting"},
         "b-forest": {"dataset": "hpc", "estimator": "random_forest"},
         "c-hgb": {"dataset": "concrete", "estimator": "hist_gradient_boosting"}},
        datasets={name: declaration(name) for name in ("credit", "hpc", "concrete")},
    )  # fmt: skip
    assert retrain.choose_datasets(params, ["hpc"]) == ["hpc"]
    assert retrain.choose_datasets(params, every=True) == ["credit", "hpc", "concrete"]
    with pytest.raises(
        retrain.RetrainError, match=r"more than one dataset is declared \(credit, hpc, concrete\)"
    ):
        retrain.choose_datasets(params)
    with pytest.raises(ParamsError, match="no dataset 'nope'"):
        retrain.choose_datasets(params, ["nope"])

    report = tmp_path / "monitor.json"
    models = [
        {"model": "a-hgb", "status": "ok"},
        {"model": "b-forest", "status": "drift"},
        {"model": "c-hgb", "status": "drift"},
    ]
    report.write_text(json.dumps({"status": "drift", "models": models}))
    assert retrain.choose_datasets(params, drifted=report) == ["hpc", "concrete"]
    report.write_text(json.dumps({"status": "ok", "models": models[:1]}))
    with pytest.raises(retrain.RetrainError, match="no model drifted in that report"):
        retrain.choose_datasets(params, drifted=report)
    report.write_text(json.dumps({"models": [{"model": "gone", "status": "drift"}]}))
    with pytest.raises(retrain.RetrainError, match=r"model 'gone' drifted but is not in params\.yaml"):
        retrain.choose_datasets(params, drifted=report)
    report.write_text("[]")
    with pytest.raises(retrain.RetrainError, match=r"not a monitor\.json report"):
        retrain.choose_datasets(params, drifted=report)
    # one declared dataset needs no choice
    assert retrain.choose_datasets(make_params({"m": {"estimator": "hist_gradient_boosting"}})) == ["credit"]


@pytest.fixture
def ingested(tmp_path: Path) -> Path:
    """A pipeline repo whose main has run the ingest stages only (all "no new data" needs)."""
    repo = make_pipeline_repo(tmp_path / "repo")
    run(["dvc", "repro", "ingest"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "ingest"], repo)
    return repo


def test_unchanged_data_makes_no_commit_and_leaves_the_repo_as_it_was(ingested: Path, tmp_path: Path) -> None:
    repo = ingested
    run(["git", "branch", "retrain/credit"], repo)  # a proposal from before: it must survive
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    declared = (repo / "data/credit/dataset.yaml").read_text()
    exports = tmp_path / "exports"
    exports.mkdir()
    shutil.copy(repo / "data/credit/raw.csv", exports / "credit.csv")  # the "new" export is main's data

    proc = inprocess.run(
        ["modelops", "retrain", "--dataset", "credit", "--require-new-data"],
        repo,
        check=False,
        env={"MODELOPS_DATA_SNAPSHOT": str(exports / "{dataset}.csv")},
    )

    assert proc.returncode == 18, proc.stderr
    assert (
        f"credit: no new data: data/credit/raw.csv from {exports}/credit.csv is what main already trains on"
        in proc.stderr
    )
    assert run(["git", "rev-parse", "HEAD"], repo).stdout.strip() == head
    assert run(["git", "rev-parse", "retrain/credit"], repo).stdout.strip() == head
    assert run(["git", "symbolic-ref", "--short", "HEAD"], repo).stdout.strip() == "main"
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    assert sorted(p.name for p in (repo / "data/sources").iterdir()) == ["README.md"]  # no snapshot left
    assert (repo / "data/credit/dataset.yaml").read_text() == declared
    assert "Data and pipelines are up to date" in run(["dvc", "status", "ingest"], repo).stdout

    # Several datasets and no choice: a clear error, nothing done.
    proc = inprocess.run(["modelops", "retrain"], repo, check=False)
    assert (
        proc.returncode == 17 and "more than one dataset is declared (credit, hpc, concrete)" in proc.stderr
    )
    # One file for several datasets cannot be right.
    proc = inprocess.run(
        ["modelops", "retrain", "--all-datasets"],
        repo,
        check=False,
        env={"MODELOPS_DATA_SNAPSHOT": str(exports / "credit.csv")},
    )
    assert proc.returncode == 17 and "put {dataset} where the dataset's name goes" in proc.stderr

    # Without --require-new-data (retrain.yml): every declared source re-ingested, the same, a success;
    # no branch is created.
    run(["git", "branch", "-D", "retrain/credit"], repo)
    proc = inprocess.run(["modelops", "retrain", "--all-datasets"], repo)
    for name in ("credit", "hpc", "concrete"):
        assert (
            f"{name}: no new data: data/{name}/raw.csv from data/{name}/dataset.yaml source: packaged"
            in proc.stdout
        )
    assert run(["git", "branch", "--list", "retrain/*"], repo).stdout == ""
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


def test_a_new_snapshot_is_proposed_for_its_dataset_and_retrains_only_its_models(
    trained_repo: Path, tmp_path: Path
) -> None:
    repo, _ = clone_with_outputs(trained_repo, tmp_path / "clone")
    main = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    raw = pd.read_csv(repo / "data/concrete/raw.csv")
    new = raw.sample(200, random_state=3).assign(cement=lambda f: (f.cement * 1.1).round(1))
    new["id"] = raw["id"].max() + 1 + pd.RangeIndex(len(new))
    export = tmp_path / "exports" / "concrete.csv"
    export.parent.mkdir()
    pd.concat([raw, new]).to_csv(export, index=False, lineterminator="\n")

    proc = inprocess.run(
        ["modelops", "retrain", "--dataset", "concrete"],
        repo,
        env={"MODELOPS_DATA_SNAPSHOT": str(tmp_path / "exports" / "{dataset}.csv")},
    )

    import hashlib

    md5 = hashlib.md5(export.read_bytes()).hexdigest()
    assert (
        f"retrain(concrete-hgb): new concrete snapshot {md5[:8]}: committed on retrain/concrete"
        in proc.stdout
    )
    assert run(["git", "rev-parse", "HEAD"], repo).stdout.strip() == main  # back on main, untouched
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    head = "retrain/concrete"
    assert run(["git", "rev-parse", f"{head}^"], repo).stdout.strip() == main
    changed = set(run(["git", "diff", "--name-only", main, head], repo).stdout.split())
    assert {"data/concrete/dataset.yaml", "data/sources/concrete.csv.dvc", "dvc.lock"} <= changed
    assert "models/concrete-hgb/metrics.json" in changed
    assert not any(
        p.startswith(("models/credit-hgb/", "models/hpc-forest/", "data/credit/", "data/hpc/"))
        for p in changed
    )
    declared = yaml.safe_load(run(["git", "show", f"{head}:data/concrete/dataset.yaml"], repo).stdout)
    assert declared["source"] == {"kind": "file", "path": "data/sources/concrete.csv"}
    lock = yaml.safe_load(run(["git", "show", f"{head}:dvc.lock"], repo).stdout)["stages"]
    assert retrain.raw_md5(run(["git", "show", f"{head}:dvc.lock"], repo).stdout, CONCRETE) == md5
    old = yaml.safe_load(run(["git", "show", f"{main}:dvc.lock"], repo).stdout)["stages"]
    for stage in ("train@credit-hgb", "package@credit-hgb", "train@hpc-forest", "package@hpc-forest"):
        assert lock[stage]["outs"] == old[stage]["outs"], stage
    assert lock["package@concrete-hgb"]["outs"] != old["package@concrete-hgb"]["outs"]
    message = run(["git", "log", "-1", "--format=%B", head], repo).stdout
    assert "Dataset: concrete" in message and f"Data-Md5: {md5}" in message and "\nModel: " not in message
