"""The common V2 inference request decoded straight from its bytes into typed structs (msgspec).

Nearly every client sends one flat tensor per feature, in signature order. For that body,
`orjson.loads` built a dict per input and a list per shape (~100 objects for 13 features), the
checks walked them, and freeing them cost again: ~9 µs of a single-row request in process, about
twice that under load, the most V2 paid beyond v1. msgspec checks the structure while it decodes,
skips unknown fields without building them, and makes untracked structs: ~6 µs, checks included
(docs/benchmarks.md).

This is only a shortcut: `decode` gives the rows and id for a body it fully recognises, exactly as
`protocol_v2.decode` would from the same body, or None, and then the body goes the usual way
(orjson, then `protocol_v2.decode`), which words every error of form. The one error it raises is a
bad value (a string for a number, ...): the same RequestError, from the same check, that the usual
way raises for that body.
"""

from __future__ import annotations

from typing import Any

import msgspec

from modelops_serving.model import ServedModel
from modelops_serving.protocol_v2 import datatype_fits, flat_rows
from modelops_serving.settings import Settings
from modelops_serving.validation import FeatureRows, rows_from_columns

__all__ = ["decode"]


class _Input(msgspec.Struct, gc=False):
    name: str
    shape: list[int]
    datatype: str
    data: list[float | int | str | None]  # a nested [[v], ...] is not this: the usual way flattens it
    parameters: dict[str, Any] | None = None


class _Request(msgspec.Struct, gc=False):
    inputs: list[_Input]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: Any = msgspec.UNSET  # present at all (even null): the usual way checks it


_decoder = msgspec.json.Decoder(_Request)


def decode(body: bytes, model: ServedModel, settings: Settings) -> tuple[FeatureRows, str | None] | None:
    """Validated rows and the request id of a common-form V2 body, or None for any other body."""
    try:
        request = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    layout = model.layout
    inputs = request.inputs
    if request.outputs is not msgspec.UNSET or len(inputs) != len(layout.names):
        return None
    shape = inputs[0].shape  # every input has the first's shape
    if (n := flat_rows(shape, settings)) is None:
        return None
    columns = []
    for inp, name, want in zip(inputs, layout.names, layout.datatypes, strict=True):
        data = inp.data
        if inp.name != name or inp.shape != shape or len(data) != n or not datatype_fits(inp.datatype, want):
            return None
        columns.append(data)
    return rows_from_columns(columns, model, settings), request.id
