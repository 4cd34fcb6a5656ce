"""All stages in one process, in dvc.yaml's order: the baseline DVC's overhead is measured against."""

from __future__ import annotations

from modelops import progress
from modelops.config import Params


def run_all(params: Params, log: bool = True) -> None:
    """ingest → validate → prepare → (train → evaluate → package) per model."""
    from modelops.pipeline import evaluate, ingest, package, prepare, train, validate

    with progress.step("ingest"):
        ingest.ingest(params.data)
    with progress.step("validate"):
        validate.validate()
    with progress.step("prepare"):
        prepare.prepare(params.split)
    for name, model in params.models.items():
        with progress.step(f"train {name}"):
            train.train(name, model)
        with progress.step(f"evaluate {name}"):
            evaluate.evaluate(name, model, params.evaluate)
        with progress.step(f"package {name}"):
            outputs = package.package(name, params)
        if log:
            from modelops.pipeline.tracking import log_run

            with progress.step(f"log {name}"):
                log_run(name, params, outputs)
