"""`modelops new model`: a model is a params entry, its manifests in every env and an owner.

Everything is planned in memory and checked first: the name, the dataset, that the estimator fits
the dataset's task, that nothing of that name exists, that params.yaml still validates and that
every env, argocd and monitoring still render and validate (on a scratch copy of gitops/). Only
then are the files written, all or none, so a refused scaffold leaves the tree as it was.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from modelops import tasks
from modelops.changeset import Content, ScaffoldError, add_entry, dump, round_trip, write_all
from modelops.config import MODEL_NAME, PARAMS_FILE, load_params, parse_params
from modelops.delivery import codeowners, manifests, platforms
from modelops.errors import ModelopsError

CODEOWNERS = codeowners.PATH
DEFAULT_OWNER = codeowners.DEFAULT_OWNER
CODEOWNERS_HEADER = codeowners.HEADER
SELDON_TARGET = platforms.SELDON.target


def check_name(name: str) -> None:
    """A model name must be usable as a params key, a file name and a Kubernetes object name."""
    if not MODEL_NAME.match(name):
        raise ScaffoldError(
            f"invalid model name {name!r}: use lowercase letters, digits and '-', starting with a "
            f"letter, at most 40 characters ({MODEL_NAME.pattern})"
        )


def env_sizing(env_dir: Path, base: str, layout: platforms.Layout = platforms.SELDON) -> tuple[Any, Any]:
    """(replicas, resources) of an env: what its existing model patches set, else the base's."""
    replicas = layout.replicas[0]
    for patch in sorted(env_dir.glob("*.yaml")):
        if patch.name == "kustomization.yaml":
            continue
        ops = round_trip().load(patch.read_text())
        found = {op.get("path"): op.get("value") for op in ops or [] if isinstance(op, Mapping)}
        if replicas in found and layout.resources in found:
            return found[replicas], found[layout.resources]
    spec = round_trip().load(base)["spec"]
    if layout is platforms.KSERVE:
        return spec["predictor"]["minReplicas"], spec["predictor"]["containers"][0]["resources"]
    predictor = spec["predictors"][0]
    return predictor["replicas"], predictor["componentSpecs"][0]["spec"]["containers"][0]["resources"]


def env_patch(
    name: str, env: str, replicas: Any, resources: Any, layout: platforms.Layout = platforms.SELDON
) -> str:
    """The unpromoted patch of a model in an env of the layout's platform, with the env's sizing."""
    release = layout.patch_template.substitute(model=name, env=env)
    rule = next(line for line in release.splitlines() if line.startswith("# --- "))
    head = f"# --- {env} sizing{' and traffic' if layout.traffic else ''} ".ljust(len(rule), "-")
    value = dump(round_trip(), {"value": resources})
    sizing = layout.sizing_template.substitute(
        replicas=replicas, resources="".join(f"  {line}\n" for line in value.splitlines())
    )
    return f"{release}{head}\n{sizing}"


def _add_resource(text: str, name: str, source: Path) -> str:
    rt = round_trip()
    data = rt.load(text)
    resources = data.setdefault("resources", [])
    if f"{name}.yaml" in resources:
        raise ScaffoldError(f"{source}: resources already lists {name}.yaml")
    resources.append(f"{name}.yaml")
    return dump(rt, data)


def _add_patch(text: str, name: str, source: Path, target: Mapping[str, str] = SELDON_TARGET) -> str:
    rt = round_trip()
    data = rt.load(text)
    patches = data.setdefault("patches", [])
    if any(isinstance(p, Mapping) and p.get("path") == f"{name}.yaml" for p in patches):
        raise ScaffoldError(f"{source}: patches already lists {name}.yaml")
    patches.append({"path": f"{name}.yaml", "target": dict(target) | {"name": name}})
    return dump(rt, data)


def manifest_changes(name: str, root: Path = Path()) -> dict[Path, Content]:
    """The gitops/ files a new model adds or edits (paths under `root`); refuses a taken name."""
    check_name(name)
    gitops = root / manifests.GITOPS
    envs = manifests.envs(gitops)
    if not envs:
        raise ScaffoldError(f"{gitops / 'envs'}: no environments (no */kustomization.yaml)")
    changes: dict[Path, Content] = {}
    bases = {}
    for layout in platforms.LAYOUTS.values():
        base_dir = gitops / layout.base
        if not (base_dir / "kustomization.yaml").exists():
            continue  # a fork without KServe envs may delete gitops/base/kserve
        bases[layout.name] = layout.base_template.substitute(model=name)
        changes[base_dir / f"{name}.yaml"] = bases[layout.name]
        kustomization = base_dir / "kustomization.yaml"
        changes[kustomization] = _add_resource(kustomization.read_text(), name, kustomization)
    for env in envs:
        layout = platforms.of_env(env, root)
        if layout.name not in bases:
            raise ScaffoldError(f"env {env!r} runs on {layout.name}, but {gitops / layout.base} is missing")
        env_dir = gitops / "envs" / env
        sizing = env_sizing(env_dir, bases[layout.name], layout)
        changes[env_dir / f"{name}.yaml"] = env_patch(name, env, *sizing, layout)
        kustomization = env_dir / "kustomization.yaml"
        changes[kustomization] = _add_patch(kustomization.read_text(), name, kustomization, layout.target)
    taken = [str(p) for p in changes if p.name == f"{name}.yaml" and p.exists()]
    if taken:
        raise ScaffoldError(f"model name {name!r} is taken: {', '.join(taken)} already exist(s)")
    return changes


def check_renders(changes: Mapping[Path, Content], root: Path = Path()) -> None:
    """Render and validate every env, argocd and monitoring with the changes applied, on a copy."""
    gitops = (root / manifests.GITOPS).resolve()
    with tempfile.TemporaryDirectory(prefix="modelops-new-") as tmp:
        copy = Path(tmp) / "gitops"
        shutil.copytree(gitops, copy)
        for path, content in changes.items():
            try:
                rel = path.resolve().relative_to(gitops)
            except ValueError:
                continue
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            (copy / rel).write_bytes(content.encode() if isinstance(content, str) else content)
        try:
            manifests.check_all(copy)
        except ModelopsError as exc:
            raise ScaffoldError(
                f"the new manifests would not render and validate; nothing was written:\n{exc}"
            ) from None


def codeowners_change(name: str, dataset: str, owner: str, root: Path = Path()) -> tuple[Path, str]:
    """CODEOWNERS with the model's block above the production block (created if missing)."""
    path = root / CODEOWNERS
    text = path.read_text() if path.exists() else None
    envs = manifests.envs(root / manifests.GITOPS)
    return path, codeowners.add_model(text, name, dataset, owner, envs)


def plan_model(
    name: str, dataset: str, estimator: str, owner: str = DEFAULT_OWNER, root: Path = Path()
) -> dict[Path, Content]:
    """Every file `new model` writes, checked; raises ScaffoldError before anything is written."""
    check_name(name)
    params_path = root / PARAMS_FILE
    params = load_params(params_path)
    if dataset not in params.datasets:
        known = ", ".join(sorted(params.datasets))
        raise ScaffoldError(
            f"unknown dataset {dataset!r} (known: {known}); declare one with "
            "`modelops new dataset NAME --from CSV --target COLUMN`"
        )
    task = params.dataset(dataset).task
    if estimator not in tasks.ESTIMATORS:
        raise ScaffoldError(f"unknown estimator {estimator!r} (known: {', '.join(tasks.ESTIMATORS)})")
    if estimator not in tasks.fitting(task):
        raise ScaffoldError(
            f"estimator {estimator!r} does not fit dataset {dataset!r}, a {task} task "
            f"(fitting: {', '.join(tasks.fitting(task))})"
        )
    if name in params.models:
        raise ScaffoldError(f"model name {name!r} is taken: {params_path}: models.{name} exists")
    if (root / "models" / name).exists():
        raise ScaffoldError(f"model name {name!r} is taken: {root / 'models' / name} exists")
    entry = {"dataset": dataset, "estimator": estimator, "seed": 0, "threads": 2, "hyperparams": {}}
    text = add_entry(params_path.read_text(), "models", name, entry, str(params_path))
    try:
        parse_params(yaml.safe_load(text), str(params_path), root)
    except ModelopsError as exc:
        raise ScaffoldError(f"params.yaml would not validate; nothing was written:\n{exc}") from None
    changes: dict[Path, Content] = {params_path: text, **manifest_changes(name, root)}
    path, codeowners = codeowners_change(name, dataset, owner, root)
    changes[path] = codeowners
    check_renders(changes, root)
    return changes


def new_model(
    name: str, dataset: str, estimator: str, owner: str = DEFAULT_OWNER, root: Path = Path()
) -> list[Path]:
    """Scaffold a model: params entry, base manifest, every env's patch, CODEOWNERS; all or none."""
    return write_all(plan_model(name, dataset, estimator, owner, root))


def write_manifests(name: str, root: Path = Path()) -> list[Path]:
    """Only the gitops/ part of `new model`, for a model already in params.yaml (checked the same)."""
    changes = manifest_changes(name, root)
    check_renders(changes, root)
    return write_all(changes)
