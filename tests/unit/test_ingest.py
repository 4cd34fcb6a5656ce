"""Ingest: the packaged real data, a seeded generator, or a file, written atomically to data/raw."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from modelops.config import DataParams
from modelops.errors import DataError
from modelops.pipeline import dataset, ingest


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return ingest.synthesize(600, 0)


@pytest.fixture(scope="module")
def credit() -> pd.DataFrame:
    return ingest.load_credit()


def test_synthesize_is_a_function_of_rows_and_seed(synthetic: pd.DataFrame) -> None:
    again = ingest.synthesize(600, 0)
    pd.testing.assert_frame_equal(again, synthetic)
    csv = again.to_csv(index=False, lineterminator="\n")
    assert csv == synthetic.to_csv(index=False, lineterminator="\n")
    other = ingest.synthesize(600, 1)
    assert other[dataset.ID].tolist() == synthetic[dataset.ID].tolist()
    assert not other.drop(columns=dataset.ID).equals(synthetic.drop(columns=dataset.ID))


def test_synthesize_follows_the_contract(synthetic: pd.DataFrame) -> None:
    assert tuple(synthetic.columns) == dataset.COLUMNS
    assert synthetic[dataset.ID].tolist() == list(range(1, 601))
    assert set(synthetic[dataset.TARGET]) == set(dataset.LABELS)
    for col, allowed in dataset.CATEGORIES.items():
        assert set(synthetic[col].dropna()) <= set(allowed), col
    nulls = {c for c in synthetic.columns if synthetic[c].isna().any()}
    assert nulls and nulls <= dataset.NULLABLE
    assert (synthetic["price"] >= synthetic["amount"]).all()
    assert synthetic["age"].between(18, 68).all()


def test_synthetic_label_rate_is_plausible() -> None:
    frame = ingest.synthesize(5_000, 3)
    rate = (frame[dataset.TARGET] == dataset.POSITIVE).mean()
    assert 0.1 < rate < 0.35


def test_synthetic_label_depends_on_the_drivers() -> None:
    """The generator must give the model something to learn: records=yes defaults more often."""
    frame = ingest.synthesize(5_000, 0)
    bad = frame[dataset.TARGET] == dataset.POSITIVE
    assert bad[frame["records"] == "yes"].mean() > bad[frame["records"] == "no"].mean() + 0.1


def test_real_credit_data(credit: pd.DataFrame) -> None:
    assert len(credit) == 4454
    assert tuple(credit.columns) == dataset.COLUMNS
    assert credit[dataset.ID].is_unique
    counts = credit[dataset.TARGET].value_counts()
    assert set(counts.index) == set(dataset.LABELS)
    assert counts[dataset.POSITIVE] == 1254
    for col, allowed in dataset.CATEGORIES.items():
        assert set(credit[col].dropna()) <= set(allowed), col


def test_ingest_synthetic_writes_the_returned_frame(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    frame = ingest.ingest(DataParams(source="synthetic", rows=300, seed=4))
    raw = Path("data/raw/credit.csv")
    assert raw.is_file()
    assert not list(raw.parent.glob("*.tmp")), "the temporary file was left behind"
    back = dataset.read_raw(raw)
    assert len(back) == len(frame) == 300
    assert back[dataset.ID].tolist() == frame[dataset.ID].tolist()
    first = raw.read_bytes()
    assert b"\r\n" not in first
    ingest.ingest(DataParams(source="synthetic", rows=300, seed=4))
    assert raw.read_bytes() == first


def test_ingest_replaces_an_existing_raw_file(tmp_path: Path) -> None:
    out = tmp_path / "raw" / "credit.csv"
    ingest.ingest(DataParams(source="synthetic", rows=500, seed=0), out)
    ingest.ingest(DataParams(source="synthetic", rows=200, seed=0), out)
    assert len(dataset.read_raw(out)) == 200


def test_ingest_credit_writes_the_real_data(credit: pd.DataFrame, tmp_path: Path) -> None:
    out = tmp_path / "credit.csv"
    frame = ingest.ingest(DataParams(source="credit"), out)
    assert len(frame) == 4454
    back = dataset.read_raw(out)
    pd.testing.assert_series_equal(back[dataset.TARGET].astype(object), credit[dataset.TARGET].astype(object))


def test_ingest_file_copies_the_source_byte_for_byte(synthetic, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = Path("data/sources/applications.csv")
    source.parent.mkdir(parents=True)
    synthetic.head(150).to_csv(source, index=False, lineterminator="\r\n")  # not how ingest writes
    frame = ingest.ingest(DataParams(source="file", path=str(source)))
    raw = Path("data/raw/credit.csv")
    assert raw.read_bytes() == source.read_bytes()
    assert len(frame) == 150 and tuple(frame.columns) == dataset.COLUMNS
    assert not list(raw.parent.glob("*.tmp"))


def test_a_missing_source_file_names_data_path(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"data\.path: data/sources/gone\.csv does not exist"):
        ingest.ingest(DataParams(source="file", path="data/sources/gone.csv"))
    assert not Path("data/raw/credit.csv").exists()
