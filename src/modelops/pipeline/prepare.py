"""Stage 3, prepare: split raw rows into train and test by a hash of (seed, id).

A row's side depends only on its id and the seed, never on row order or on other rows, so the test
split is stable across pull requests that leave the data alone, and rows already in the test set
stay there when new rows are appended.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from modelops.config import SplitParams
from modelops.declarations import Dataset
from modelops.pipeline import dataset

_BUCKETS = 1 << 32
_GOLDEN = 0x9E3779B97F4A7C15  # odd, so distinct seeds give distinct salts


def test_mask(ids: pd.Series, params: SplitParams) -> np.ndarray:
    """True for rows that belong to the test split."""
    # pandas ignores `hash_key` for numeric values, so the seed is mixed into the ids before hashing.
    # Seed 0 leaves the ids as they are: the split the shipped params have always produced.
    salt = np.uint64(params.seed * _GOLDEN % (1 << 64))
    keys = pd.Series(ids.astype("int64").to_numpy().view("uint64") ^ salt)
    hashed = pd.util.hash_pandas_object(keys, index=False)
    return (hashed.to_numpy() % _BUCKETS) < int(params.test_fraction * _BUCKETS)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False, compression="zstd")
    tmp.replace(path)


def prepare(
    ds: Dataset,
    params: SplitParams,
    raw: Path | None = None,
    train_out: Path | None = None,
    test_out: Path | None = None,
) -> tuple[int, int]:
    """Write the two splits with declared dtypes; return their row counts."""
    frame = dataset.read_raw(ds, raw)
    target = frame[[ds.target]].astype("float64" if ds.task == "regression" else object)
    typed = pd.concat([frame[[ds.id]].astype("int64"), target, dataset.to_features(ds, frame)], axis=1)
    mask = test_mask(typed[ds.id], params)
    train, test = typed[~mask].reset_index(drop=True), typed[mask].reset_index(drop=True)
    _write_parquet(train, train_out or ds.train_file)
    _write_parquet(test, test_out or ds.test_file)
    return len(train), len(test)


def read_split(path: Path) -> pd.DataFrame:
    """Read a prepared split written by `prepare`."""
    from modelops.errors import PipelineError

    if not path.exists():
        raise PipelineError(f"{path}: not found (run `modelops prepare` or `dvc repro prepare`)")
    return pd.read_parquet(path)
