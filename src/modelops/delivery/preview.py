"""What the pull-request report asks of delivery: the release an env deploys now, the exact
gitops/ change merging would commit (a dry run), and the MLflow run that logged some content.

Review sits on the floor above delivery: the report compares with what is deployed and shows what
merging deploys, so it imports this module; nothing in delivery imports review.
"""

from __future__ import annotations

from typing import Any

from modelops.delivery import promote, registry
from modelops.errors import ModelopsError

DEPLOY_ENV = "staging"  # what merging a pull request deploys (promote.yml)


def champion_release(env: str, model: str) -> Any:
    """The release the env deploys now, or None before the first deployment.

    A model the env has no manifest for yet counts as not deployed (the deploy preview then says
    what is missing); an unknown env is an error.
    """
    try:
        path = promote.patch_file(env, model)
    except promote.PromoteError:
        if (promote.GITOPS / "envs" / env).is_dir():
            return None
        raise
    release, _ = promote.read_state(path)
    return None if release.version == "unpromoted" else release


def deploy_preview(model: str) -> tuple[str | None, str]:
    """(diff, message) of promoting the packaged model to staging, dry run: nothing is written."""
    try:
        result = promote.promote(model, DEPLOY_ENV, dry_run=True)
    except ModelopsError as exc:
        return None, f"No preview: {exc}"
    if not result.diff:
        return None, f"Merging changes nothing in gitops/: {result.message}."
    return result.diff, result.message


def find_run(model: str, content_hash: str) -> str | None:
    """The MLflow run that logged this model with this content hash, if any."""
    return registry.find_run(model, content_hash)
