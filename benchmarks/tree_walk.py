"""The numpy small-batch tree walk against scikit-learn's own predict, in one process.

The server predicts batches of at most `SMALL_BATCH_ROWS` rows by walking every tree at once in
numpy (modelops_serving/fastpath.py) instead of calling the fitted estimator, whose Cython predictor
is called once per tree. This times both on the same transformed rows (a tenth of the values
missing), one BLAS/OpenMP thread, and reports the walk's speed-up per batch size: the reason the
walk exists, and where scikit-learn would take over.

    uv run --frozen python benchmarks/tree_walk.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import timeit
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from modelops_serving.fastpath import SMALL_BATCH_ROWS, _small_batch_trees
from serving_kit import load_pipeline, request_rows
from threadpoolctl import threadpool_limits

RESULTS = Path(__file__).parent / "results" / "tree-walk.json"
SIZES = (1, 4, 8, 16, 24, 64, 256)


def best_us(fn, x: np.ndarray, repeat: int) -> float:
    """The fastest of `repeat` timings, in µs a call (each timing ~0.2 s)."""
    number = max(1, int(0.2 / max(timeit.timeit(lambda: fn(x), number=1), 1e-6)))
    return min(timeit.repeat(lambda: fn(x), number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    pipeline = load_pipeline()
    transform, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    x = np.asarray(transform.transform(request_rows().iloc[: max(SIZES)]), dtype=np.float64)
    x[np.random.default_rng(0).random(x.shape) < 0.1] = np.nan
    walk = _small_batch_trees(estimator, SimpleNamespace(is_classifier=True))
    if walk is None:
        raise SystemExit("the served estimator has no numpy tree walk")
    rows = []
    with threadpool_limits(1):
        for n in SIZES:
            part = x[:n]
            np.testing.assert_allclose(walk(part), estimator.predict_proba(part), rtol=1e-9)
            ours = best_us(walk, part, args.repeat)
            theirs = best_us(estimator.predict_proba, part, args.repeat)
            speedup = round(theirs / ours, 2)
            rows.append(
                {"rows": n, "walk_us": round(ours, 1), "sklearn_us": round(theirs, 1), "speedup": speedup}
            )
    print(f"small batches (<= {SMALL_BATCH_ROWS} rows) take the walk in the server\n")
    print("| rows | numpy walk µs | scikit-learn µs | speed-up |\n|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['rows']} | {r['walk_us']:,} | {r['sklearn_us']:,} | **{r['speedup']}x** |")
    RESULTS.write_text(json.dumps({"small_batch_rows": SMALL_BATCH_ROWS, "sizes": rows}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
