"""retrain: the snapshot import, the params edit, the PR body, and "no new data" on a real repo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelops.config import load_params
from modelops.errors import ParamsError
from modelops.monitoring import retrain
from modelops.workspace import PROJECT_ROOT
from tests.conftest import make_pipeline_repo, run

LOCK = """\
schema: '2.0'
stages:
  ingest:
    cmd: modelops ingest
    outs:
    - path: data/raw/credit.csv
      hash: md5
      md5: 8ddfd0db4db91ef8c5765bf6864f46d2
      size: 312646
  validate:
    outs:
    - path: data/validation/result.json
      md5: 2af2a11e3fad32161440eaeb87b8946d
"""


def frame(ids: list[int], statuses: list[str], income: list[float | None]) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "status": statuses, "income": income}).reindex(
        columns=["id", "status", "seniority", "time", "age", "expenses", "income", "assets", "debt",
                 "amount", "price", "home", "marital", "records", "job"]
    )  # fmt: skip


def test_raw_md5_reads_the_ingest_stage_only() -> None:
    assert retrain.raw_md5(LOCK) == "8ddfd0db4db91ef8c5765bf6864f46d2"
    assert retrain.raw_md5(None) is None and retrain.raw_md5("") is None
    assert retrain.raw_md5("schema: '2.0'\nstages:\n  validate: {}\n") is None


def test_pointing_params_at_the_snapshot_keeps_comments_and_everything_else(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(PROJECT_ROOT / "params.yaml", params)
    before = params.read_text()

    assert retrain.point_params_at(retrain.SNAPSHOT_FILE, params) is True

    after = params.read_text()
    changed = [ln for ln in after.splitlines() if ln not in before.splitlines()]
    assert changed == [
        "  source: file          # credit (packaged real data) | synthetic (seeded generator) | file",
        "  path: data/sources/snapshot.csv",
    ]
    assert len(after.splitlines()) == len(before.splitlines()) + 1
    data = load_params(params).data
    assert (data.source, data.path) == ("file", "data/sources/snapshot.csv")
    # Already pointing there: no change at all.
    assert retrain.point_params_at(retrain.SNAPSHOT_FILE, params) is False
    assert params.read_text() == after


def test_a_params_file_the_edit_would_break_is_left_alone_and_the_key_is_named(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    text = (PROJECT_ROOT / "params.yaml").read_text()
    params.write_text(text)
    with pytest.raises(ParamsError, match=r"data\.path"):
        retrain.point_params_at(Path("elsewhere/snapshot.csv"), params)
    assert params.read_text() == text


def test_fetch_copies_a_path_or_url_whole_and_names_what_is_wrong(tmp_path: Path) -> None:
    src = tmp_path / "export.csv"
    src.write_bytes(b"id,status\n1,good\n")
    dest = tmp_path / "repo/data/sources/snapshot.csv"
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
    assert sorted(p.name for p in dest.parent.iterdir()) == ["snapshot.csv"]


def test_data_diff_counts_added_removed_and_changed_rows_by_id() -> None:
    old = frame([1, 2, 3, 4], ["good", "bad", "good", "good"], [100.0, None, 80.0, 50.0])
    new = frame([2, 3, 4, 5, 6], ["bad", "good", "bad", "good", "good"], [None, 120.0, 50.0, 70.0, 60.0])
    rows = {what: (base, proposed) for what, base, proposed in retrain.data_diff(old, new)}
    assert rows["rows"] == ("4", "5")
    assert rows["rows added (new ids)"] == ("", "2")
    assert rows["rows removed"] == ("", "1")
    # id 2 is unchanged (missing income on both sides is equal), 3 has a new income, 4 a new label
    assert rows["rows changed (same id)"] == ("", "2")
    assert rows["share `bad`"] == ("25.0%", "40.0%")
    # Without main's data (not pulled) only the proposal's numbers are shown.
    assert retrain.data_diff(None, new)[0] == ("rows", "—", "5")


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


def test_the_body_says_what_changed_and_why() -> None:
    diff = [("rows", "4,454", "4,754"), ("rows added (new ids)", "", "300")]
    body = retrain.render_body(
        ["credit-hgb"], "8ddfd0db4db9aaaa", "edf2cc6b69b9bbbb", "s3://b/x.csv", "s3://b/x.csv", "WHY", diff
    )
    assert (
        "Retrains credit-hgb on a new data snapshot (`data/sources/snapshot.csv` from `s3://b/x.csv`)" in body
    )
    assert "| rows | 4,454 | 4,754 |" in body and "| rows added (new ids) |  | 300 |" in body
    assert "| raw md5 | `8ddfd0db4db9` | `edf2cc6b69b9` |" in body
    assert body.index("## Why") < body.index("WHY")
    again = retrain.render_body(
        ["credit-hgb"], None, "edf2cc6b69b9bbbb", None, "data.source credit", "", diff
    )
    assert "Retrains credit-hgb on re-ingested data (data.source credit)." in again


@pytest.fixture
def ingested(tmp_path: Path) -> Path:
    """A pipeline repo whose main has run the ingest stage only (all "no new data" needs)."""
    repo = make_pipeline_repo(tmp_path / "repo")
    run(["dvc", "repro", "ingest"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "ingest"], repo)
    return repo


def test_unchanged_data_makes_no_commit_and_leaves_the_repo_as_it_was(ingested: Path, tmp_path: Path) -> None:
    repo = ingested
    run(["git", "branch", "retrain/data"], repo)  # a proposal from before: it must survive
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    export = tmp_path / "export.csv"
    shutil.copy(repo / "data/raw/credit.csv", export)  # the "new" export is main's data

    proc = run(
        ["modelops", "retrain", "--require-new-data"],
        repo,
        check=False,
        env={"MODELOPS_DATA_SNAPSHOT": str(export)},
    )

    assert proc.returncode == 18, proc.stderr
    assert (
        f"no new data to retrain on: data/raw/credit.csv from {export} is what main already trains on"
        in proc.stderr
    )
    assert run(["git", "rev-parse", "HEAD"], repo).stdout.strip() == head
    assert run(["git", "rev-parse", "retrain/data"], repo).stdout.strip() == head
    assert run(["git", "symbolic-ref", "--short", "HEAD"], repo).stdout.strip() == "main"
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    assert sorted(p.name for p in (repo / "data/sources").iterdir()) == ["README.md"]  # no snapshot left
    assert yaml.safe_load((repo / "params.yaml").read_text())["data"]["source"] == "credit"
    assert "Data and pipelines are up to date" in run(["dvc", "status", "ingest"], repo).stdout

    # Without --require-new-data (retrain.yml): the same, as a success; no branch is created.
    run(["git", "branch", "-D", "retrain/data"], repo)
    proc = run(["modelops", "retrain"], repo)
    assert "no new data: data/raw/credit.csv is what main already trains on" in proc.stdout
    assert run(["git", "branch", "--list", "retrain/data"], repo).stdout == ""
