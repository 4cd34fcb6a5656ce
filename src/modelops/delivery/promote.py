"""Promote: merge to deploy, revert to roll back.

`promote` publishes the packaged model (content-addressed, immutable), registers it in MLflow, edits
the env's patch file under gitops/ (round-trip YAML: only `value:` lines change), re-renders and
validates the env, commits with trailers, and only then moves the MLflow alias: git leads, the
registry mirrors it. When the env runs the model's batch job, the same commit writes main's release
into its batch patch too (`batch_patch`): batch scores with what main serves, so a canary or a shadow
leaves it alone. A promotion commit touches the model's patch file (and its batch patch) only, so
`git revert` of it restores them byte for byte, which is all a rollback is.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from modelops.changeset import write_all
from modelops.delivery import manifests, platforms
from modelops.delivery.batch_patch import batch_file, render_release
from modelops.delivery.gitflow import PUSH_ATTEMPTS, Entry, git, history, open_pr, preflight, push, rollback
from modelops.delivery.patches import (
    ANN,
    CONTAINER,
    GITOPS,
    Extra,
    Mode,
    PromoteError,
    Release,
    patch_file,
    plan,
    read_state,
    render_state,
    scalar,
)
from modelops.errors import ModelopsError

# The CLI, monitoring and tests use these through `modelops.delivery.promote`.
__all__ = [
    "ANN",
    "CONTAINER",
    "GITOPS",
    "PUSH_ATTEMPTS",
    "TRAILERS",
    "Entry",
    "Extra",
    "Mode",
    "PromoteError",
    "Release",
    "Result",
    "git",
    "history",
    "open_pr",
    "patch_file",
    "plan",
    "preflight",
    "promote",
    "push",
    "read_state",
    "render_state",
    "rollback",
    "status",
    "sync_alias",
]

TRAILERS = ("Model", "Version", "Env", "Hash", "Source-PR")


@dataclass(frozen=True)
class Result:
    """What a promotion did: the commit (None when nothing changed), and the diff it made."""

    commit: str | None
    diff: str
    release: Release
    message: str


def promote(
    model: str,
    env: str,
    *,
    mode: Mode = "full",
    canary: int | None = None,
    source_pr: str | None = None,
    store: str | None = None,
    dry_run: bool = False,
) -> Result:
    """Publish, register, edit, validate and commit one promotion; move the alias after the commit."""
    from modelops.config import load_params
    from modelops.delivery import publish, registry
    from modelops.pipeline.outputs import package_dir

    params = load_params()
    params.model(model)  # an unknown model fails here, naming the known ones
    layout = platforms.LAYOUTS[params.platform(env)]
    if mode == "shadow":
        platforms.refuse_shadow(env, layout)
    share = params.policy.canary_share
    if mode == "canary" and canary is not None and 0 < canary < 100 and not share.min <= canary <= share.max:
        raise PromoteError(
            f"--canary {canary}: the promotion policy allows a canary {share.min}% to {share.max}% of the "
            "traffic (params.yaml policy.canary_share; `modelops policy check` refuses it on a pull request)"
        )
    if not dry_run:
        preflight()
    path = patch_file(env, model)
    main, extras = read_state(path)
    new = None
    if mode in ("full", "canary", "shadow"):
        directory = package_dir(model)
        if not (directory / "MLmodel").exists():
            raise PromoteError(f"{directory}: no packaged model (run `dvc repro` or `dvc pull` first)")
        from modelops_serving.integrity import tree_hash

        digest = tree_hash(directory)
        if dry_run:
            known = [v for v in registry.versions(model) if v.content_hash == digest]
            version = f"v{known[0].version}" if known else f"v{len(registry.versions(model)) + 1}"
            uri = publish.artifact_uri(model, digest, store)
        else:
            uri = _publish_signed(directory, model, env, digest, store)
            head = git("rev-parse", "HEAD")
            number = registry.register(model, uri, digest, head, source_pr, None)
            version = f"v{number}"
        run = registry.find_run(model, digest) or "unknown"
        new = Release(version, digest, uri, git("rev-parse", "HEAD"), run, source_pr or "none")
    after_main, after_extras = plan(main, extras, mode, new, canary)
    edits = {path: render_state(path, model, after_main, after_extras)}
    batch = batch_file(env, model)
    if batch is not None:  # batch follows main: unchanged by a canary or a shadow
        edits[batch] = render_release(batch, after_main)
    changed = {p: text for p, text in edits.items() if text != p.read_text()}
    diff = "".join(_diff(p, text) for p, text in changed.items())
    released = new or after_main
    if not changed:
        return Result(
            None, "", released, f"{model} is already deployed to {env} as {released.version}: no commit"
        )
    _check_rendered(env, changed)
    if dry_run:
        where = " and ".join(map(str, changed))
        return Result(None, diff, released, f"dry run: merging would commit this change to {where}")
    write_all(changed)
    git("add", *map(str, changed))
    finished = "canary" if any(e.name == "canary" for e in extras) else "shadow"
    subject = {
        "full": f"promote({env}): {model} {released.version}",
        "canary": f"canary({env}): {model} {released.version} takes {canary}%",
        "shadow": f"shadow({env}): {model} {released.version} mirrors traffic",
        "finish": f"promote({env}): {model} {released.version} ({finished} finished)",
        "abort": f"abort({env}): {model} back to {after_main.version} only",
    }[mode]
    trailers = {
        "Model": model,
        "Version": released.version,
        "Env": env,
        "Hash": released.content_hash,
        "Source-PR": source_pr or released.source_pr,
    }
    body = "\n".join(f"{k}: {v}" for k, v in trailers.items())
    git("commit", "--quiet", "-m", subject, "-m", f"Mode: {mode}\n{body}")
    return Result(git("rev-parse", "HEAD"), diff, released, subject)


def _publish_signed(directory: Path, model: str, env: str, digest: str, store: str | None) -> str:
    """Publish (and sign, when a signer is configured); where the env requires signatures, refuse
    before publishing what cannot be signed as required, and after it what is not."""
    from modelops.delivery import publish, signing

    signer = signing.Signer.from_env()
    try:
        objects = manifests.render(env)
    except ModelopsError as exc:
        raise PromoteError(
            f"the promotion would break gitops/envs/{env}, which does not render as it is (so its "
            f"signing policy cannot be read); nothing written:\n{exc}"
        ) from None
    accepted = signing.policy_for(objects, model)
    if accepted is None:
        return publish.publish(directory, model, store, signer).uri
    try:
        signing.check_signer(signer, accepted, publish.artifact_uri(model, digest, store))
        uri = publish.publish(directory, model, store, signer).uri
        signing.check(uri, accepted)
    except signing.SigningError as exc:
        raise PromoteError(
            f"{model} to {env} REFUSED: gitops/envs/{env} requires signed models: {exc}. "
            "Nothing was registered in MLflow and gitops/ is unchanged"
        ) from None
    return uri


def _diff(path: Path, text: str) -> str:
    """The unified diff of one file's edit, as `git diff` names it."""
    before = path.read_text().splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, text.splitlines(keepends=True), f"a/{path}", f"b/{path}"))


def _check_rendered(env: str, edits: dict[Path, str]) -> None:
    """Render and validate the env with the edited files in a scratch copy: nothing is written on failure."""
    with manifests.edited_copy(edits, GITOPS, prefix="modelops-promote-") as scratch:
        try:
            manifests.validate(manifests.render(env, scratch), scratch, where=f"envs/{env}", env=env)
        except ModelopsError as exc:
            raise PromoteError(
                f"the promotion would break gitops/envs/{env}; nothing written:\n{exc}"
            ) from None


def sync_alias(model: str, env: str) -> str | None:
    """Point the MLflow alias `env` at what git serves there (git leads; this only follows)."""
    from modelops.delivery import registry

    main, _ = read_state(patch_file(env, model))
    if not main.version.startswith("v"):  # e.g. rolled back to unpromoted: no version is served
        registry.remove_alias(model, env)
        return None
    registry.set_alias(model, env, main.version.removeprefix("v"))
    return main.version


def status(models: list[str]) -> list[dict[str, str]]:
    """Per env and model: the version git serves, where the MLflow alias points, and whether they agree."""
    from modelops.delivery import registry

    rows = []
    for env in manifests.envs():
        for model in models:
            path = GITOPS / "envs" / env / f"{model}.yaml"
            if not path.exists():
                continue
            main, extras = read_state(path)
            alias = registry.alias_version(model, env)
            alias_v = f"v{alias}" if alias else "none"
            agree = alias_v == main.version or (main.version == "unpromoted" and alias is None)
            rows.append(
                {
                    "env": env,
                    "model": scalar(model),
                    "git": main.version + "".join(f" +{e.name} {e.release.version}" for e in extras),
                    "mlflow_alias": alias_v,
                    "agree": "yes" if agree else "NO",
                }
            )
    return rows
