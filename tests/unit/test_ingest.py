"""Ingest: a packaged real data set, a seeded generator, or a file, per declaration, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelops.errors import DataError
from modelops.pipeline import dataset, ingest
from tests.conftest import shipped_dataset, synthetic

DS = shipped_dataset()
ALL = {name: shipped_dataset(name) for name in ("credit", "hpc", "concrete")}


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return ingest.synthesize(DS, 600, 0)


def test_synthesize_is_a_function_of_declaration_rows_and_seed(rows: pd.DataFrame) -> None:
    again = ingest.synthesize(DS, 600, 0)
    assert again.to_csv(index=False, lineterminator="\n") == rows.to_csv(index=False, lineterminator="\n")
    other = ingest.synthesize(DS, 600, 1)
    assert other[DS.id].tolist() == rows[DS.id].tolist()
    assert not other.drop(columns=DS.id).equals(rows.drop(columns=DS.id))


@pytest.mark.parametrize("name", sorted(ALL))
def test_synthesize_follows_every_declaration(name: str) -> None:
    ds = ALL[name]
    frame = ingest.synthesize(ds, 2_000, 0)
    assert tuple(frame.columns) == ds.columns
    assert frame[ds.id].tolist() == list(range(1, 2_001))
    for col, spec in ds.features.items():
        values = frame[col].dropna()
        if spec.kind == "categorical":
            assert set(values) <= set(spec.values), col
        else:
            assert spec.min is None or values.min() >= spec.min, col
            assert spec.max is None or values.max() <= spec.max, col
        assert spec.nullable or not frame[col].isna().any(), col
    if ds.task == "regression":
        assert frame[ds.target].std() > 0
    else:
        assert set(frame[ds.target]) == set(ds.classes)


@pytest.mark.parametrize("name", sorted(ALL))
def test_the_synthetic_target_can_be_learned(name: str) -> None:
    """Scale tests and benchmarks train on it: a model must beat guessing clearly."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    ds = ALL[name]
    frame = ingest.synthesize(ds, 4_000, 0)
    x = pd.get_dummies(dataset.to_features(ds, frame), dtype=float)
    y = dataset.to_target(ds, frame).to_numpy()
    cls = HistGradientBoostingRegressor if ds.task == "regression" else HistGradientBoostingClassifier
    model = cls(max_iter=50, random_state=0).fit(x[:3000], y[:3000])
    score = model.score(x[3000:], y[3000:])  # R² or accuracy
    if ds.task == "regression":
        assert score > 0.5
    else:
        assert score > 1.5 * np.bincount(y[3000:]).max() / 1000 or score > 0.75


def test_real_packaged_data_sets() -> None:
    sizes = {"credit": 4454, "hpc": 4331, "concrete": 1030}
    for name, ds in ALL.items():
        frame = ingest.load_packaged(ds)
        assert len(frame) == sizes[name], name
        assert tuple(frame.columns) == ds.columns
        assert frame[ds.id].is_unique
        if ds.classes:
            assert set(frame[ds.target]) == set(ds.classes), name
    assert (ingest.load_packaged(DS)[DS.target] == DS.positive).sum() == 1254


def test_a_packaged_source_without_a_declared_column_names_the_key() -> None:
    ds = shipped_dataset("credit", target="outcome")
    with pytest.raises(
        DataError, match=r"credit/dataset\.yaml: target: source 'modeldata/credit_data' has no"
    ):
        ingest.load_packaged(ds)


def test_ingest_synthetic_writes_the_returned_frame_atomically(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ds = shipped_dataset(source=synthetic(300, 4))
    frame = ingest.ingest(ds)
    raw = Path("data/credit/raw.csv")
    assert raw.is_file()
    assert not list(raw.parent.glob("*.tmp")), "the temporary file was left behind"
    back = dataset.read_raw(ds)
    assert len(back) == len(frame) == 300
    first = raw.read_bytes()
    assert b"\r\n" not in first
    ingest.ingest(ds)
    assert raw.read_bytes() == first
    ingest.ingest(shipped_dataset(source=synthetic(200, 4)))
    assert len(dataset.read_raw(ds)) == 200


def test_ingest_file_copies_the_source_byte_for_byte(rows, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = Path("data/sources/applications.csv")
    source.parent.mkdir(parents=True)
    rows.head(150).to_csv(source, index=False, lineterminator="\r\n")  # not how ingest writes
    frame = ingest.ingest(shipped_dataset(source={"kind": "file", "path": str(source)}))
    raw = Path("data/credit/raw.csv")
    assert raw.read_bytes() == source.read_bytes()
    assert len(frame) == 150 and tuple(frame.columns) == DS.columns


def test_a_missing_source_file_names_the_key(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ds = shipped_dataset(source={"kind": "file", "path": "data/sources/gone.csv"})
    with pytest.raises(
        DataError, match=r"credit/dataset\.yaml: source\.path: data/sources/gone\.csv does not"
    ):
        ingest.ingest(ds)
    assert not Path("data/credit/raw.csv").exists()
