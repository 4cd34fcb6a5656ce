"""All stages in one process, in dvc.yaml's order: the baseline DVC's overhead is measured against."""

from __future__ import annotations

from modelops import progress
from modelops.config import Params


def run_all(params: Params, log: bool = True) -> None:
    """(ingest → validate → prepare) per dataset, then (train → evaluate → package) per model."""
    from modelops.pipeline import evaluate, ingest, package, prepare, train, validate

    for name in params.datasets:
        ds = params.dataset(name)
        with progress.step(f"ingest {name}"):
            ingest.ingest(ds)
        with progress.step(f"validate {name}"):
            validate.validate(ds)
        with progress.step(f"prepare {name}"):
            prepare.prepare(ds, params.split(name))
    for name, model in params.models.items():
        with progress.step(f"train {name}"):
            train.train(name, model, params.dataset_of(name))
        with progress.step(f"evaluate {name}"):
            evaluate.evaluate(name, model, params.dataset_of(name), params.evaluate)
        with progress.step(f"package {name}"):
            outputs = package.package(name, params)
        if log:
            from modelops.pipeline.tracking import log_run

            with progress.step(f"log {name}"):
                log_run(name, params, outputs)
