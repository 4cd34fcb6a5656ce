"""Seldon Core v1 protocol: the SeldonMessage request/response models and their codecs.

Accepted request forms (one of them per request):
- `{"data": {"names": [...]?, "ndarray": [[row], ...]}}`: rows of feature values; `names` (any order)
  or else the signature order.
- `{"data": {"names": [...]?, "tensor": {"shape": [n, f], "values": [flat row-major values]}}}`.
- `{"jsonData": {"instances": [{"feature": value, ...}, ...]}}`: one object per row.
- `{"jsonData": {"feature": [values...], ...}}`: one list of values per feature (columnar).
The response mirrors the form: `data.ndarray` or `data.tensor` with `data.names` = the output names,
or `jsonData.predictions` as one `{name: value}` object per row; `meta` names the model, and its
`puid` is the request id (the request's own `meta.puid` if it has one, see ids.py).
Feedback (`/api/v1.0/feedback`, `/send-feedback`) takes Seldon's Feedback body: `response.meta.puid`
names the prediction, `truth.data` holds one outcome per row, `reward` is optional. The outputs
are a classifier's class names (one probability per class: binary or multiclass) or a regressor's
target name (one value per row: ndarray `[[v], ...]`, tensor shape [n, 1]).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelops_serving.model import ServedModel
from modelops_serving.settings import Settings
from modelops_serving.validation import (
    FeatureRows,
    RequestError,
    check_row_count,
    rows_from_columns,
    rows_from_values,
)

Style = Literal["ndarray", "tensor", "jsonData"]


class Tensor(BaseModel):
    """A dense tensor: its shape and its values, flattened row-major."""

    shape: list[int]
    values: list[Any]


class DefaultData(BaseModel):
    """Seldon's `data` field: feature names plus an ndarray or a tensor."""

    model_config = ConfigDict(extra="allow")

    names: list[str] | None = None
    ndarray: list[Any] | None = None
    tensor: Tensor | None = None


class Meta(BaseModel):
    """Seldon's request/response metadata."""

    model_config = ConfigDict(extra="allow")

    puid: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)
    requestPath: dict[str, str] = Field(default_factory=dict)


class SeldonRequest(BaseModel):
    """A prediction request (a SeldonMessage with `data` or `jsonData`)."""

    model_config = ConfigDict(extra="allow")

    data: DefaultData | None = None
    jsonData: Any = None
    meta: dict[str, Any] | None = None


class SeldonResponse(BaseModel):
    """A prediction response: class probabilities, or the predicted value, per row."""

    data: DefaultData | None = None
    jsonData: Any = None
    meta: Meta


class FeedbackResponse(BaseModel):
    """The response a feedback is about: only its `meta.puid` (the request id) is read."""

    model_config = ConfigDict(extra="allow")

    meta: Meta


class Truth(BaseModel):
    """The outcomes: `data.ndarray` (`["bad", ...]` or `[["bad"], ...]`) or `data.tensor` (shape [n]
    or [n, 1]), one per row of the prediction: class names, or numbers for a regressor."""

    model_config = ConfigDict(extra="allow")

    data: DefaultData


class SeldonFeedback(BaseModel):
    """Seldon's Feedback: the request (optional, not read), the response, the truth and a reward."""

    model_config = ConfigDict(extra="allow")

    request: SeldonRequest | None = None
    response: FeedbackResponse
    truth: Truth
    reward: float | None = None


class Status(BaseModel):
    """Seldon's status block."""

    code: int
    info: str
    reason: str
    status: Literal["SUCCESS", "FAILURE"]


class SeldonError(BaseModel):
    """Seldon's error body."""

    status: Status


_REASONS = {
    400: "MICROSERVICE_BAD_DATA",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
}
_REASONS |= {415: "UNSUPPORTED_MEDIA_TYPE", 500: "MICROSERVICE_INTERNAL_ERROR", 503: "MICROSERVICE_NOT_READY"}


def error_body(status: int, message: str) -> bytes:
    """Seldon's FAILURE status body."""
    reason = _REASONS.get(status, "MICROSERVICE_BAD_DATA" if status < 500 else "MICROSERVICE_INTERNAL_ERROR")
    return orjson.dumps({"status": {"code": status, "info": message, "reason": reason, "status": "FAILURE"}})


def given_id(payload: Any) -> Any:
    """The request's own `meta.puid` (Seldon keeps a given one), or None; call after `decode`."""
    meta = payload.get("meta")
    return meta.get("puid") if isinstance(meta, dict) else None


def decode(payload: Any, model: ServedModel, settings: Settings) -> tuple[FeatureRows, Style]:
    """Validated rows and the style to answer in, from a parsed JSON body."""
    if not isinstance(payload, dict):
        raise RequestError(f"the body must be a JSON object (a SeldonMessage), not {type(payload).__name__}")
    try:
        req = SeldonRequest.model_validate(payload)
    except ValidationError as exc:
        raise RequestError(f"not a SeldonMessage: {_pydantic_message(exc)}") from None
    if req.data is not None and req.jsonData is not None:
        raise RequestError("send either data or jsonData, not both")
    if req.data is not None:
        data = req.data
        if data.ndarray is not None and data.tensor is not None:
            raise RequestError("data has both ndarray and tensor; send one")
        if data.ndarray is not None:
            return rows_from_values(data.ndarray, data.names, model, settings), "ndarray"
        if data.tensor is not None:
            return rows_from_values(_tensor_rows(data.tensor), data.names, model, settings), "tensor"
        other = sorted(set(payload["data"]) - {"names"}) if isinstance(payload.get("data"), dict) else []
        raise RequestError(
            "data needs an ndarray or a tensor"
            + (f" ({other} not supported: this model takes features, not {other[0]})" if other else "")
        )
    if req.jsonData is not None:
        return _json_data(req.jsonData, model, settings), "jsonData"
    for unsupported in ("strData", "binData"):
        if unsupported in payload:
            raise RequestError(f"{unsupported} is not supported: send data.ndarray, data.tensor or jsonData")
    raise RequestError("the SeldonMessage has no data: send data.ndarray, data.tensor or jsonData")


def _tensor_rows(tensor: Tensor) -> list[list[Any]]:
    shape, values = tensor.shape, tensor.values
    if len(shape) != 2 or any(d < 0 for d in shape):
        raise RequestError(f"data.tensor.shape must be [rows, features], got {shape}")
    rows, cols = shape
    if rows * cols != len(values):
        raise RequestError(f"data.tensor.shape {shape} needs {rows * cols} values, got {len(values)}")
    return [values[i * cols : (i + 1) * cols] for i in range(rows)]


def _json_data(doc: Any, model: ServedModel, settings: Settings) -> FeatureRows:
    names = [f.name for f in model.features]
    if isinstance(doc, dict) and "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list) or not all(isinstance(i, dict) for i in instances):
            raise RequestError("jsonData.instances must be a list of {feature: value} objects")
        check_row_count(len(instances), settings)
        for i, inst in enumerate(instances):
            if inst.keys() != set(names):
                _name_problem(f"jsonData.instances[{i}]", list(inst), names)
        return rows_from_values([[inst[n] for n in names] for inst in instances], None, model, settings)
    if isinstance(doc, dict):
        if doc.keys() != set(names):
            _name_problem("jsonData", list(doc), names)
        columns = [doc[n] for n in names]
        for n, col in zip(names, columns, strict=True):
            if not isinstance(col, list):
                raise RequestError(f"jsonData[{n!r}] must be a list of values (one per row)")
        check_row_count(len(columns[0]), settings)
        return rows_from_columns(columns, model, settings)
    raise RequestError(
        'jsonData must be {"instances": [{feature: value, ...}]} or {feature: [values, ...], ...}'
    )


def _name_problem(where: str, given: list[str], expected: list[str]) -> None:
    unknown = [n for n in given if n not in set(expected)]
    missing = [n for n in expected if n not in set(given)]
    parts = [f"unknown feature(s) {unknown}"] if unknown else []
    parts += [f"missing feature(s) {missing}"] if missing else []
    raise RequestError(f"{where}: {'; '.join(parts)}; the model expects {expected}")


def decode_feedback(payload: Any) -> tuple[str, list[Any], Any]:
    """(request id, truth values, reward) from a Seldon Feedback body; the values are checked
    against the prediction later (feedback.py)."""
    if not isinstance(payload, dict):
        raise RequestError(
            f"the body must be a JSON object (a Seldon Feedback), not {type(payload).__name__}"
        )
    response = payload.get("response")
    meta = response.get("meta") if isinstance(response, dict) else None
    puid = meta.get("puid") if isinstance(meta, dict) else None
    if not isinstance(puid, str):
        raise RequestError(
            "response.meta.puid is required: the puid (request id) of the prediction's response"
        )
    truth = payload.get("truth")
    data = truth.get("data") if isinstance(truth, dict) else None
    if not isinstance(data, dict):
        raise RequestError('truth must be a SeldonMessage with data: {"truth": {"data": {"ndarray": [...]}}}')
    names = data.get("names")
    if names is not None and (not isinstance(names, list) or len(names) > 1):
        raise RequestError("truth.data.names: at most one name (the truth is one value per row)")
    if "ndarray" in data and "tensor" in data:
        raise RequestError("truth.data has both ndarray and tensor; send one")
    if "ndarray" in data:
        values = data["ndarray"]
        if not isinstance(values, list):
            raise RequestError("truth.data.ndarray must be a list of one value per row")
    elif isinstance(tensor := data.get("tensor"), dict):
        shape, values = tensor.get("shape"), tensor.get("values")
        if not (
            isinstance(shape, list)
            and len(shape) in (1, 2)
            and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            and shape[1:] in ([], [1])
            and isinstance(values, list)
            and len(values) == shape[0]
        ):
            raise RequestError("truth.data.tensor must have shape [rows] or [rows, 1] and one value per row")
    else:
        raise RequestError("truth.data needs an ndarray or a tensor of one value per row")
    return puid, values, payload.get("reward")


def encode_feedback(request_id: str, rows: int, model: ServedModel) -> bytes:
    """The answer to an accepted feedback: a SeldonMessage naming the id, model and rows recorded."""
    meta = _meta(model)
    meta["puid"] = request_id
    meta["tags"]["feedback_rows"] = rows
    return orjson.dumps({"data": {"names": [], "ndarray": []}, "meta": meta})


def encode(out: np.ndarray, style: Style, model: ServedModel, request_id: str) -> bytes:
    """The response body for these predictions (n, len(model.outputs)), in the request's style;
    `meta.puid` is the request id."""
    meta = _meta(model)
    meta["puid"] = request_id
    names = model.outputs
    out = np.ascontiguousarray(out)  # orjson serialises C-ordered arrays only (a no-op for those)
    if style == "ndarray":
        body: dict[str, Any] = {"data": {"names": names, "ndarray": out}, "meta": meta}
    elif style == "tensor":
        body = {"data": {"names": names, "tensor": {"shape": out.shape, "values": out.ravel()}}}
        body["meta"] = meta
    else:
        preds = [dict(zip(names, row, strict=True)) for row in out.tolist()]
        body = {"jsonData": {"predictions": preds}, "meta": meta}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _meta(model: ServedModel) -> dict[str, Any]:
    return {
        "requestPath": {model.name: model.version},
        "tags": {"model_version": model.version, "model_hash": model.content_hash},
    }


def metadata(model: ServedModel) -> dict[str, Any]:
    """Seldon's /metadata document, plus the content hash and the task (binary, multiclass, regression)."""
    kinds = {"double": "FP64", "long": "INT64", "string": "BYTES"}
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "sklearn",
        "inputs": [
            {
                "messagetype": "ndarray",
                "schema": {"names": [f.name for f in model.features]},
                "shape": [len(model.features)],
            }
        ],
        "features": [{"name": f.name, "datatype": kinds[f.kind]} for f in model.features],
        "outputs": [
            {
                "messagetype": "ndarray",
                "schema": {"names": list(model.outputs)},
                "shape": [len(model.outputs)],
            }
        ],
        "custom": {
            "content_hash": model.content_hash,
            "fast_path": str(model.fast_path).lower(),
            "task": model.task,
        },
        "task": model.task,
        "content_hash": model.content_hash,
        "version": model.version,
    }


def _pydantic_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
