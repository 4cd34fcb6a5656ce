"""Prepare: a row's side is a function of (id, seed) only, so splits never move under a PR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelops.config import SplitParams
from modelops.errors import PipelineError
from modelops.pipeline import ingest, prepare
from tests.conftest import shipped_dataset

DS = shipped_dataset()

IDS = pd.Series(np.arange(1, 20_001, dtype=np.int64))
SEED_0_TEST_IDS = [1, 25, 27, 29, 31, 35, 45, 54, 62, 63, 64, 68, 70, 80, 88]  # among ids 1..100


def split_ids(ids: pd.Series, params: SplitParams) -> set[int]:
    """The ids that land in the test split."""
    return set(ids[prepare.test_mask(ids, params)].tolist())


def test_the_shipped_split_never_moves() -> None:
    """The test ids of seed 0 are part of the contract: every dvc.lock so far was made with them."""
    assert sorted(split_ids(IDS.head(100), SplitParams(seed=0))) == SEED_0_TEST_IDS


def test_row_order_and_other_rows_do_not_matter() -> None:
    params = SplitParams(test_fraction=0.3, seed=5)
    base = split_ids(IDS, params)
    shuffled = IDS.sample(frac=1, random_state=1).reset_index(drop=True)
    assert split_ids(shuffled, params) == base
    # appending new rows (and dropping some old ones) leaves every remaining id on its side
    grown = pd.concat([IDS.iloc[500:], pd.Series(np.arange(50_000, 55_000))], ignore_index=True)
    assert split_ids(grown, params) & set(IDS.tolist()) == base - set(range(1, 501))


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_the_test_fraction_is_respected(fraction: float) -> None:
    share = len(split_ids(IDS, SplitParams(test_fraction=fraction))) / len(IDS)
    assert abs(share - fraction) < 0.015


def test_the_seed_changes_the_split() -> None:
    splits = [split_ids(IDS, SplitParams(seed=seed)) for seed in (0, 1, 2)]
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            # independent 20% draws overlap on about 20% of their ids, not on all of them
            assert 0.1 < len(a & b) / len(a) < 0.3
    assert split_ids(IDS, SplitParams(seed=1)) == splits[1]


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    path = tmp_path / "credit.csv"
    frame = ingest.synthesize(DS, 600, 0)
    frame.loc[[2, 7], "job"] = np.nan
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


def test_prepare_writes_two_disjoint_parquet_splits(raw: Path, tmp_path: Path) -> None:
    train_out, test_out = tmp_path / "p" / "train.parquet", tmp_path / "p" / "test.parquet"
    n_train, n_test = prepare.prepare(DS, SplitParams(test_fraction=0.25), raw, train_out, test_out)
    train, test = prepare.read_split(train_out), prepare.read_split(test_out)
    assert (len(train), len(test)) == (n_train, n_test)
    assert n_train + n_test == 600
    assert 0.18 < n_test / 600 < 0.32
    ids_train, ids_test = set(train[DS.id]), set(test[DS.id])
    assert not ids_train & ids_test
    assert ids_train | ids_test == set(range(1, 601))
    assert ids_test == split_ids(pd.Series(range(1, 601)), SplitParams(test_fraction=0.25))
    for split in (train, test):
        assert tuple(split.columns) == DS.columns
        assert split[DS.id].dtype == np.int64
        assert all(split[c].dtype == np.float64 for c in DS.numeric)
        assert set(split[DS.target]) <= set(tuple(DS.classes))
    both = pd.concat([train, test])
    assert both.loc[both[DS.id].isin([3, 8]), "job"].isna().all()
    assert not list(train_out.parent.glob("*.tmp"))


def test_prepare_is_byte_for_byte_reproducible(raw: Path, tmp_path: Path) -> None:
    outs = []
    for run in ("a", "b"):
        paths = (tmp_path / run / "train.parquet", tmp_path / run / "test.parquet")
        prepare.prepare(DS, SplitParams(), raw, *paths)
        outs.append([p.read_bytes() for p in paths])
    assert outs[0] == outs[1]


def test_prepare_uses_the_declared_paths(raw: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("data/credit").mkdir(parents=True)
    raw.rename("data/credit/raw.csv")
    n_train, n_test = prepare.prepare(DS, SplitParams())
    assert len(pd.read_parquet("data/credit/prepared/train.parquet")) == n_train
    assert len(pd.read_parquet("data/credit/prepared/test.parquet")) == n_test


def test_prepare_keeps_a_regression_target_numeric(tmp_path: Path) -> None:
    from modelops.pipeline import ingest

    ds = shipped_dataset("concrete")
    raw = tmp_path / "raw.csv"
    ingest.synthesize(ds, 300, 0).to_csv(raw, index=False)
    prepare.prepare(ds, SplitParams(), raw, tmp_path / "train.parquet", tmp_path / "test.parquet")
    assert pd.read_parquet(tmp_path / "train.parquet")[ds.target].dtype == "float64"


def test_read_split_of_a_missing_file_names_the_command(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    with pytest.raises(PipelineError, match="modelops prepare") as info:
        prepare.read_split(path)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 5
