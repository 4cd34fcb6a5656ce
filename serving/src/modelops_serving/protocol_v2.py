"""Open Inference Protocol (V2: MLServer, KServe, Seldon Core 2): models and codecs.

Accepted inputs: one tensor per feature (shape [n] or [n, 1]; BYTES for string features, any numeric
datatype for numbers), or a single 2-D tensor of shape [n, features] in signature order (its
`parameters.names` may reorder the columns). The output is one FP64 tensor: `probabilities`
[n, classes] for a classifier (binary or multiclass), `predictions` [n, 1] for a regressor; its
`parameters.names` are the class names, or the regression target's name. The response's `id` is
the request id: the request's own `id` if it has one, see ids.py. Feedback
(`/v2/models/{name}/feedback`, this server's own extension) is `{"id", "truth": [...], "reward"?}`.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from modelops_serving.model import Layout, ServedModel
from modelops_serving.settings import Settings
from modelops_serving.validation import (
    FeatureRows,
    RequestError,
    check_row_count,
    rows_from_columns,
    rows_from_values,
)

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
_DATATYPES = frozenset(get_args(Datatype))
_NUMERIC_TYPES = _DATATYPES - {"BOOL", "BYTES"}


class RequestInput(BaseModel):
    """One input tensor."""

    model_config = ConfigDict(extra="allow")

    name: str
    shape: list[int]
    datatype: Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestOutput(BaseModel):
    """A requested output (the model's one: `probabilities` or `predictions`)."""

    model_config = ConfigDict(extra="allow")

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """POST /v2/models/{name}/infer body."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    """One output tensor."""

    name: str
    shape: list[int]
    datatype: Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferenceResponse(BaseModel):
    """The infer response."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    """An input or output of the model metadata."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None


class ModelMetadata(BaseModel):
    """GET /v2/models/{name}."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = None


class FeedbackRequest(BaseModel):
    """POST /v2/models/{name}/feedback body: the id of a prediction's response and one truth per row
    (class names, or numbers for a regressor; `[v, ...]` or `[[v], ...]`), and an optional reward."""

    model_config = ConfigDict(extra="allow")

    id: str
    truth: list[Any]
    reward: float | None = None


class FeedbackResponse(BaseModel):
    """An accepted feedback: the model and the rows whose outcomes were recorded."""

    model_name: str
    model_version: str
    id: str
    rows: int


class ErrorResponse(BaseModel):
    """Every V2 error."""

    error: str


def error_body(status: int, message: str) -> bytes:
    """The V2 error body."""
    return orjson.dumps({"error": message})


def decode(payload: Any, model: ServedModel, settings: Settings) -> tuple[FeatureRows, str | None]:
    """Validated rows and the request id, from a parsed JSON body."""
    if not isinstance(payload, dict):
        raise RequestError(
            f"the body must be a JSON object (an inference request), not {type(payload).__name__}"
        )
    columns = _common_form(payload, model, settings)
    if columns is not None:
        return rows_from_columns(columns, model, settings), payload.get("id")
    return checked_decode(payload, model, settings)


def checked_decode(
    payload: dict[str, Any], model: ServedModel, settings: Settings
) -> tuple[FeatureRows, str | None]:
    """`decode` of anything `_common_form` leaves: pydantic's coercions, then the checks by name."""
    req = _validated(payload)
    output = output_name(model)
    outputs = req.get("outputs")
    if outputs and any(o["name"] != output for o in outputs):
        raise RequestError(f"unknown output(s) {[o['name'] for o in outputs]}; the model has {output!r}")
    inputs = req["inputs"]
    if len(inputs) == 1 and inputs[0]["name"] not in model.layout.known:
        return _matrix(inputs[0], model, settings), req.get("id")
    return _per_feature(inputs, model, settings), req.get("id")


def _common_form(payload: dict[str, Any], model: ServedModel, settings: Settings) -> list[list[Any]] | None:
    """The columns, in signature order, of the form nearly every client sends (one flat [rows] or
    [rows, 1] tensor per feature, all of one shape, each of its feature's datatype, every field of
    its schema type, no `outputs`); None for anything else, which `_validated` and `_per_feature`
    then accept or refuse by name. Pydantic over 13 input objects cost ~15 µs, a tenth of a
    single-row request; this ~4 µs when the inputs come in signature order, as clients send them."""
    inputs, rid, parameters = payload.get("inputs"), payload.get("id"), payload.get("parameters")
    layout = model.layout
    if (
        type(inputs) is not list
        or len(inputs) != len(layout.names)
        or "outputs" in payload
        or not (rid is None or type(rid) is str)
        or not (parameters is None or type(parameters) is dict)
        or type(first := inputs[0]) is not dict
    ):
        return None
    shape = first.get("shape")
    if (n := flat_rows(shape, settings)) is None:
        return None
    columns = _columns_as_given(inputs, layout, shape, n)
    if columns is None and (ordered := _in_signature_order(inputs, layout)) is not None:
        columns = _columns_as_given(ordered, layout, shape, n)
    return columns


def flat_rows(shape: Any, settings: Settings) -> int | None:
    """The row count of a flat tensor's shape, `[rows]` or `[rows, 1]` with 0 < rows <= the limit;
    None for any other shape (which the checked path accepts or words)."""
    if (
        type(shape) is not list
        or not 1 <= len(shape) <= 2
        or type(n := shape[0]) is not int
        or (len(shape) == 2 and (type(shape[1]) is not int or shape[1] != 1))
        or not 0 < n <= settings.max_rows_per_request
    ):
        return None
    return n


def _columns_as_given(inputs: list[Any], layout: Layout, shape: list[int], n: int) -> list[list[Any]] | None:
    """Each input's data if the inputs are the features in signature order, each of the first's
    shape (compared by value: `[1.0]` is `[1]`, as pydantic's lax ints have it) and datatype."""
    columns = []
    for inp, name, want in zip(inputs, layout.names, layout.datatypes, strict=True):
        if type(inp) is not dict:
            return None
        get = inp.get
        datatype, data, extra = get("datatype"), get("data"), get("parameters")
        if (
            get("name") != name
            or get("shape") != shape
            or type(data) is not list
            or len(data) != n
            or type(data[0]) is list  # nested [[v], ...]: `_per_feature` flattens it
            or not (extra is None or type(extra) is dict)
            or not datatype_fits(datatype, want)
        ):
            return None
        columns.append(data)
    return columns


def datatype_fits(datatype: Any, want: str) -> bool:
    """May a tensor of `datatype` carry a feature whose datatype is `want`? A number may come as
    any numeric type (FP64, INT32, ...); a string only as BYTES."""
    return datatype == want or (want != "BYTES" and type(datatype) is str and datatype in _NUMERIC_TYPES)


def _in_signature_order(inputs: list[Any], layout: Layout) -> list[dict[str, Any]] | None:
    """The inputs reordered by name, if they are the features each once; else None."""
    by_name: dict[str, dict[str, Any]] = {}
    for inp in inputs:
        if type(inp) is not dict or type(name := inp.get("name")) is not str:
            return None
        by_name[name] = inp
    if by_name.keys() != layout.known:  # also: a duplicate (there are as many inputs as features)
        return None
    return [by_name[name] for name in layout.names]


def _validated(payload: dict[str, Any]) -> dict[str, Any]:
    """The body through the pydantic model (its coercions, or a 400 naming the field), as plain data."""
    try:
        return InferenceRequest.model_validate(payload).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(f"not an inference request: {where}: {first['msg']}") from None


def _flat(inp: dict[str, Any]) -> list[Any]:
    data = inp["data"]
    if data and isinstance(data[0], list):  # nested (row-major) data is allowed by the protocol
        flat: list[Any] = []
        for part in data:
            if not isinstance(part, list):
                raise RequestError(f"input {inp['name']!r}: data mixes nested lists and values")
            flat.extend(v for sub in part for v in (sub if isinstance(sub, list) else [sub]))
        return flat
    return data


def _matrix(inp: dict[str, Any], model: ServedModel, settings: Settings) -> FeatureRows:
    width, name, shape = len(model.features), inp["name"], inp["shape"]
    if len(shape) != 2 or shape[1] != width or shape[0] < 0:
        raise RequestError(
            f"input {name!r} has shape {shape}: send one 2-D tensor of shape [rows, {width}] "
            f"or one tensor per feature named {[f.name for f in model.features]}"
        )
    n = shape[0]
    check_row_count(n, settings)
    data = _flat(inp)
    if len(data) != n * width:
        raise RequestError(f"input {name!r}: shape {shape} needs {n * width} values, got {len(data)}")
    names = (inp.get("parameters") or {}).get("names")
    rows = [data[i * width : (i + 1) * width] for i in range(n)]
    return rows_from_values(rows, names, model, settings)


def _per_feature(inputs: list[dict[str, Any]], model: ServedModel, settings: Settings) -> FeatureRows:
    expected, known, numeric = model.layout.names, model.layout.known, model.layout.numeric
    by_name = {inp["name"]: inp for inp in inputs}
    if len(by_name) != len(inputs):
        seen: set[str] = set()
        twice = next(i["name"] for i in inputs if i["name"] in seen or seen.add(i["name"]))
        raise RequestError(f"input {twice!r} appears twice")
    if by_name.keys() != known:
        unknown = [n for n in by_name if n not in known]
        missing = [n for n in expected if n not in by_name]
        parts = [f"unknown input(s) {unknown}"] if unknown else []
        parts += [f"missing input(s) {missing}"] if missing else []
        raise RequestError(f"{'; '.join(parts)}; the model expects one tensor per feature: {list(expected)}")
    columns = []
    n = None
    for name, is_number in zip(expected, numeric, strict=True):
        inp = by_name[name]
        datatype, shape = inp["datatype"], inp["shape"]
        if is_number and datatype not in _NUMERIC_TYPES:
            raise RequestError(f"input {name!r} is {datatype}; a numeric feature needs FP64 (or INT*)")
        if not is_number and datatype != "BYTES":
            raise RequestError(f"input {name!r} is {datatype}; a string feature needs BYTES")
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 0:
            raise RequestError(f"input {name!r} has shape {shape}; expected [rows] or [rows, 1]")
        rows = shape[0]
        if n is None:
            n = rows
            check_row_count(n, settings)
        elif rows != n:
            raise RequestError(f"input {name!r} has {rows} rows; the first input has {n}")
        data = inp["data"]
        if data and type(data[0]) is list:
            data = _flat(inp)
        if len(data) != rows:
            raise RequestError(f"input {name!r}: shape {shape} needs {rows} values, got {len(data)}")
        columns.append(data)
    return rows_from_columns(columns, model, settings)


def decode_feedback(payload: Any) -> tuple[str, Any, Any]:
    """(request id, truth, reward) from a feedback body; the truth is checked against the prediction
    later (feedback.py)."""
    if not isinstance(payload, dict):
        raise RequestError(f"the body must be a JSON object (a feedback), not {type(payload).__name__}")
    request_id = payload.get("id")
    if not isinstance(request_id, str):
        raise RequestError("id is required: the id of the prediction's response (a string)")
    if "truth" not in payload:
        raise RequestError("truth is required: one value per row of the prediction")
    return request_id, payload["truth"], payload.get("reward")


def encode_feedback(request_id: str, rows: int, model: ServedModel) -> bytes:
    """The answer to an accepted feedback."""
    body = {"model_name": model.name, "model_version": model.version, "id": request_id, "rows": rows}
    return orjson.dumps(body)


def output_name(model: ServedModel) -> str:
    """The one output tensor's name: class probabilities, or regression predictions."""
    return "probabilities" if model.is_classifier else "predictions"


def encode(out: np.ndarray, model: ServedModel, request_id: str) -> bytes:
    """The inference response body for predictions of shape (n, len(model.outputs))."""
    body = {
        "model_name": model.name,
        "model_version": model.version,
        "id": request_id,
        "parameters": {"content_hash": model.content_hash},
        "outputs": [
            {
                "name": output_name(model),
                "shape": out.shape,
                "datatype": "FP64",
                "data": out.ravel(),
                "parameters": {"names": model.outputs},
            }
        ],
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def metadata(model: ServedModel) -> dict[str, Any]:
    """The model metadata document (`parameters.task`: binary, multiclass or regression)."""
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "sklearn",
        "inputs": [
            {"name": name, "datatype": datatype, "shape": [-1]}
            for name, datatype in zip(model.layout.names, model.layout.datatypes, strict=True)
        ],
        "outputs": [
            {
                "name": output_name(model),
                "datatype": "FP64",
                "shape": [-1, len(model.outputs)],
                "parameters": {"names": list(model.outputs)},
            }
        ],
        "parameters": {"content_hash": model.content_hash, "version": model.version, "task": model.task},
    }
