"""The signing policy a rendered env states, and the rules it must keep (`manifests.problems`).

An env requires signed models when a predictor's container env sets `MODELOPS_SIGNER_PUBLIC_KEY`
(a path in the pod: a read-only mount of a ConfigMap the env renders, kustomize-generated from a
committed `.pub`) or `MODELOPS_SIGNER_IDENTITY` + `MODELOPS_SIGNER_ISSUER` (Sigstore keyless).
Rules, each a silent way to serve what nobody vouched for (or to refuse everything) otherwise:

- a policy is whole: an identity needs its issuer, and a key excludes an identity; values are
  literal `value:`s (the policy is read from git, not from the cluster);
- every predictor of a SeldonDeployment has main's policy: a canary or a shadow cannot load what
  main would refuse;
- a key path lies under a read-only `configMap` volume mount, and that ConfigMap is rendered in the
  env (a generated name with a hash suffix would not be: kustomize does not rewrite CRD fields) and
  holds an EC public key;
- a predictor with a policy sets `MODELOPS_SIGNATURE_STORE`: in the cluster the model arrives in
  /mnt/models without its signature, which the server then reads from the store;
- a model's batch CronJob verifies with its main predictor's policy.

Pure functions on rendered objects; `signing` uses `stated` to verify locally what the cluster would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelops_serving.signature import POLICY_ENV, Policy, SignatureError, key_policy

from modelops.delivery import kserve_rules

KEY, IDENTITY, ISSUER = POLICY_ENV
STORE = "MODELOPS_SIGNATURE_STORE"
BATCH_POD = ("spec", "jobTemplate", "spec", "template", "spec")


@dataclass(frozen=True)
class Stated:
    """A container's signing policy as its manifest states it (the key's content resolved)."""

    key_path: str | None = None
    identity: str | None = None
    issuer: str | None = None
    key_pem: bytes | None = None
    key_source: str = ""  # `ConfigMap/<name> key <key>`: where the key's content came from

    def policy(self) -> Policy:
        """The verifier's Policy (SignatureError if the key is not one it can use)."""
        if self.key_pem is not None:
            return key_policy(self.key_pem, self.key_source)
        return Policy(identity=self.identity, issuer=self.issuer)

    def same_as(self, other: Stated | None) -> bool:
        return other is not None and (self.key_pem, self.identity, self.issuer) == (
            other.key_pem,
            other.identity,
            other.issuer,
        )

    def describe(self) -> str:
        if self.key_path:
            return f"{KEY}={self.key_path} ({self.key_source or 'unresolved'})"
        return f"{IDENTITY}={self.identity} {ISSUER}={self.issuer}"


def env_values(container: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The policy variables a container sets, and problems (set but not by a literal value)."""
    values, problems = {}, []
    for entry in container.get("env") or []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name in (*POLICY_ENV, STORE):
            if "value" not in entry:
                problems.append(f"env.{name}: must be a literal value (the policy is read from git)")
            elif str(entry["value"]).strip():
                values[name] = str(entry["value"]).strip()
    return values, problems


def stated(
    pod: dict[str, Any], container: dict[str, Any], objects: list[dict[str, Any]]
) -> tuple[Stated | None, list[str]]:
    """The container's policy (None: it requires no signature) and the problems stating it."""
    values, problems = env_values(container)
    key, identity, issuer = values.get(KEY), values.get(IDENTITY), values.get(ISSUER)
    if not (key or identity or issuer):
        return None, problems
    if key and (identity or issuer):
        problems.append(f"env: {KEY} and {IDENTITY}/{ISSUER} are both set; a policy is one or the other")
    if bool(identity) != bool(issuer):
        problems.append(f"env: {IDENTITY} and {ISSUER} go together (keyless: who, and who vouched for it)")
    if not key:
        return Stated(identity=identity, issuer=issuer), problems
    pem, source, where = _mounted(key, pod, container, objects)
    if where:
        problems.append(f"env.{KEY}: {where}")
    elif pem is not None:
        try:
            key_policy(pem, source)
        except SignatureError as exc:
            problems.append(f"env.{KEY}: {exc}")
    return Stated(key_path=key, key_pem=pem, key_source=source), problems


def _mounted(
    path: str, pod: dict[str, Any], container: dict[str, Any], objects: list[dict[str, Any]]
) -> tuple[bytes | None, str, str]:
    """(the key's content, `ConfigMap/name key k`, a problem or "") for a key path in the pod."""
    for mount in container.get("volumeMounts") or []:
        root = str(mount.get("mountPath", "")).rstrip("/")
        if mount.get("subPath"):
            rel = mount["subPath"] if path == root else None
        else:
            rel = path[len(root) + 1 :] if root and path.startswith(root + "/") else None
        if not rel:
            continue
        volume = next((v for v in pod.get("volumes") or [] if v.get("name") == mount.get("name")), {})
        config = volume.get("configMap")
        if not config:
            return None, "", f"{path} is mounted from volume {mount.get('name')!r}, not from a ConfigMap"
        if mount.get("readOnly") is not True:
            return None, "", f"the mount of {path} ({mount.get('name')!r}) must be readOnly: true"
        key = next((i.get("key") for i in config.get("items") or [] if i.get("path") == rel), None)
        key = key or (None if config.get("items") else rel)
        name = config.get("name")
        found = next(
            (
                o
                for o in objects
                if o.get("kind") == "ConfigMap" and o.get("metadata", {}).get("name") == name
            ),
            None,
        )
        if found is None:
            return None, "", f"ConfigMap {name!r} (volume {mount.get('name')!r}) is not rendered in this env"
        data = found.get("data") or {}
        if key not in data:
            return None, "", f"ConfigMap {name!r} has no key {key!r} (it has {sorted(data)})"
        return str(data[key]).encode(), f"ConfigMap/{name} key {key}", ""
    return None, "", f"{path} is under no volume mount of the container"


def predictor_container(predictor: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the pod spec, the container) serving a predictor's graph node ({} when there is none)."""
    node = (predictor.get("graph") or {}).get("name")
    for component in predictor.get("componentSpecs") or []:
        pod = component.get("spec") or {}
        for box in pod.get("containers") or []:
            if box.get("name") == node:
                return pod, box
    return {}, {}


def problems(objects: list[dict[str, Any]]) -> list[str]:
    """Every signing rule the rendered objects break, each as `Kind/name path: message`."""
    found: list[str] = []
    mains: dict[str, Stated | None] = {}
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("kind") not in ("SeldonDeployment", "InferenceService"):
            continue
        label = f"{obj['kind']}/{obj.get('metadata', {}).get('name')}"
        policies = {}
        for i, predictor in enumerate(kserve_rules.predictors(obj)):
            pod, box = predictor_container(predictor)
            if not box:
                continue  # manifests.seldon_problems names the missing container
            where = f"{label} spec.predictors[{i}].componentSpecs[].spec.containers[{box.get('name')}]"
            policy, issues = stated(pod, box, objects)
            found += [f"{where}.{issue}" for issue in issues]
            values, _ = env_values(box)
            if policy is not None and STORE not in values:
                found.append(
                    f"{where}.env: {STORE} must name the artifact store when a signature is required "
                    "(Seldon's storage initializer copies the model to /mnt/models without it)"
                )
            policies[str(predictor.get("name"))] = policy
        main = policies.get("main")
        mains[str(obj.get("metadata", {}).get("name"))] = main
        for name, policy in policies.items():
            if name != "main" and not _same(policy, main):
                found.append(
                    f"{label} spec.predictors[{name}]: verifies signatures as {_text(policy)}, but main as "
                    f"{_text(main)}; every predictor must keep main's policy"
                )
    for obj in objects:
        if isinstance(obj, dict) and obj.get("kind") == "CronJob":
            found += _batch(obj, mains, objects)
    return found


def _batch(
    cronjob: dict[str, Any], mains: dict[str, Stated | None], objects: list[dict[str, Any]]
) -> list[str]:
    model = (cronjob.get("metadata", {}).get("labels") or {}).get("modelops.dev/model")
    if model not in mains:
        return []  # not a model's batch job, or batch_rules names the missing SeldonDeployment
    pod: Any = cronjob
    for key in BATCH_POD:
        pod = pod.get(key) or {}
    box = next((c for c in pod.get("containers") or [] if c.get("name") == "batch"), None)
    if box is None:
        return []  # batch_rules names it
    label = f"CronJob/{cronjob.get('metadata', {}).get('name')} {'.'.join(BATCH_POD)}.containers[batch]"
    policy, issues = stated(pod, box, objects)
    found = [f"{label}.{issue}" for issue in issues]
    if not _same(policy, mains[model]):
        found.append(
            f"{label}.env: verifies signatures as {_text(policy)}, but {model}'s main predictor as "
            f"{_text(mains[model])}; batch must verify what serving verifies"
        )
    return found


def _same(a: Stated | None, b: Stated | None) -> bool:
    return (a is None and b is None) or (a is not None and a.same_as(b))


def _text(policy: Stated | None) -> str:
    return "no signature required" if policy is None else policy.describe()
