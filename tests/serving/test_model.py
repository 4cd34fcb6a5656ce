"""In-process: loading, hash refusal, the numpy fast path, storage URIs, validation and batching."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import fsspec
import numpy as np
import pytest
import yaml
from modelops_serving.batching import Batcher
from modelops_serving.fastpath import SMALL_BATCH_ROWS, _small_batch_trees, generate_rows
from modelops_serving.integrity import tree_hash
from modelops_serving.model import FeatureRows, ModelLoadError, load_model
from modelops_serving.settings import Settings
from modelops_serving.storage import resolve
from modelops_serving.validation import RequestError, rows_from_values

from modelops.workspace import PROJECT_ROOT

Packaged = object  # the conftest fixture's type


def test_signature_classes_and_fast_path(packaged: Packaged) -> None:
    model = packaged.model
    assert [f.name for f in model.features][:3] == ["seniority", "time", "age"]
    assert {f.kind for f in model.features} == {"double", "string"}
    assert model.classes == ("good", "bad")
    assert model.fast_path
    assert model.content_hash == packaged.content_hash


@pytest.mark.parametrize("n", [1, 5, 24, 25, 300, 1000])
def test_fast_path_equals_the_pipeline(packaged: Packaged, n: int) -> None:
    """Generated rows with NaN, missing and unseen categories, through both fast-path branches."""
    model = packaged.model
    rows = generate_rows(model, n, seed=1000 + n)
    assert np.isnan(rows.numeric).any() or n < 5
    np.testing.assert_allclose(model.predict(rows), model.predict_pipeline(rows), rtol=1e-9, atol=0)


def test_real_rows_equal_the_training_pipeline(packaged: Packaged) -> None:
    settings = Settings()
    rows = packaged.rows[:500]
    x = rows_from_values(rows, None, packaged.model, settings)
    np.testing.assert_allclose(packaged.model.predict(x), packaged.reference(rows), rtol=1e-9, atol=0)


def test_hash_mismatch_refuses_before_unpickling(packaged: Packaged, tmp_path: Path, caplog) -> None:
    bad = tmp_path / "model"
    shutil.copytree(packaged.path, bad)
    (bad / "model.pkl").write_bytes(b"not a pickle: must never be read")
    with caplog.at_level(logging.ERROR), pytest.raises(ModelLoadError) as err:
        load_model(str(bad), expected_hash=packaged.content_hash, name=packaged.name, version="v")
    assert packaged.content_hash in str(err.value) and "hash mismatch" in str(err.value)
    assert "unpickle" not in str(err.value)
    assert any("REFUSED" in r.message and packaged.content_hash in r.message for r in caplog.records)


def test_missing_directory_and_bad_pickle_are_load_errors(packaged: Packaged, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such model directory"):
        load_model(str(tmp_path / "nope"), expected_hash=None, name=packaged.name, version="v")
    bad = tmp_path / "model"
    shutil.copytree(packaged.path, bad)
    (bad / "model.pkl").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match=r"cannot unpickle model\.pkl"):
        load_model(str(bad), expected_hash=None, name=packaged.name, version="v")


def test_remote_uri_is_copied_with_fsspec(packaged: Packaged, tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    for file in packaged.path.iterdir():
        fs.pipe(f"/bucket/{packaged.name}/{file.name}", file.read_bytes())
    model = load_model(
        f"memory://bucket/{packaged.name}",
        expected_hash=packaged.content_hash,
        name=packaged.name,
        version="v",
        cache_dir=tmp_path / "cache",
    )
    assert model.path.is_relative_to(tmp_path / "cache") and model.content_hash == packaged.content_hash
    # the second resolve uses the cached copy
    assert resolve(f"memory://bucket/{packaged.name}", tmp_path / "cache") == model.path


def test_missing_fsspec_backend_names_the_package(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401

        pytest.skip("s3fs is installed")
    except ImportError:
        pass
    with pytest.raises(ModelLoadError, match="install s3fs"):
        resolve("s3://bucket/model", tmp_path)


def test_file_uri_is_used_in_place(packaged: Packaged) -> None:
    assert resolve(packaged.path.as_uri()) == packaged.path
    assert resolve(str(packaged.path)) == packaged.path


# ---- validation ----


def good_row(packaged: Packaged) -> list:
    return list(packaged.rows[0])


@pytest.mark.parametrize(
    ("mutate", "names", "message"),
    [
        (lambda r: r[:-1], None, "row 0 has 12 values; the model expects 13"),
        (lambda r: [*r[:1], True, *r[2:]], None, "feature 'time', row 0: expected a number, got bool"),
        (lambda r: [*r[:1], "60", *r[2:]], None, "feature 'time', row 0: expected a number, got str"),
        (lambda r: [*r[:9], 3, *r[10:]], None, "feature 'home', row 0: expected a string, got int"),
        (lambda r: [float("nan"), *r[1:]], None, "feature 'seniority', row 0: nan is not a finite number"),
        (lambda r: [float("inf"), *r[1:]], None, "feature 'seniority', row 0: inf is not a finite number"),
        (lambda r: r, ["x", *[f"f{i}" for i in range(12)]], "unknown feature(s)"),
        (lambda r: r, ["seniority"] * 13, "appears twice"),
    ],
)
def test_validation_names_the_problem(packaged: Packaged, mutate, names, message: str) -> None:
    with pytest.raises(RequestError) as err:
        rows_from_values([good_row(packaged), mutate(good_row(packaged))], names, packaged.model, Settings())
    assert err.value.status == 400
    assert message.replace("row 0", "row 1") in err.value.message or message in err.value.message


def test_names_in_any_order_are_reordered(packaged: Packaged) -> None:
    model = packaged.model
    names = [f.name for f in model.features]
    row = good_row(packaged)
    perm = list(reversed(range(len(names))))
    a = rows_from_values([row], None, model, Settings())
    b = rows_from_values([[row[i] for i in perm]], [names[i] for i in perm], model, Settings())
    np.testing.assert_array_equal(a.numeric, b.numeric)
    assert a.strings.tolist() == b.strings.tolist()


def test_null_is_missing_and_too_many_rows_is_413(packaged: Packaged) -> None:
    row = [None] * len(packaged.model.features)
    x = rows_from_values([row], None, packaged.model, Settings())
    assert np.isnan(x.numeric).all() and packaged.model.predict(x).shape == (1, 2)
    with pytest.raises(RequestError) as err:
        rows_from_values([good_row(packaged)] * 11, None, packaged.model, Settings(max_rows_per_request=10))
    assert err.value.status == 413 and "11 rows" in err.value.message


# ---- batching ----


def test_batcher_returns_each_caller_its_rows_and_coalesces(packaged: Packaged) -> None:
    model = packaged.model
    sizes: list[int] = []

    async def run() -> None:
        batcher = Batcher(
            model.predict, max_batch_size=32, max_wait_ms=5, on_batch=lambda n, _: sizes.append(n)
        )
        await batcher.start()
        parts = [generate_rows(model, k % 7 + 1, seed=k) for k in range(60)] + [generate_rows(model, 100, 99)]
        results = await asyncio.gather(*(batcher.predict(p) for p in parts))
        await batcher.stop()
        for part, got in zip(parts, results, strict=True):
            np.testing.assert_allclose(got, model.predict_pipeline(part), rtol=1e-9)

    asyncio.run(run())
    assert max(sizes) > 1 and 100 in sizes and all(s <= 32 for s in sizes if s != 100)


def test_warm_up_starts_and_pins_the_predict_thread_before_any_request(packaged: Packaged) -> None:
    """The thread start and threadpoolctl's library scan are paid by the warm-up, not by the first
    live request (with every request queued behind it); the batch metric does not see it."""
    import threading

    model = packaged.model
    assert model.example is not None and len(model.example) >= 1
    inits: list[str] = []
    calls: list[int] = []
    sizes: list[int] = []

    def predict(x: FeatureRows) -> np.ndarray:
        calls.append(len(x))
        return model.predict(x)

    async def run() -> None:
        batcher = Batcher(
            predict,
            thread_init=lambda: inits.append(threading.current_thread().name),
            on_batch=lambda n, _: sizes.append(n),
        )
        await batcher.start()
        assert inits == []  # a thread pool starts its thread on the first call, not before
        await batcher.warm_up(model.example)
        assert len(inits) == 1 and inits[0].startswith("predict")
        assert calls == [len(model.example)] + [1] * len(model.example) and sizes == []
        await batcher.predict(model.example)
        assert len(inits) == 1 and sizes == [len(model.example)]  # the same, already pinned thread
        await batcher.stop()

    asyncio.run(run())


def test_a_failing_predict_fails_only_its_batch() -> None:
    calls = 0

    def predict(x: FeatureRows) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom")
        return np.zeros((len(x), 2))

    one = FeatureRows(np.zeros((1, 1)), np.empty((1, 0), dtype=object))

    async def run() -> None:
        batcher = Batcher(predict, max_batch_size=4, max_wait_ms=0)
        await batcher.start()
        with pytest.raises(ValueError, match="boom"):
            await batcher.predict(one)
        assert (await batcher.predict(one)).shape == (1, 2)  # the consumer survived
        await batcher.stop()

    asyncio.run(run())


def test_an_unrecognised_pipeline_falls_back_to_the_pipeline(packaged: Packaged, caplog) -> None:
    import dataclasses

    from modelops_serving.fastpath import build_fast_path
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    features, estimator = packaged.model.pipeline.steps[0][1], packaged.model.pipeline.steps[-1][1]
    odd = Pipeline([("features", features), ("identity", FunctionTransformer()), ("model", estimator)])
    model = dataclasses.replace(packaged.model, pipeline=odd, fast_path=False, _fast=None)
    with caplog.at_level(logging.WARNING):
        assert build_fast_path(model) is None
    assert any("no numpy fast path" in r.message for r in caplog.records)
    rows = generate_rows(model, 20, seed=5)
    np.testing.assert_allclose(model.predict(rows), packaged.model.predict(rows), rtol=1e-9)


@pytest.mark.parametrize("name", sorted(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["models"]))
def test_every_shipped_model_loads_with_its_fast_path(name: str, trained_repo: Path) -> None:
    """The project's own packaged models (DVC outputs): a ColumnTransformer branch with no columns
    (a dataset without categorical features) is never fitted and must not stop the fast path."""
    directory = trained_repo / "models" / name / "model"  # reproduced: clean clones have no DVC outputs
    model = load_model(str(directory), expected_hash=tree_hash(directory), name=name, version="v1")
    assert model.fast_path
    rows = generate_rows(model, 50, seed=1)
    np.testing.assert_allclose(model.predict(rows), model.predict_pipeline(rows), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression", "stumps"])
def test_the_tree_walk_equals_the_estimator_on_missing_and_infinite_values(kind: str) -> None:
    """The numpy walk settles missing values before walking (NaN as -inf for nodes that send them
    left): trees that send them either way, +-inf, trees of every depth and trees with no split."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 4))
    score = x[:, 0] + x[:, 1] ** 2
    x[rng.random(600) < 0.2, 0] = np.nan  # missing at random ...
    x[(score > 1) & (rng.random(600) < 0.4), 2] = np.nan  # ... and only where the score is high
    options = {"max_iter": 25, "max_leaf_nodes": 9, "random_state": 0}
    if kind == "stumps":  # no leaf may be this small: every tree is its root alone
        options["min_samples_leaf"] = 400
    if kind == "regression":
        estimator = HistGradientBoostingRegressor(**options).fit(x, score)
    else:
        edges = [0.0, 1.0] if kind == "multiclass" else [0.0]
        estimator = HistGradientBoostingClassifier(**options).fit(x, np.digitize(score, edges))
    walk = _small_batch_trees(estimator, SimpleNamespace(is_classifier=kind != "regression"))
    assert walk is not None
    nodes = np.concatenate([p.nodes for it in estimator._predictors for p in it])
    splits = nodes[~nodes["is_leaf"].astype(bool)]
    if kind == "stumps":
        assert len(splits) == 0
    else:
        assert set(splits["missing_go_to_left"].astype(bool)) == {True, False}, "both ways exercised"
    test = rng.normal(size=(SMALL_BATCH_ROWS, 4))
    test[rng.random(test.shape) < 0.25] = np.nan
    test[0, 0], test[1, 1], test[2, 2] = np.inf, -np.inf, np.inf
    expected = estimator.predict(test)[:, None] if kind == "regression" else estimator.predict_proba(test)
    for n in (1, 5, SMALL_BATCH_ROWS):
        got = walk(test[:n])
        assert got.shape == expected[:n].shape and got.flags.c_contiguous
        np.testing.assert_allclose(got, expected[:n], rtol=1e-12, atol=1e-12)
