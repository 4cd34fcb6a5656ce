"""Prometheus metrics of one server: requests, latency, batch sizes, predicted classes, inference log,
model info."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096)


class Metrics:
    """The server's metrics in their own registry (so that several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelops_requests", "Requests by endpoint and HTTP status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "modelops_request_seconds",
            "Time inside the prediction handlers, from body read to response",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelops_batch_rows", "Rows per batched predict call", buckets=_BATCH_BUCKETS, registry=r
        )
        self.predict_seconds = Histogram(
            "modelops_predict_seconds",
            "Time of one batched predict call",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "modelops_predictions", "Predicted rows by most probable class", ["model", "class"], registry=r
        )
        self.inference_log_records = Counter(
            "modelops_inference_log_records", "Sampled rows written to the inference log", registry=r
        )
        self.inference_log_dropped = Counter(
            "modelops_inference_log_dropped",
            "Sampled rows not logged: the writer's queue was full, or the write failed",
            ["reason"],
            registry=r,
        )
        for reason in ("queue_full", "write_error"):  # exposed as 0 from the start, for rate() alerts
            self.inference_log_dropped.labels(reason)
        self.model_info = Info("modelops_model", "The served model", registry=r)
        self._class_counters: list[Counter] = []

    def set_model(self, name: str, version: str, content_hash: str, classes: tuple[str, ...]) -> None:
        """Publish the model info metric and bind the per-class counters."""
        self.model_info.info({"name": name, "version": version, "hash": content_hash})
        self._class_counters = [self.predictions.labels(name, c) for c in classes]

    def observe_batch(self, rows: int, seconds: float) -> None:
        """One batched predict call (the batcher's callback)."""
        self.batch_size.observe(rows)
        self.predict_seconds.observe(seconds)

    def observe_classes(self, proba: np.ndarray) -> None:
        """Count each row under its most probable class."""
        if len(proba) == 1:
            self._class_counters[int(proba[0].argmax())].inc()
            return
        for k, count in enumerate(np.bincount(proba.argmax(axis=1), minlength=len(self._class_counters))):
            if count:
                self._class_counters[k].inc(int(count))

    def observe_request(self, endpoint: str, status: int, seconds: float | None) -> None:
        """One handled request."""
        self.requests.labels(endpoint, str(status)).inc()
        if seconds is not None:
            self.latency.labels(endpoint).observe(seconds)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
