"""Stage 6, package: the model in MLflow format, made byte-for-byte reproducible, plus a model card.

MLflow stamps each saved model with a creation time and a random uuid; both are pinned here (the
uuid is derived from the content) so that the same inputs give the same directory and the same
content hash, which is what promotion and the server's integrity check rely on.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from modelops import tasks
from modelops.config import Params
from modelops.declarations import Dataset
from modelops.pipeline import dataset, reference
from modelops.pipeline.outputs import (
    card_file,
    metrics_file,
    package_dir,
    pipeline_file,
)
from modelops.pipeline.train import load_pipeline

PINNED_CREATED = "1970-01-01 00:00:00.000000"
# The dataset declaration inside the hashed directory: the batch engine (modelops_serving.batch_schema)
# validates input files against it, and it is verified with the model it describes.
DECLARATION_FILE = "declaration.json"
RUNTIME_REQUIREMENTS = ("scikit-learn", "numpy", "pandas", "scipy")
EXAMPLE_ROWS = 3


def _requirements() -> list[str]:
    return [f"{dist}=={metadata.version(dist)}" for dist in RUNTIME_REQUIREMENTS]


def _pin_mlmodel(path: Path) -> None:
    """Replace MLflow's wall-clock time and random uuid by values that depend on content only."""
    from modelops_serving.integrity import tree_hash

    mlmodel = path / "MLmodel"
    doc = yaml.safe_load(mlmodel.read_text())
    doc.pop("model_id", None)
    doc["utc_time_created"] = PINNED_CREATED
    doc["model_size_bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.name != "MLmodel")
    doc["model_uuid"] = "pending"
    mlmodel.write_text(yaml.safe_dump(doc, sort_keys=True))
    # Every file, not MLmodel alone: two models of the same size and signature have equal MLmodels.
    doc["model_uuid"] = uuid.uuid5(uuid.NAMESPACE_URL, tree_hash(path)).hex
    mlmodel.write_text(yaml.safe_dump(doc, sort_keys=True))


def declaration_doc(ds: Dataset) -> dict[str, Any]:
    """What a model needs to know of its dataset to check input rows: the id, target, task, classes
    and every feature's kind and bounds (descriptions left out: a reworded one is the same model)."""
    features = {
        name: spec.model_dump(mode="json", exclude={"description"}) for name, spec in ds.features.items()
    }
    return {
        "dataset": ds.name,
        "id": ds.id,
        "target": ds.target,
        "task": ds.task,
        "classes": list(ds.classes) if ds.classes else None,
        "features": features,
    }


def save_mlflow_model(name: str, ds: Dataset, out: Path, seed: int = 0) -> None:
    """Save the trained pipeline with its signature, an input example, its reference statistics
    (for `modelops monitor`) and its dataset declaration (for `modelops batch`), then pin volatile
    fields."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    # The pickle caution and the unpinned-pip note are known; the server verifies the hash.
    logging.getLogger("mlflow").setLevel(logging.ERROR)

    from modelops.pipeline.evaluate import predict
    from modelops.pipeline.prepare import read_split

    pipeline = load_pipeline(name)
    test = read_split(ds.test_file)
    example = dataset.to_features(ds, test.head(EXAMPLE_ROWS))
    signature = infer_signature(example, predict(pipeline, ds.task, example))
    # What the server needs beyond the signature: the task, and the classes that name the
    # probability columns (classes [0, 1, ...] of predict_proba) or the target that names the value.
    meta: dict[str, Any] = {"task": ds.task, "dataset": ds.name}
    meta |= {"class_names": list(ds.classes)} if ds.classes else {"target": ds.target}
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    mlflow.sklearn.save_model(
        pipeline,
        tmp,
        serialization_format="pickle",
        signature=signature,
        input_example=example,
        pip_requirements=_requirements(),
        pyfunc_predict_fn="predict" if ds.task == "regression" else "predict_proba",
        metadata=meta,
    )
    # Ship the train stage's own bytes, not MLflow's re-pickle of the loaded object: a re-pickle
    # memoizes by object identity, which depends on what else the process imported or built
    # (seen: 20 bytes differed when a params check had constructed an estimator first).
    shutil.copyfile(pipeline_file(name), tmp / "model.pkl")
    # Inside the hashed directory: the reference travels with, and is verified as, the model. Its
    # test metrics are evaluate's own (metrics.json, a declared dep): the baseline of concept drift.
    scores = json.loads(metrics_file(name).read_text())
    measured = {m: scores[m] for m in tasks.METRICS[ds.task] if m in scores}
    stats = reference.build(pipeline, ds, read_split(ds.train_file), test, seed, measured)
    reference.write(tmp / reference.REFERENCE_FILE, stats)
    (tmp / DECLARATION_FILE).write_text(json.dumps(declaration_doc(ds), indent=2) + "\n")
    _pin_mlmodel(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def render_card(name: str, params: Params, content_hash: str, data_md5: str) -> str:
    """A short, reproducible model card: what the model is, what it saw, how well it does."""
    model, ds = params.model(name), params.dataset_of(name)
    split = params.split(ds.name)
    scores: dict[str, Any] = json.loads(metrics_file(name).read_text())
    hyper = json.dumps(model.hyperparams, sort_keys=True)
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(scores.items()))
    return f"""# Model card: {name}

- **Estimator**: `{model.estimator}` with `{hyper}`, seed {model.seed}, {model.threads} threads
- **Task**: {_task_line(ds)} from {len(ds.features)} \
features ({len(ds.numeric)} numeric, {len(ds.categorical)} categorical)
- **Data**: dataset `{ds.name}` (`{ds.declaration_file}`, source `{ds.source.kind}`), raw file md5 \
`{data_md5}`; test split {split.test_fraction:.0%} by hash of `{ds.id}` (seed {split.seed})
- **Model content hash** (sha256 of `model/`): `{content_hash}`
- **Git commit, branch, MLflow run**: recorded as tags of the MLflow run that logged this card \
(kept out of this file so that it stays byte-for-byte reproducible)

## Test metrics

| metric | value |
|---|---|
{rows}
"""


def _task_line(ds: Dataset) -> str:
    if ds.task == "regression":
        return f"regression of `{ds.target}`"
    if ds.task == "binary":
        return f'binary classification: `{ds.target} == "{ds.positive}"`'
    return f"multiclass classification of `{ds.target}` ({', '.join(ds.classes or ())})"


def measure_latency(name: str, params: Params) -> dict[str, float]:
    """Time the packaged pipeline on one thread (what one serving worker gets); write latency.json."""
    from modelops.pipeline.evaluate import latency, write_json
    from modelops.pipeline.outputs import latency_file
    from modelops.pipeline.prepare import read_split
    from modelops.pipeline.train import pinned_threads

    ds = params.dataset_of(name)
    x = dataset.to_features(ds, read_split(ds.test_file))
    with pinned_threads(1):
        timing = latency(load_pipeline(name), x, params.evaluate, ds.task)
    write_json(latency_file(name), timing)
    return timing


def package(name: str, params: Params) -> dict[str, str]:
    """Write models/<name>/model (MLflow format, reference.json, declaration.json), the card,
    latency.json; return hashes."""
    from modelops_serving.integrity import file_sha256, tree_hash

    out = package_dir(name)
    model, ds = params.model(name), params.dataset_of(name)
    save_mlflow_model(name, ds, out, seed=model.seed)
    measure_latency(name, params)
    content_hash = tree_hash(out)
    raw_md5 = _md5(ds.raw_file)
    card = card_file(name)
    card.write_text(render_card(name, params, content_hash, raw_md5))
    return {"content_hash": content_hash, "raw_md5": raw_md5, "card_sha256": file_sha256(card)}


def _md5(path: Path) -> str:
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
