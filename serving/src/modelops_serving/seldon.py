"""The model as a Seldon Core v1 Python-wrapper component, on the same core as the server.

For clusters that run models with Seldon's own microservice image instead of ours:

    seldon-core-microservice modelops_serving.seldon.SeldonModel --service-type MODEL

Configuration is the server's (`MODELOPS_*` variables, see settings.py); a SeldonDeployment's
`parameters` (model_uri, expected_hash, ...) override them. Loading, hash verification, input
validation and prediction are `load_model`, `rows_from_values` and `ServedModel.predict`, so both
runtimes give the same answer for the same rows and refuse the same inputs; what Seldon's wrapper
adds or loses (gunicorn workers instead of dynamic batching, its own metrics) is its own. Every task
is served (the class name is historical): a classifier's class probabilities named by its classes,
or a regressor's (n, 1) values named by its target.

Feedback: Seldon's wrapper hands `send_feedback` the request's features and the truth, but no
request id and no prediction time, and its gunicorn workers share no memory of predictions. So the
prediction is recomputed from the features (the same verified model gives the same answer), the
truth is checked as the server checks it, and the outcomes become Seldon custom metrics (rows, and
correct rows or the summed absolute error) rather than lines of the feedback log, which could not
be joined to anything by id.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from modelops_serving import protocol_v1, signature
from modelops_serving.feedback import check_truth
from modelops_serving.model import NUMERIC_KINDS, ServedModel, load_model, pin_threads
from modelops_serving.settings import Settings
from modelops_serving.validation import RequestError, check_predictions, rows_from_values

log = logging.getLogger(__name__)

try:  # present where the class runs under seldon-core-microservice; the server does not need it
    from seldon_core.flask_utils import SeldonMicroserviceException as _SeldonError
except ImportError:  # pragma: no cover - exercised only without seldon-core installed
    _SeldonError = Exception


class SeldonRequestError(_SeldonError):
    """Bad input: Seldon's wrapper answers it with this status (4xx), not a 500."""

    def __init__(self, message: str, status: int = 400) -> None:
        if _SeldonError is Exception:
            super().__init__(message)
        else:
            super().__init__(message, status_code=status, reason="MICROSERVICE_BAD_DATA")
        self.message, self.status = message, status


class SeldonModel:
    """Seldon's Python-wrapper interface: load, predict, health_status, metrics, tags."""

    def __init__(self, **parameters: Any) -> None:
        # Keyword arguments are the SeldonDeployment's `parameters`; they win over MODELOPS_* variables.
        self.settings = Settings(**parameters)
        self.model: ServedModel | None = None
        self._local = threading.local()

    # -- lifecycle ------------------------------------------------------------------------------

    def load(self) -> None:
        """Resolve, hash-verify and unpickle the model (Seldon calls this once per worker)."""
        if self.model is not None:
            return
        numpy2_pickle_compat()
        s = self.settings
        self.model = load_model(
            s.model_uri,
            expected_hash=s.expected_hash,
            name=s.model_name,
            version=s.model_version,
            cache_dir=s.cache_dir,
            signer=signature.required(s),
        )

    def _require_model(self) -> ServedModel:
        if self.model is None:
            raise SeldonRequestError("the model is not loaded (yet)", status=503)
        return self.model

    # -- predict ----------------------------------------------------------------------------------

    def predict(self, X: Any, features_names: list[str] | None = None, **kwargs: Any) -> np.ndarray:
        """Class probabilities (n, classes), or regression values (n, 1), for rows X;
        features_names, when given, in any order."""
        model = self._require_model()
        names = list(features_names) if features_names is not None and len(features_names) else None
        try:
            if isinstance(X, dict):  # jsonData: the server's two JSON layouts
                rows = protocol_v1.decode({"jsonData": X}, model, self.settings)[0]
            else:
                rows = rows_from_values(self._values(X, names, model), names, model, self.settings)
        except RequestError as exc:
            raise SeldonRequestError(exc.message, exc.status) from None
        self._pin_thread()
        try:
            out = model.predict(rows)
        except ValueError as exc:  # as the server: values the model cannot compute with are a 400
            raise SeldonRequestError(f"the model cannot predict from these inputs: {exc}") from None
        try:
            check_predictions(out, model)
        except RequestError as exc:
            raise SeldonRequestError(exc.message, exc.status) from None
        if model.is_classifier:
            self._local.last = (len(rows), np.bincount(out.argmax(axis=1), minlength=out.shape[1]), None)
        else:
            self._local.last = (len(rows), None, float(out.mean()))
        return out

    def send_feedback(
        self,
        features: Any,
        feature_names: list[str] | None,
        reward: float,
        truth: Any,
        routing: int | None = None,
    ) -> list[Any]:
        """Seldon's feedback call: the model's answer for `features` (the Feedback's `request`),
        checked against `truth` (one class name or number per row); counted in `metrics()`."""
        model = self._require_model()
        if isinstance(features, np.ndarray) and features.size == 0:
            raise SeldonRequestError(
                "the Feedback has no request features: send the prediction's request in `request` "
                "(Seldon gives this wrapper no request id to find the prediction by)"
            )
        out = self.predict(features, feature_names)
        values = truth.tolist() if isinstance(truth, np.ndarray) else truth
        try:
            values = check_truth(values, model, len(out), "the request's prediction")
        except RequestError as exc:
            raise SeldonRequestError(exc.message, exc.status) from None
        if model.is_classifier:
            predicted = [model.classes[k] for k in out.argmax(axis=1).tolist()]
            score = float(sum(p == t for p, t in zip(predicted, values, strict=True)))
        else:
            score = float(np.abs(out[:, 0] - np.asarray(values, dtype=np.float64)).sum())
        self._local.last = (0, None, None)
        self._local.feedback = (len(values), score)
        return []

    def _values(self, X: Any, names: list[str] | None, model: ServedModel) -> list[list[Any]]:
        """Rows as Python values; numbers that Seldon's np.array turned into strings turned back.

        seldon-core builds `np.array(data.ndarray)`, and numpy stores rows that mix numbers and
        strings as all-strings ('<U32'), so 9.0 arrives as "9.0". Only then, and only in numeric
        columns, are strings parsed as numbers; anything unparsable stays a string, for validation
        to refuse with its usual message.
        """
        if isinstance(X, np.ndarray):
            if X.ndim != 2:
                raise SeldonRequestError(
                    f"the data must be 2-D (rows of {len(model.features)} features), "
                    f"got shape {list(X.shape)}"
                )
            values = X.tolist()
            if X.dtype.kind not in "US":
                return values
        elif isinstance(X, list):
            return X
        else:
            raise SeldonRequestError(
                f"unsupported payload {type(X).__name__}: send data.ndarray, data.tensor or jsonData"
            )
        kinds = {f.name: f.kind for f in model.features}
        order = names or [f.name for f in model.features]
        numeric = [i for i, n in enumerate(order) if kinds.get(n) in NUMERIC_KINDS]
        for row in values:
            for i in numeric:
                if i < len(row):
                    row[i] = _number(row[i])
        return values

    def _pin_thread(self) -> None:
        # OpenMP limits are per thread: pin each gunicorn/gRPC worker thread once, on first use.
        if getattr(self._local, "limiter", None) is None:
            self._local.limiter = pin_threads(self.settings.threads)

    # -- what Seldon asks about the model -----------------------------------------------------------

    def class_names(self) -> list[str]:
        """Column names of the returned array (Seldon puts them in data.names): the classes, or the
        regression target."""
        return list(self._require_model().outputs)

    def health_status(self) -> dict[str, Any]:
        """GET /health/status: fails (so the pod is not ready) until the verified model is loaded."""
        model = self._require_model()
        return {
            "ready": True,
            "name": model.name,
            "version": model.version,
            "content_hash": model.content_hash,
        }

    def init_metadata(self) -> dict[str, Any]:
        """GET /metadata (read before load(): configuration only)."""
        return {
            "name": self.settings.model_name,
            "versions": [self.settings.model_version],
            "platform": "modelops",
        }

    def tags(self) -> dict[str, str]:
        """Added to every response's meta.tags: which model and content answered."""
        model = self._require_model()
        return {"model_name": model.name, "model_version": model.version, "model_hash": model.content_hash}

    def metrics(self) -> list[dict[str, Any]]:
        """Seldon custom metrics for the request this thread just answered (counters add up): rows,
        and rows per predicted class, or (regression) the request's mean prediction as a gauge; after
        a feedback, its rows and correct rows (classifiers) or summed absolute error (regression)."""
        model = self.model
        rows, per_class, mean = getattr(self._local, "last", (0, None, None))
        self._local.last = (0, None, None)
        if model is None:
            return []
        labels = {"model_name": model.name, "model_version": model.version}
        feedback = getattr(self._local, "feedback", None)
        if feedback is not None:  # the call was send_feedback: its outcomes, not rows predicted
            self._local.feedback = None
            key = "modelops_seldon_feedback_correct_total"
            if not model.is_classifier:
                key = "modelops_seldon_feedback_abs_error_total"
            counted = (("modelops_seldon_feedback_rows_total", feedback[0]), (key, feedback[1]))
            return [{"type": "COUNTER", "key": k, "value": v, "tags": labels} for k, v in counted]
        out: list[dict[str, Any]] = [
            {"type": "COUNTER", "key": "modelops_seldon_rows_total", "value": rows, "tags": labels}
        ]
        if mean is not None:  # regression: the mean of the values just predicted
            gauge = {"type": "GAUGE", "key": "modelops_seldon_prediction_mean", "value": mean, "tags": labels}
            out.append(gauge)
        if per_class is not None:
            for name, count in zip(model.classes, per_class.tolist(), strict=True):
                out.append(
                    {
                        "type": "COUNTER",
                        "key": "modelops_seldon_predicted_class_total",
                        "value": count,
                        "tags": labels | {"class": name},
                    }
                )
        return out


def _number(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def numpy2_pickle_compat() -> None:
    """Let numpy 1.x unpickle random generators pickled by numpy 2 (a no-op on numpy 2).

    seldon-core 1.19 requires numpy < 2, and the pipeline trains under numpy 2. Fitted
    HistGradientBoosting models hold a `Generator` (`_feature_subsample_rng`), which numpy 2
    pickles as `__bit_generator_ctor(<class PCG64>)` plus a (state, seed_seq) tuple, where numpy
    1.26 expects a name and a state dict; unpatched, loading fails with "<class ...PCG64> is not a
    known BitGenerator module". numpy 1.26 ships `numpy._core` aliases for most array pickles, but
    not `numpy._core.numeric`, which protocol-5 pickles of arrays name (`_frombuffer`).
    """
    if int(np.__version__.split(".")[0]) >= 2:
        return
    import sys

    import numpy.core.numeric

    sys.modules.setdefault("numpy._core.numeric", numpy.core.numeric)
    from numpy.random import _pickle

    if getattr(_pickle, "_modelops_numpy2_compat", False):
        return
    by_name = _pickle.__dict__["__bit_generator_ctor"]
    generator_ctor, randomstate_ctor = (
        _pickle.__dict__["__generator_ctor"],
        _pickle.__dict__["__randomstate_ctor"],
    )

    def bit_generator(bit_generator_name: Any = "MT19937") -> Any:
        if isinstance(bit_generator_name, type):
            return _PendingBitGenerator(bit_generator_name)
        return by_name(bit_generator_name)

    def generator(bit_generator_name: Any = "MT19937", bit_generator_ctor: Any = by_name) -> Any:
        if isinstance(bit_generator_name, _PendingBitGenerator | np.random.BitGenerator):
            return np.random.Generator(_unwrap(bit_generator_name))
        return generator_ctor(bit_generator_name, bit_generator_ctor)

    def randomstate(bit_generator_name: Any = "MT19937", bit_generator_ctor: Any = by_name) -> Any:
        if isinstance(bit_generator_name, _PendingBitGenerator | np.random.BitGenerator):
            return np.random.RandomState(_unwrap(bit_generator_name))
        return randomstate_ctor(bit_generator_name, bit_generator_ctor)

    # Pickles name these module attributes, so replacing them is what unpickling calls; under the
    # original names, pickling (numpy 1 writes the same references) still finds them there.
    for name, func in (
        ("__bit_generator_ctor", bit_generator),
        ("__generator_ctor", generator),
        ("__randomstate_ctor", randomstate),
    ):
        func.__module__, func.__name__, func.__qualname__ = _pickle.__name__, name, name
        setattr(_pickle, name, func)
    _pickle._modelops_numpy2_compat = True


class _PendingBitGenerator:
    """A numpy-2-pickled bit generator: created from its class, then given its state by pickle."""

    def __init__(self, cls: type) -> None:
        self.bit_generator = cls()

    def __setstate__(self, state: Any) -> None:
        self.bit_generator.state = state[0] if isinstance(state, tuple) else state


def _unwrap(bit_generator: Any) -> Any:
    return bit_generator.bit_generator if isinstance(bit_generator, _PendingBitGenerator) else bit_generator
