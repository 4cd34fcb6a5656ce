"""The MLflow Model Registry: one version per published content hash, and one alias per environment.

Contract: the registry mirrors git, it never leads it. What runs in an environment is decided by
the manifest under ``gitops/envs/<env>`` alone; the alias ``<env>`` on a registered model is a
convenience for people and tools that read MLflow. So ``promote`` calls, in this order:

1. ``publish`` (the artifact exists and is verified),
2. ``register`` (a version whose source is the published URI; safe before the commit, since a
   version that no manifest names changes nothing that runs),
3. the manifest commit (and push),
4. ``set_alias`` -- only after git has the manifest. If step 3 fails the alias has not moved; if
   step 4 fails, git is still right and re-running promote (which makes no new commit) or
   ``modelops status`` finds and repairs the stale alias. Never move an alias to a version that
   no committed manifest names.

Versions are tagged ``content_hash``, ``git_commit`` and ``source_pr``. Registering a hash that
already has a version returns that version (the first registration's tags are kept): promoting the
same content to production after staging reuses the staging version. The tracking URI is
``modelops.pipeline.tracking.tracking_uri()``; the registry lives in the same store.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from modelops.config import MODEL_NAME
from modelops.errors import RegistryError
from modelops.pipeline.tracking import store_uri, tracking_uri

ENVS = ("staging", "production")
TAG_HASH, TAG_COMMIT, TAG_PR = "content_hash", "git_commit", "source_pr"
RUN_TAG_MODEL, RUN_TAG_HASH = "model", "model.content_hash"  # what tracking.log_run writes
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Version:
    """One registered model version, as promote and status read it."""

    model: str
    version: str
    source: str
    run_id: str | None
    content_hash: str
    git_commit: str
    source_pr: str | None
    aliases: tuple[str, ...]


def register(
    model: str,
    uri: str,
    content_hash: str,
    git_commit: str,
    source_pr: str | None = None,
    run_id: str | None = None,
) -> str:
    """Register the published artifact `uri` as a version of `model` (or reuse its hash's version)."""
    _check_model(model)
    _check_hash(model, content_hash)
    client = _client()
    with _mlflow_errors(f"registering {model} ({content_hash[:12]})"):
        if existing := _version_with_hash(client, model, content_hash):
            return existing.version
        run_id = _check_run(client, model, content_hash, run_id) if run_id else find_run(model, content_hash)
        _ensure_registered_model(client, model)
        tags = {TAG_HASH: content_hash, TAG_COMMIT: git_commit} | ({TAG_PR: source_pr} if source_pr else {})
        created = client.create_model_version(model, uri, run_id=run_id, tags=tags)
    return str(created.version)


def find_run(model: str, content_hash: str) -> str | None:
    """The newest finished MLflow run that logged this model with this content hash, if any.

    None when the tracking store never saw it (e.g. a CI runner whose store does not hold the PR's
    runs): the version is then registered without a run link rather than not at all.
    """
    _check_model(model)
    _check_hash(model, content_hash)
    client = _client()
    with _mlflow_errors(f"searching the runs of {model}"):
        ids = [e.experiment_id for e in _all_pages(client.search_experiments)]
        if not ids:
            return None
        runs = client.search_runs(
            ids,
            filter_string=(
                f"tags.{RUN_TAG_MODEL} = '{model}' and tags.`{RUN_TAG_HASH}` = '{content_hash}' "
                "and attributes.status = 'FINISHED'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    return runs[0].info.run_id if runs else None


def set_alias(model: str, env: str, version: str) -> str | None:
    """Point alias `env` at `version` (only after git has the manifest); return the previous version."""
    _check_model(model)
    _check_env(env)
    client = _client()
    with _mlflow_errors(f"moving alias {env!r} of {model} to version {version}"):
        _get_version(client, model, version)
        previous = alias_version(model, env)
        if previous != version:
            client.set_registered_model_alias(model, env, version)
    return previous


def remove_alias(model: str, env: str) -> str | None:
    """Drop alias `env` (git serves no version of `model` there any more); return where it pointed."""
    _check_model(model)
    _check_env(env)
    previous = alias_version(model, env)
    if previous is not None:
        with _mlflow_errors(f"removing alias {env!r} of {model}"):
            _client().delete_registered_model_alias(model, env)
    return previous


def alias_version(model: str, env: str) -> str | None:
    """The version alias `env` points at, or None (no alias, or no such registered model)."""
    from mlflow.exceptions import MlflowException

    _check_model(model)
    _check_env(env)
    client = _client()
    with _mlflow_errors(f"reading alias {env!r} of {model}"):
        try:
            return str(client.get_model_version_by_alias(model, env).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise


def versions(model: str) -> list[Version]:
    """Every registered version of `model`, oldest first (empty if it was never registered)."""
    _check_model(model)
    client = _client()
    with _mlflow_errors(f"listing the versions of {model}"):
        found = _all_pages(lambda **kw: client.search_model_versions(f"name = '{model}'", **kw))
        if not found:
            return []
        # Searches leave ModelVersion.aliases empty; the registered model holds the alias map.
        by_version: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(model).aliases.items():
            by_version.setdefault(str(version), []).append(alias)
    listed = (_version(v, by_version.get(str(v.version), ())) for v in found)
    return sorted(listed, key=lambda v: int(v.version))


def _client() -> Any:
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = store_uri()
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def _mlflow_errors(doing: str) -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise RegistryError(f"{doing} failed ({tracking_uri()}): {exc.message}") from None


def _check_model(model: str) -> None:
    # Model names are interpolated into search filters: the pattern keeps quotes out.
    if not MODEL_NAME.match(model):
        raise RegistryError(f"model name {model!r} must match {MODEL_NAME.pattern}")


def _check_hash(model: str, content_hash: str) -> None:
    if not SHA256.match(content_hash):
        raise RegistryError(f"{model}: content hash {content_hash!r} is not a sha256 hex digest")


def _check_env(env: str) -> None:
    """An alias names an env: the two the loop promotes through, or any env gitops/envs/ holds
    (an example env such as staging-kserve)."""
    from modelops.delivery import manifests

    known = list(dict.fromkeys([*ENVS, *manifests.envs()]))
    if env not in known:
        raise RegistryError(f"unknown env {env!r} (known: {', '.join(known)})")


def _all_pages(search: Any) -> list[Any]:
    items, token = [], None
    while True:
        page = search(page_token=token) if token else search()
        items.extend(page)
        token = page.token
        if not token:
            return items


def _version(v: Any, aliases: Any = ()) -> Version:
    return Version(
        model=v.name,
        version=str(v.version),
        source=v.source,
        run_id=v.run_id or None,
        content_hash=v.tags.get(TAG_HASH, ""),
        git_commit=v.tags.get(TAG_COMMIT, ""),
        source_pr=v.tags.get(TAG_PR),
        aliases=tuple(sorted(aliases)),
    )


def _version_with_hash(client: Any, model: str, content_hash: str) -> Version | None:
    found = client.search_model_versions(f"name = '{model}' and tag.{TAG_HASH} = '{content_hash}'")
    return min((_version(v) for v in found), key=lambda v: int(v.version), default=None)


def _check_run(client: Any, model: str, content_hash: str, run_id: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RegistryError(f"{model}: no MLflow run {run_id!r} in {tracking_uri()}") from None
    if run.data.tags.get(RUN_TAG_MODEL, model) != model:
        raise RegistryError(
            f"{model}: run {run_id} logged model {run.data.tags[RUN_TAG_MODEL]!r}, not {model!r}"
        )
    logged = run.data.tags.get(RUN_TAG_HASH)
    if logged is not None and logged != content_hash:
        raise RegistryError(
            f"{model}: run {run_id} logged content hash {logged}, not {content_hash}; it did not produce "
            "this model"
        )
    return run_id


def _ensure_registered_model(client: Any, model: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # registered before, or by a racing promote
            raise


def _get_version(client: Any, model: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(model, version)
    except MlflowException:
        raise RegistryError(f"{model}: no registered version {version!r}") from None
