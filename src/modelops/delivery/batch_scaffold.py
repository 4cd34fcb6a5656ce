"""`modelops new batch`: opt an env into a model's batch job, for review.

Writes the model's base Component (gitops/base/batch/<model>/, once per model), the env's patch
gitops/envs/<env>/batch/<model>.yaml with the release the env's main predictor serves now (so the
two agree from the first commit; unpromoted means suspended), and the two entries of the env's
kustomization. Planned in memory, rendered and validated on a scratch copy first: all or none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from modelops.changeset import Content, ScaffoldError, dump, round_trip, write_all
from modelops.delivery import batch_template, manifests, patches, platforms, scaffold

CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?-]+$")
ON_BAD = ("fail", "reject")


def component_dir(model: str, root: Path = manifests.GITOPS) -> Path:
    """Where a model's batch Component lives (shared by every env that opts in)."""
    return root / "base" / "batch" / model


def env_patch_file(env: str, model: str, root: Path = manifests.GITOPS) -> Path:
    """The env's batch patch of a model (it exists only when the env opts in)."""
    return root / "envs" / env / "batch" / f"{model}.yaml"


def check_schedule(schedule: str) -> None:
    """Five cron fields or a macro; Kubernetes would only refuse it when the CronJob is applied."""
    fields = schedule.split()
    if schedule in CRON_MACROS or (len(fields) == 5 and all(CRON_FIELD.match(f) for f in fields)):
        return
    raise ScaffoldError(
        f"--schedule {schedule!r}: expected five cron fields (minute hour day month weekday, "
        f"e.g. '0 2 * * *') or one of {', '.join(sorted(CRON_MACROS))}"
    )


def _env_kustomization(text: str, model: str, source: Path) -> str:
    """The env's kustomization with the model's Component and batch patch listed."""
    rt = round_trip()
    data = rt.load(text)
    component = f"../../base/batch/{model}"
    if "components" not in data:
        # Right after `resources:`, which nothing appends to: ruamel keeps a comment before a key as
        # the trailing comment of the list above it, and `new model` appends to `patches:`.
        keys = list(data)
        data.insert(keys.index("resources") + 1 if "resources" in keys else len(keys), "components", [])
        data.yaml_set_comment_before_after_key(
            "components",
            before="The batch jobs this env runs: a model's Component each, patched by batch/<model>.yaml.",
        )
    components = data["components"]
    patch_list = data.setdefault("patches", [])
    if component in components or any(
        isinstance(p, Mapping) and p.get("path") == f"batch/{model}.yaml" for p in patch_list
    ):
        raise ScaffoldError(f"{source}: already lists the batch job of {model}")
    # Beside the other batch Components, before any other (gitops/components/signed-*), since
    # a Component patches only the resources listed before it.
    batch = [i for i, c in enumerate(components) if str(c).startswith("../../base/batch/")]
    components.insert(batch[-1] + 1 if batch else 0, component)
    patch_list.append({"path": f"batch/{model}.yaml"})
    return dump(rt, data)


def plan_batch(
    model: str,
    env: str,
    *,
    input_url: str,
    output_url: str,
    schedule: str = "0 2 * * *",
    shards: int = 1,
    on_bad: str | None = None,
    root: Path = Path(),
) -> dict[Path, Content]:
    """Every file `new batch` writes, checked; raises ScaffoldError before anything is written."""
    gitops = root / manifests.GITOPS
    scaffold.check_name(model)
    try:
        seldon_patch = patches.patch_file(env, model, gitops)
    except patches.PromoteError as exc:
        raise ScaffoldError(f"{exc}: add the model first (`modelops new model`)") from None
    if platforms.of_ops(yaml.safe_load(seldon_patch.read_text()) or []) is not platforms.SELDON:
        raise ScaffoldError(
            f"{seldon_patch}: {env} runs on KServe; batch jobs are written for Seldon envs only so far "
            "(the batch component copies its image from the SeldonDeployment); nothing written"
        )
    check_schedule(schedule)
    if shards < 1:
        raise ScaffoldError(f"--shards {shards}: at least 1")
    if shards > 1 and "{shard}" not in output_url:
        raise ScaffoldError(
            f"--output {output_url!r}: with {shards} shards each writes its own file: put {{shard}} in it"
        )
    if on_bad is not None and on_bad not in ON_BAD:
        raise ScaffoldError(f"--on-bad {on_bad!r}: one of {', '.join(ON_BAD)}")
    target = env_patch_file(env, model, gitops)
    if target.exists():
        raise ScaffoldError(f"{target} exists: {env} already runs the batch job of {model}")
    main, _ = patches.read_state(seldon_patch)
    args = ["--input", input_url, "--output", output_url, "--shards", str(shards)]
    args += ["--on-bad", on_bad] if on_bad else []
    changes: dict[Path, Content] = {
        target: batch_template.env_patch(
            model,
            env,
            schedule=schedule,
            args=args,
            shards=shards,
            uri=main.uri,
            version=main.version,
            content_hash=main.content_hash,
            suspend=bool(manifests.PLACEHOLDER_URI.match(main.uri)),
        )
    }
    base = component_dir(model, gitops)
    if not (base / "kustomization.yaml").exists():
        changes[base / "kustomization.yaml"] = batch_template.COMPONENT.substitute(model=model)
        changes[base / "cronjob.yaml"] = batch_template.cronjob(model)
    kustomization = gitops / "envs" / env / "kustomization.yaml"
    changes[kustomization] = _env_kustomization(kustomization.read_text(), model, kustomization)
    scaffold.check_renders(changes, root)
    return changes


def new_batch(model: str, env: str, **options: Any) -> list[Path]:
    """Opt `env` into the batch job of `model`: its Component, the env's patch and kustomization."""
    return write_all(plan_batch(model, env, **options))
