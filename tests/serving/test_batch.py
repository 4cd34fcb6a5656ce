"""modelops-batch, in process: scores equal to the pipeline's own, CSV and Parquet, every task, the
success manifest, metrics, progress, fsspec URLs and shards."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from modelops_serving.batch import parse_args
from modelops_serving.batch_io import UsageError
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.batch_inputs import expected, labels, read, rows, score, with_declaration, write
from tests.serving.conftest import MULTICLASS, REGRESSION, Packaged
from tests.serving.tasks import FEATURES, generate

FORMATS = [("csv", "csv"), ("parquet", "parquet"), ("csv", "parquet"), ("parquet", "csv")]


@pytest.mark.parametrize(("src", "dst"), FORMATS)
def test_scores_equal_the_pipelines_predict_proba(
    packaged: Packaged, tmp_path: Path, src: str, dst: str
) -> None:
    frame = rows(2500, seed=1)
    source = write(frame, tmp_path / f"in.{src}")
    manifest = score(packaged, tmp_path, source, tmp_path / f"out.{dst}", chunk_rows=700)
    out = read(tmp_path / f"out.{dst}")
    proba = expected(packaged, frame)
    assert list(out.columns) == ["id", "prediction", "p_good", "p_bad", "model_version", "content_hash"]
    assert out["id"].astype(str).tolist() == frame["id"].astype(str).tolist()
    np.testing.assert_allclose(out[["p_good", "p_bad"]].to_numpy(), proba, rtol=1e-9, atol=0)
    assert out["prediction"].tolist() == labels(proba).tolist()
    assert set(out["model_version"]) == {packaged.version}
    assert set(out["content_hash"]) == {packaged.content_hash}
    assert manifest["rows"] == 2500 and manifest["rejects"] == 0
    assert manifest["model"]["fast_path"] is True  # the server's fast path, not the DataFrame path


def test_parquet_keeps_the_ids_type(packaged: Packaged, tmp_path: Path) -> None:
    source = write(rows(50), tmp_path / "in.parquet")
    score(packaged, tmp_path, source, tmp_path / "out.parquet")
    assert str(pq.read_schema(tmp_path / "out.parquet").field("id").type) == "int64"


def task_declaration(kind: Packaged) -> dict:
    """A declaration for tests/serving/tasks.py's models (3 numeric features and one categorical)."""
    numeric = {"kind": "numeric", "nullable": True, "integer": False, "min": 0.0, "max": 1000.0}
    return {
        "dataset": "tasks",
        "id": "id",
        "target": "target",
        "task": kind.task,
        "classes": list(kind.model.classes) or None,
        "features": {
            "cement": numeric,
            "ratio": numeric | {"max": 1.0},
            "age": numeric | {"integer": True, "min": 1.0},
            "mix": {"kind": "categorical", "nullable": True, "values": ["A", "B", "C"]},
        },
    }


@pytest.mark.parametrize("kind", [REGRESSION, MULTICLASS])
def test_regression_values_and_multiclass_probabilities(task_models, tmp_path: Path, kind: str) -> None:
    base = task_models(kind)
    model = with_declaration(base, tmp_path / "model", task_declaration(base))
    frame, _, _ = generate(600, seed=5)
    frame.insert(0, "id", [f"r{i}" for i in range(len(frame))])
    score(model, tmp_path, write(frame, tmp_path / "in.parquet"), tmp_path / "out.csv", chunk_rows=128)
    out = read(tmp_path / "out.csv")
    want = base.reference(
        [[None if pd.isna(v) else v for v in r] for r in frame[list(FEATURES)].itertuples(index=False)]
    )
    if base.task == "regression":
        assert list(out.columns) == ["id", "prediction", "model_version", "content_hash"]
        np.testing.assert_allclose(out["prediction"].to_numpy(), want[:, 0], rtol=1e-9)
    else:
        probabilities = [f"p_{c}" for c in model.model.classes]
        assert list(out.columns) == ["id", "prediction", *probabilities, "model_version", "content_hash"]
        np.testing.assert_allclose(out[probabilities].to_numpy(), want, rtol=1e-9)
        assert out["prediction"].tolist() == [model.model.classes[k] for k in want.argmax(axis=1)]
    assert out["id"].tolist() == frame["id"].tolist()


def test_the_success_manifest(packaged: Packaged, tmp_path: Path) -> None:
    source = write(rows(1000), tmp_path / "in.csv")
    manifest = score(packaged, tmp_path, source, tmp_path / "out.parquet")
    written = json.loads((tmp_path / "out.parquet.success.json").read_text())
    assert written == {k: v for k, v in manifest.items() if k != ".progress"}
    assert written["rows"] == 1000 and written["rejects"] == 0 and written["rejects_file"] is None
    assert written["output"] == str(tmp_path / "out.parquet") and written["format"] == "parquet"
    assert written["columns"] == ["id", "prediction", "p_good", "p_bad", "model_version", "content_hash"]
    assert written["model"] == {
        "name": packaged.name,
        "version": packaged.version,
        "content_hash": packaged.content_hash,
        "uri": str(packaged.path),
        "fast_path": True,
    }
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert written["input"] == {
        "url": str(source),
        "format": "csv",
        "rows": 1000,
        "sha256": digest,
        "bytes": source.stat().st_size,
    }
    assert written["shard"] == {"index": 0, "count": 1} and written["on_bad"] == "fail"
    started, finished = (datetime.fromisoformat(written[k]) for k in ("started_at", "finished_at"))
    assert started <= finished and written["date"] == started.strftime("%Y-%m-%d")
    assert 0 < written["load_seconds"] < written["seconds"]
    # the rate comes from the unrounded time; `seconds` is rounded to the millisecond (a run of
    # ~40 ms moves the quotient by over 1%), so the rate must fit the rounding's interval
    low, high = written["seconds"] - 0.0005, written["seconds"] + 0.0005
    assert 1000 / high - 0.05 <= written["rows_per_s"] <= 1000 / max(low, 1e-9) + 0.05
    # Parquet input: the fingerprint is the file's bytes too
    again = score(packaged, tmp_path, write(rows(10), tmp_path / "in.parquet"), tmp_path / "again.csv")
    assert again["input"]["sha256"] == hashlib.sha256((tmp_path / "in.parquet").read_bytes()).hexdigest()


def test_prometheus_textfile_metrics(packaged: Packaged, tmp_path: Path) -> None:
    frame = rows(300)
    frame.loc[3, "age"] = 250  # out of range: one reject
    source = write(frame, tmp_path / "in.csv")
    manifest = score(
        packaged,
        tmp_path,
        source,
        tmp_path / "out.csv",
        on_bad="reject",
        metrics_file=str(tmp_path / "b.prom"),
    )
    text = (tmp_path / "b.prom").read_text()
    samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    labels_ = {"model": packaged.name, "version": packaged.version, "shard": "0"}
    assert samples["modelops_batch_rows"].value == 299 and samples["modelops_batch_rows"].labels == labels_
    assert samples["modelops_batch_rejected_rows"].value == 1
    assert samples["modelops_batch_duration_seconds"].value == pytest.approx(manifest["seconds"], abs=0.5)
    finished = datetime.fromisoformat(manifest["finished_at"]).timestamp()
    assert samples["modelops_batch_last_success_timestamp_seconds"].value == pytest.approx(finished, abs=1)
    assert not list(tmp_path.glob(".*partial"))


def test_one_json_progress_line_per_chunk(packaged: Packaged, tmp_path: Path) -> None:
    source = write(rows(1000), tmp_path / "in.parquet")
    manifest = score(packaged, tmp_path, source, tmp_path / "out.csv", chunk_rows=300)
    events = [json.loads(line) for line in manifest[".progress"].splitlines()]
    chunks = [e for e in events if e["event"] == "chunk"]
    assert [c["rows"] for c in chunks] == [300, 600, 900, 1000]
    assert chunks[-1]["fraction_read"] == 1.0 and events[-1]["event"] == "done"


def test_a_terminal_gets_a_progress_line(packaged: Packaged, tmp_path: Path) -> None:
    import io

    from modelops_serving.batch_run import Options, Progress, run

    from tests.serving.batch_inputs import settings

    stream = io.StringIO()
    source = write(rows(500), tmp_path / "in.csv")
    run(
        Options(str(source), str(tmp_path / "o.csv"), chunk_rows=200),
        settings(packaged, tmp_path),
        Progress(stream, True),
    )
    text = stream.getvalue()
    assert text.count("\r") >= 3 and "500 rows scored" in text and "{" not in text


def test_fsspec_urls_in_and_out(packaged: Packaged, tmp_path: Path) -> None:
    """memory:// (any fsspec backend) and file:// URLs, for the input, output, rejects and manifest."""
    frame = rows(400)
    frame.loc[7, "home"] = "castle"
    fs = fsspec.filesystem("memory")
    with fs.open("/batch/in.parquet", "wb") as fh:
        frame.to_parquet(fh, index=False)
    manifest = score(
        packaged, tmp_path, "memory://batch/in.parquet", "memory://batch/{date}/out.csv", on_bad="reject"
    )
    day = manifest["date"]
    assert sorted(fs.ls(f"/batch/{day}", detail=False)) == [
        f"/batch/{day}/out.csv",
        f"/batch/{day}/out.csv.success.json",
        f"/batch/{day}/out.rejects.csv",
    ]
    out = pd.read_csv(fs.open(f"/batch/{day}/out.csv"), dtype={"id": str})
    assert len(out) == 399 and json.loads(fs.cat(f"/batch/{day}/out.csv.success.json"))["rows"] == 399
    rejected = pd.read_csv(fs.open(f"/batch/{day}/out.rejects.csv"))
    assert rejected[["row", "column", "reason"]].values.tolist() == [[8, "home", "category"]]

    source = write(frame.drop(index=7), tmp_path / "in.csv")
    score(packaged, tmp_path, source.as_uri(), (tmp_path / "out.parquet").as_uri())
    assert len(read(tmp_path / "out.parquet")) == 399


def test_four_shards_cover_every_id_exactly_once(packaged: Packaged, tmp_path: Path) -> None:
    frame = rows(3000)
    source = write(frame, tmp_path / "in.csv")
    seen = []
    for index in range(4):
        manifest = score(packaged, tmp_path, source, tmp_path / "part-{shard}.parquet", shard=index, shards=4)
        part = read(tmp_path / f"part-{index}.parquet")
        assert manifest["shard"] == {"index": index, "count": 4} and manifest["rows"] == len(part)
        assert 600 < len(part) < 900  # a hash spreads ids about evenly
        seen += part["id"].tolist()
    assert sorted(seen) == sorted(frame["id"].astype(str).tolist())  # ids from a CSV stay text
    # the same ids from a Parquet file (integers) land in the same shards
    parquet = write(frame, tmp_path / "in.parquet")
    score(packaged, tmp_path, parquet, tmp_path / "pq-{shard}.csv", shard=2, shards=4)
    assert (
        read(tmp_path / "pq-2.csv")["id"].tolist()
        == read(tmp_path / "part-2.parquet")["id"].astype(str).tolist()
    )


def test_shard_flags_and_the_indexed_jobs_index(tmp_path: Path) -> None:
    args = ["--input", "in.csv", "--output", "out-{shard}.csv"]
    assert (parse_args([*args, "--shard", "3/4"]).shard, parse_args([*args, "--shard", "3/4"]).shards) == (
        3,
        4,
    )
    assert parse_args([*args, "--shards", "12"], {"JOB_COMPLETION_INDEX": "7"}).shard == 7
    with pytest.raises(UsageError, match="JOB_COMPLETION_INDEX"):
        parse_args([*args, "--shards", "4"], {})
    for bad in ("4/4", "-1/4", "1", "a/b"):
        with pytest.raises(UsageError, match="shard"):
            parse_args([*args, f"--shard={bad}"])
    with pytest.raises(UsageError, match="not both"):
        parse_args([*args, "--shard", "0/2", "--shards", "2"], {"JOB_COMPLETION_INDEX": "0"})


def test_shard_padding_and_a_missing_placeholder(packaged: Packaged, tmp_path: Path) -> None:
    source = write(rows(200), tmp_path / "in.csv")
    score(packaged, tmp_path, source, tmp_path / "p-{shard}.csv", shard=3, shards=12)
    assert (tmp_path / "p-03.csv").exists()
    with pytest.raises(UsageError, match=r"\{shard\}"):
        score(packaged, tmp_path, source, tmp_path / "same.csv", shard=0, shards=2)
    assert not (tmp_path / "same.csv").exists()
