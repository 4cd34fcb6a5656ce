"""Traffic with outcomes for the demo: held-out rows through an env's endpoint, truths fed back.

Each request is one row of the model's test split (drawn with replacement, seeded), sent as Seldon
v1 through the local runtime's router, which splits it between main and canary; the truth of the
row then goes to the feedback route with the request id the answer carried (`meta.puid`). This is
what a team's own ground-truth pipeline would do later, in bulk.
"""

from __future__ import annotations

import asyncio
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
    import httpx

    by_version: Counter[str] = Counter()
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=endpoint, timeout=30, headers=headers) as client:

        async def one(i: int) -> None:
            async with limit:
                body = {"data": {"names": names, "ndarray": [values[i]]}}
                answer = await client.post(PREDICT.format(env=env, model=model), json=body)
                if answer.status_code != 200:
                    raise TrafficError(f"prediction: {answer.status_code} {answer.text}")
                puid = answer.json()["meta"]["puid"]
                by_version[answer.headers.get("x-model-version", "?")] += 1
                feedback = {"response": {"meta": {"puid": puid}}, "truth": {"data": {"ndarray": [truth[i]]}}}
                fed = await client.post(FEEDBACK.format(env=env, model=model), json=feedback)
                if fed.status_code != 200:
                    raise TrafficError(f"feedback for {puid}: {fed.status_code} {fed.text}")

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
