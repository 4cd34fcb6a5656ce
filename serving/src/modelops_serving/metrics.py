"""Prometheus metrics of one server: requests, latency, batch sizes, predictions (classes or values),
inference log, feedback, bearer-token refusals, model info."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import HistogramMetricFamily, Metric, SummaryMetricFamily

from modelops_serving.auth import REASONS as REFUSALS

__all__ = ["CONTENT_TYPE_LATEST", "VALUE_BUCKETS", "Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096)
# Regression targets have any scale and sign: 1-2-5 steps from 0.01 to 1e5 on both sides of zero.
_STEPS = (*(m * 10.0**e for e in range(-2, 5) for m in (1, 2, 5)), 1e5)
VALUE_BUCKETS = (*(-v for v in reversed(_STEPS)), 0.0, *_STEPS)


class PredictionValues:
    """Regression predictions, observed a batch at a time, as two families labelled by model:
    `modelops_prediction_value` (summary: `_count` and `_sum`, so the mean over any window) and
    `modelops_prediction_distribution` (histogram buckets; OpenMetrics gives a histogram with
    negative buckets no `_sum`, hence the separate summary).

    prometheus_client's own types observe one value per Python call; a 10k-row request would cost
    ~10 ms of event loop. Here a batch is one searchsorted + bincount.
    """

    def __init__(self, bounds: tuple[float, ...] = VALUE_BUCKETS) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self._counts = np.zeros(len(bounds) + 1, dtype=np.int64)  # the last one is +Inf
        self._sum = 0.0
        self._model: str | None = None
        self._lock = threading.Lock()

    def bind(self, model: str) -> None:
        """Start exposing samples labelled with this model."""
        self._model = model

    def observe(self, values: np.ndarray) -> None:
        """Count finite values (`le` buckets: a value equal to a bound falls in that bound's bucket)."""
        flat = values.ravel()
        counts = np.bincount(np.searchsorted(self.bounds, flat, side="left"), minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(flat.sum())

    def collect(self) -> Iterator[Metric]:
        summary = SummaryMetricFamily(
            "modelops_prediction_value", "Predicted values of a regression model", labels=["model"]
        )
        histogram = HistogramMetricFamily(
            "modelops_prediction_distribution",
            "Predicted values of a regression model, by bucket",
            labels=["model"],
        )
        if self._model is not None:
            with self._lock:
                cumulative, total = np.cumsum(self._counts).tolist(), self._sum
            summary.add_metric([self._model], cumulative[-1], total)
            les = [*(repr(float(b)) for b in self.bounds), "+Inf"]
            histogram.add_metric([self._model], list(zip(les, cumulative, strict=True)), None)
        yield summary
        yield histogram


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
        # Exposed at 0 from the start: Prometheus' increase() counts from a series' first sample, so
        # a status first seen mid-window (a canary's first 5xx) would be lost to `modelops analyze`
        # and to the error-rate alert.
        for endpoint in ("v1", "v2"):
            self.latency.labels(endpoint)
            for status in ("200", "500", "503"):
                self.requests.labels(endpoint, status)
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
            "modelops_predictions",
            "Predicted rows by most probable class (classifiers)",
            ["model", "class"],
            registry=r,
        )
        self.prediction_values = PredictionValues()
        r.register(self.prediction_values)
        self.inference_log_records = Counter(
            "modelops_inference_log_records", "Sampled rows written to the inference log", registry=r
        )
        self.inference_log_dropped = Counter(
            "modelops_inference_log_dropped",
            "Sampled rows not logged: the writer's queue was full, or the write failed",
            ["reason"],
            registry=r,
        )
        self.feedback = Counter(
            "modelops_feedback", "Outcomes (rows) accepted by the feedback endpoints", registry=r
        )
        self.feedback_requests = Counter(
            "modelops_feedback_requests",
            "Feedback requests by endpoint and HTTP status (404: an id this server does not remember)",
            ["endpoint", "status"],
            registry=r,
        )
        self.feedback_log_records = Counter(
            "modelops_feedback_log_records", "Outcomes (rows) written to the feedback log", registry=r
        )
        self.feedback_dropped = Counter(
            "modelops_feedback_dropped",
            "Accepted outcomes not logged: the writer's queue was full, or the write failed",
            ["reason"],
            registry=r,
        )
        for reason in ("queue_full", "write_error"):  # exposed as 0 from the start, for rate() alerts
            self.inference_log_dropped.labels(reason)
            self.feedback_dropped.labels(reason)
        # Refused requests are not in modelops_requests_total: a scan without a token must not move
        # the error rate a canary analysis or an alert reads.
        self.auth_refusals = Counter(
            "modelops_auth_refusals",
            "Requests refused by the bearer-token check: missing or malformed Authorization header, "
            "unknown token, token in the query string",
            ["reason"],
            registry=r,
        )
        for reason in REFUSALS:
            self.auth_refusals.labels(reason)
        self.auth_tokens = Gauge(
            "modelops_auth_tokens",
            "Bearer tokens accepted now (0: auth off, or a tokens file emptied at run time)",
            registry=r,
        )
        self.model_info = Info("modelops_model", "The served model", registry=r)
        self._class_counters: list[Counter] = []
        self._regression = False
        self._request_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def set_model(
        self,
        name: str,
        version: str,
        content_hash: str,
        classes: tuple[str, ...],
        *,
        regression: bool = False,
    ) -> None:
        """Publish the model info metric; bind the per-class counters, or the value histogram."""
        self.model_info.info({"name": name, "version": version, "hash": content_hash})
        self._regression = regression
        if regression:
            self.prediction_values.bind(name)
        else:
            self._class_counters = [self.predictions.labels(name, c) for c in classes]

    def observe_batch(self, rows: int, seconds: float) -> None:
        """One batched predict call (the batcher's callback)."""
        self.batch_size.observe(rows)
        self.predict_seconds.observe(seconds)

    def observe_predictions(self, out: np.ndarray) -> None:
        """A classifier's rows under their most probable class; a regressor's values in the histogram."""
        if self._regression:
            self.prediction_values.observe(out)
        else:
            self.observe_classes(out)

    def observe_classes(self, proba: np.ndarray) -> None:
        """Count each row under its most probable class."""
        if len(proba) == 1:
            self._class_counters[int(proba[0].argmax())].inc()
            return
        for k, count in enumerate(np.bincount(proba.argmax(axis=1), minlength=len(self._class_counters))):
            if count:
                self._class_counters[k].inc(int(count))

    def observe_request(self, endpoint: str, status: int, seconds: float | None) -> None:
        """One handled request (the labelled children are looked up once per endpoint and status:
        `labels()` costs a few µs, twice on every request)."""
        children = self._request_children.get((endpoint, status))
        if children is None:
            children = (self.requests.labels(endpoint, str(status)), self.latency.labels(endpoint))
            self._request_children[(endpoint, status)] = children
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
