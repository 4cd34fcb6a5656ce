"""`modelops batch MODEL (--env ENV | --local)`: score a file with the model an env serves, or with
the work tree's packaged model, through the serving image's batch engine, in this process.

The model is chosen exactly as online serving chooses it: `--env` renders `gitops/envs/ENV` (the
objects Argo CD would apply, validated like CI does) and takes the main predictor's `modelUri`,
version and expected hash; `--local` takes `models/MODEL/model` and checks its tree hash against
the model card. Either way the engine (modelops_serving.batch_run) verifies the hash again before
unpickling, as the CronJob's container does, and with `--env` also its signature, under the policy
the env's manifests state (`signing.local`: MODELOPS_LOCAL_SIGNER_KEY stands in for a keyless one).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops_serving.signature import Policy

from modelops.errors import ModelopsError

LOCAL_VERSION = "local"


class BatchFailed(ModelopsError):
    """The batch run did not finish, or there is no model to run it with; the exit code is the
    engine's (2 usage, 3 bad input, 4 model refused or not found, 5 storage)."""

    exit_code = 4

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


@dataclass(frozen=True)
class Chosen:
    """The model a run uses: what MODELOPS_MODEL_URI, _EXPECTED_HASH and _MODEL_VERSION say."""

    name: str
    uri: str
    content_hash: str
    version: str
    source: str  # where the choice came from, for the summary
    policy: Policy | None = None  # who must have signed it (None: nobody)


def from_env(model: str, env: str, root: Path | None = None) -> Chosen:
    """The main predictor of MODEL (its SeldonDeployment or InferenceService) in the rendered,
    validated gitops/envs/ENV."""
    from modelops.delivery import manifests
    from modelops.runtime.desired import deployment

    root = root or manifests.GITOPS
    objects = manifests.render(env, root)
    manifests.validate(objects, root, where=f"gitops/envs/{env}", env=env)
    kinds = manifests.MODEL_KINDS
    found = [o for o in objects if o.get("kind") in kinds and o["metadata"]["name"] == model]
    if not found:
        served = sorted(o["metadata"]["name"] for o in objects if o.get("kind") in kinds)
        serves = ", ".join(served) or "nothing"
        raise BatchFailed(
            f"gitops/envs/{env}: no SeldonDeployment {model!r} nor InferenceService (the env serves {serves})"
        )
    main = next(p for p in deployment(found[0], objects).predictors if p.name == manifests.MAIN)
    if main.placeholder:
        raise BatchFailed(
            f"gitops/envs/{env}: {model} is not promoted yet (modelUri {main.uri}); "
            f"`modelops promote {model} --env {env}` first, or score with the work tree's model (--local)"
        )
    source = f"gitops/envs/{env} (main predictor)"
    return Chosen(model, main.uri, main.content_hash, main.version, source, main.policy)


def from_work_tree(model: str) -> Chosen:
    """models/MODEL/model, if its tree hash is the one its model card states."""
    from modelops_serving.integrity import tree_hash

    from modelops.pipeline.outputs import card_file, card_hash, package_dir

    path, card = package_dir(model), card_file(model)
    if not path.is_dir() or not card.is_file():
        raise BatchFailed(f"{path}: no packaged model (run `dvc repro package@{model}`, or `dvc pull`)")
    stated = card_hash(card.read_text())
    if stated is None:
        raise BatchFailed(f"{card}: no 'Model content hash' line; re-run `dvc repro package@{model}`")
    actual = tree_hash(path)
    if actual != stated:
        raise BatchFailed(
            f"{path} hashes to {actual}, but {card} states {stated}: the work tree's model is not "
            f"the one its card describes (`dvc checkout {path}`, or `dvc repro package@{model}`)"
        )
    return Chosen(model, str(path.resolve()), actual, LOCAL_VERSION, f"{path} (hash as in {card.name})")


def engine_options(
    input_url: str,
    output_url: str,
    *,
    shard: str | None = None,
    shards: int | None = None,
    on_bad: str = "fail",
    rejects: str | None = None,
    metrics_file: str | None = None,
    chunk_rows: int | None = None,
) -> Any:
    """The engine's Options from the same flags `modelops-batch` takes (a bad one: exit code 2)."""
    from modelops_serving.batch import shard_of
    from modelops_serving.batch_io import UsageError
    from modelops_serving.batch_run import DEFAULT_CHUNK_ROWS, Options

    try:
        index, count = shard_of(shard, shards)
    except UsageError as exc:
        raise BatchFailed(str(exc), exc.exit_code) from None
    return Options(
        input_url, output_url, index, count, on_bad, rejects, metrics_file, chunk_rows or DEFAULT_CHUNK_ROWS
    )


def batch(chosen: Chosen, options: Any) -> dict[str, Any]:
    """Run the engine with `chosen` as its MODELOPS_* settings; the success manifest."""
    from modelops_serving.batch_io import BatchError
    from modelops_serving.batch_run import run
    from modelops_serving.settings import Settings

    policy = chosen.policy
    with tempfile.TemporaryDirectory(prefix="modelops-batch-signer-") as tmp:
        key = None
        if policy is not None and not policy.keyless:
            key = Path(tmp) / "signer.pub"
            key.write_bytes(policy.public_key or b"")
        settings = Settings(
            model_uri=chosen.uri,
            expected_hash=chosen.content_hash,
            model_name=chosen.name,
            model_version=chosen.version,
            # The policy as the env states it (nothing from this shell's MODELOPS_* variables); the
            # signature beside modelUri, which the engine reads itself.
            signer_public_key=key,
            signer_identity=policy.identity if policy else None,
            signer_issuer=policy.issuer if policy else None,
            signature_store=None,
        )
        try:
            return run(options, settings)
        except BatchError as exc:
            raise BatchFailed(str(exc), exc.exit_code) from None


def summary(chosen: Chosen, manifest: dict[str, Any]) -> str:
    """What a person reads after a run: the model, the counts and where everything went."""
    lines = [
        f"{manifest['rows']:,} rows of {manifest['input']['url']} scored by {chosen.name} {chosen.version} "
        f"({chosen.content_hash[:12]}, from {chosen.source}) in {manifest['seconds']:.1f} s",
        f"scores: {manifest['output']}",
    ]
    if chosen.policy is not None:
        lines.append(f"signature: verified before loading ({chosen.policy.describe()})")
    if manifest["rejects_file"]:
        lines.append(f"rejects: {manifest['rejects']:,} rows in {manifest['rejects_file']}")
    lines.append(f"manifest: {manifest['output']}.success.json")
    return "\n".join(lines)
