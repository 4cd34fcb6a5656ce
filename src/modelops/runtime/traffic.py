"""Traffic with outcomes for the demo: held-out rows through an env's endpoint, truths fed back.

Each request is one row of the model's test split (drawn with replacement, seeded), sent as Seldon
v1 through the local runtime's router, which splits it between main and canary; the truth of the
row then goes to the feedback route with the request id the answer carried (`meta.puid`). This is
what a team's own ground-truth pipeline would do later, in bulk.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from modelops.config import load_params
from modelops.errors import ModelopsError

PREDICT = "/seldon/modelops-{env}/{model}/api/v1.0/predictions"
FEEDBACK = "/seldon/modelops-{env}/{model}/api/v1.0/feedback"


class TrafficError(ModelopsError):
    """A request or a feedback was refused: the message has the status and the server's answer."""

    exit_code = 16


def rows(work: Path, model: str) -> tuple[list[str], list[list[Any]], list[Any]]:
    """The model's test split as v1 rows (missing values as null) and each row's truth as the
    server names it (a class name, or the value)."""
    import pandas as pd

    from modelops.pipeline.prepare import read_split

    ds = load_params(work / "params.yaml").dataset_of(model)
    frame = read_split(work / ds.test_file)
    features = list(ds.features)
    values = [[None if pd.isna(v) else v for v in row] for row in frame[features].astype(object).to_numpy()]
    cast = float if ds.task == "regression" else str
    truth = [cast(t) for t in frame[ds.target].tolist()]
    return features, values, truth


async def _send(
    endpoint: str,
    env: str,
    model: str,
    names: list[str],
    values: list,
    truth: list,
    picks: np.ndarray,
    headers: dict[str, str],
) -> Counter[str]:
    import aiohttp  # ~15x less CPU a request than httpx's pool at 16 in flight (docs/runtime.md)

    by_version: Counter[str] = Counter()
    limit = asyncio.Semaphore(16)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(endpoint, timeout=timeout, headers=headers) as client:

        async def post(path: str, body: dict) -> tuple[int, Any, str]:
            async with client.post(path, json=body) as answer:
                text = await answer.text()
                return answer.status, answer.headers, text

        async def one(i: int) -> None:
            async with limit:
                body = {"data": {"names": names, "ndarray": [values[i]]}}
                status, answered, text = await post(PREDICT.format(env=env, model=model), body)
                if status != 200:
                    raise TrafficError(f"prediction: {status} {text}")
                puid = json.loads(text)["meta"]["puid"]
                by_version[answered.get("x-model-version", "?")] += 1
                feedback = {"response": {"meta": {"puid": puid}}, "truth": {"data": {"ndarray": [truth[i]]}}}
                status, _, text = await post(FEEDBACK.format(env=env, model=model), feedback)
                if status != 200:
                    raise TrafficError(f"feedback for {puid}: {status} {text}")

        await asyncio.gather(*(one(int(i)) for i in picks))
    return by_version


def send(
    work: Path,
    endpoint: str,
    env: str,
    model: str,
    requests: int,
    seed: int = 0,
    headers: dict[str, str] | None = None,
) -> Counter[str]:
    """`requests` single-row predictions with their outcomes fed back; how many each version answered.
    `headers`: e.g. the runtime's Authorization (sync.client_headers)."""
    names, values, truth = rows(work, model)
    picks = np.random.default_rng(seed).integers(0, len(values), requests)
    return asyncio.run(_send(endpoint, env, model, names, values, truth, picks, headers or {}))
