"""gitops/ renders with kustomize for every env and every rule the manifests rely on is enforced."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelops.delivery import image_rules, manifests
from modelops.delivery.manifests import ManifestError
from tests.gitops_models import add_manifests

GITOPS = Path(__file__).resolve().parents[2] / "gitops"
# Every model that has manifests (one base file each, beside kustomization.yaml).
MODELS = sorted(p.stem for p in (GITOPS / "base").glob("*.yaml") if p.name != "kustomization.yaml")
MODEL = "credit-hgb"
HASH = "649299d1899bb175104ed6d0b61346699238b0df0748f28b08f667f48b818aaa"
OTHER = "1" * 64
URI = f"file:///srv/modelops-store/credit-hgb/{HASH}/"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    """Every env and the argocd dir, rendered once."""
    return manifests.render_all(GITOPS)


@pytest.fixture
def gitops(tmp_path: Path) -> Path:
    """A scratch copy of gitops/ to break or edit."""
    return Path(shutil.copytree(GITOPS, tmp_path / "gitops"))


def promote_text(text: str, uri: str = URI, digest: str = HASH, version: str = "v7") -> str:
    """What promote does to an overlay, as plain text substitutions (enough for these tests)."""
    return (
        text.replace("unpromoted://credit-hgb/", uri)
        .replace('"' + "0" * 64 + '"', f'"{digest}"')
        .replace("modelops.dev/version: unpromoted", f"modelops.dev/version: {version}")
        .replace("  value: unpromoted\n", f'  value: "{version}"\n')
    )


def seldon(rendered: dict[str, list[Obj]], env: str = "staging") -> Obj:
    """A deep copy of the env's rendered, promoted-looking SeldonDeployment."""
    (obj,) = [o for o in rendered[f"envs/{env}"] if o["metadata"]["name"] == MODEL]
    obj = copy.deepcopy(obj)
    obj["metadata"]["annotations"].update({"modelops.dev/version": "v7", "modelops.dev/content-hash": HASH})
    main = obj["spec"]["predictors"][0]
    main["graph"]["modelUri"] = URI
    env_of(main).update(MODELOPS_MODEL_VERSION="v7", MODELOPS_EXPECTED_HASH=HASH)
    return obj


def container(predictor: Obj) -> Obj:
    """The predictor's model container."""
    return predictor["componentSpecs"][0]["spec"]["containers"][0]


class _EnvView(dict[str, str]):
    """A dict view of a container env list that writes back on update."""

    def __init__(self, items: list[Obj]) -> None:
        super().__init__({e["name"]: e.get("value") for e in items})
        self.items_ = items

    def update(self, *args: Any, **kwargs: str) -> None:  # type: ignore[override]
        """Set values in the underlying env list."""
        super().update(*args, **kwargs)
        for entry in self.items_:
            entry["value"] = self[entry["name"]]


def env_of(predictor: Obj) -> _EnvView:
    """The model container's env as an updatable mapping."""
    return _EnvView(container(predictor)["env"])


def canary(obj: Obj, share: int = 10, shadow: bool = False) -> Obj:
    """A second predictor copied from main, serving OTHER, as promote --canary/--shadow would add."""
    main = obj["spec"]["predictors"][0]
    extra = copy.deepcopy(main)
    extra.update(name="shadow" if shadow else "canary", traffic=share)
    if shadow:
        extra["shadow"] = True
    else:
        main["traffic"] = 100 - share
    extra["graph"]["modelUri"] = f"file:///srv/modelops-store/credit-hgb/{OTHER}/"
    env_of(extra).update(MODELOPS_MODEL_VERSION="v8", MODELOPS_EXPECTED_HASH=OTHER)
    extra["annotations"] = {"modelops.dev/version": "v8", "modelops.dev/content-hash": OTHER}
    obj["spec"]["predictors"].append(extra)
    return obj


# --- the shipped manifests -------------------------------------------------------------------


@pytest.mark.parametrize("env", ["staging", "production"])
def test_every_env_renders_and_validates(rendered: dict[str, list[Obj]], env: str) -> None:
    manifests.validate(rendered[f"envs/{env}"], GITOPS)
    # Beside them only the optional batch CronJobs (tests/gitops/test_batch_manifests.py).
    assert {o["kind"] for o in rendered[f"envs/{env}"]} <= {"SeldonDeployment", "CronJob"}
    objects = [o for o in rendered[f"envs/{env}"] if o["kind"] == "SeldonDeployment"]
    assert MODEL in MODELS
    assert sorted(o["metadata"]["name"] for o in objects) == MODELS  # one deployment per model
    for obj in objects:
        model = obj["metadata"]["name"]
        assert obj["metadata"]["namespace"] == f"modelops-{env}"
        main = obj["spec"]["predictors"][0]
        # The shipped placeholder digest: no image built yet (docs/delivery.md, the image by digest).
        assert container(main)["image"] == f"ghcr.io/your-org/modelops-serving@{image_rules.UNBUILT}"
        assert (container(main)["name"], main["graph"]["name"]) == (model, model)
        assert env_of(main)["MODELOPS_MODEL_NAME"] == model
        # Not deployed yet: the explicit, valid placeholder state.
        assert obj["metadata"]["annotations"]["modelops.dev/version"] == manifests.UNPROMOTED_VERSION
        assert obj["metadata"]["annotations"]["modelops.dev/model"] == model
        assert main["graph"]["modelUri"] == f"unpromoted://{model}/"


@pytest.mark.parametrize("env", ["staging", "production"])
def test_every_predictor_mounts_the_tokens_secret_read_only(rendered: dict[str, list[Obj]], env: str) -> None:
    """By reference only (no Secret in git), as a directory (no subPath: the kubelet updates it in
    place on a rotation), and the server is told where the file is."""
    assert not [o for o in rendered[f"envs/{env}"] if o["kind"] == "Secret"]
    for obj in [o for o in rendered[f"envs/{env}"] if o["kind"] == "SeldonDeployment"]:
        main = obj["spec"]["predictors"][0]
        pod = main["componentSpecs"][0]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "serving-tokens"]
        assert volume == {
            "name": "serving-tokens",
            "secret": {"secretName": "modelops-serving-tokens", "defaultMode": 0o440},
        }
        (mount,) = [m for m in container(main)["volumeMounts"] if m["name"] == "serving-tokens"]
        assert mount == {
            "name": "serving-tokens",
            "mountPath": "/etc/modelops/serving-tokens",
            "readOnly": True,
        }
        assert env_of(main)["MODELOPS_AUTH_TOKENS_FILE"] == "/etc/modelops/serving-tokens/tokens"


@pytest.mark.parametrize("env", ["staging", "production"])
def test_every_env_patches_every_model_of_the_base(env: str) -> None:
    import yaml

    kustomization = yaml.safe_load((GITOPS / "envs" / env / "kustomization.yaml").read_text())
    # the batch patches (batch/<model>.yaml) are strategic merges: their target is their kind and name
    seldon = [p for p in kustomization["patches"] if not p["path"].startswith("batch/")]
    patched = sorted(p["target"]["name"] for p in seldon)
    assert patched == MODELS
    assert all(p["path"] == f"{p['target']['name']}.yaml" for p in seldon)


def test_a_second_model_renders_beside_the_first_and_edits_stay_apart(gitops: Path) -> None:
    """Two models in one env: each its own SeldonDeployment; promoting one leaves the other's bytes."""
    other = next(m for m in ("concrete-hgb", "hpc-forest", "second-model") if m != MODEL)
    add_manifests(gitops.parent, other)
    before = {env: manifests.render(env, gitops) for env in manifests.envs(gitops)}
    for env, objects in before.items():
        manifests.validate(objects, gitops, where=env)
        assert {MODEL, other} <= {o["metadata"]["name"] for o in objects}
    overlay = gitops / "envs" / "staging" / f"{MODEL}.yaml"
    overlay.write_text(promote_text(overlay.read_text()))
    after = manifests.render("staging", gitops)
    manifests.validate(after, gitops)
    by_name = lambda objs: {o["metadata"]["name"]: o for o in objs}  # noqa: E731
    assert by_name(after)[other] == by_name(before["staging"])[other]
    assert by_name(after)[MODEL]["spec"]["predictors"][0]["graph"]["modelUri"] == URI


def test_envs_differ_only_in_what_differs_per_env(rendered: dict[str, list[Obj]]) -> None:
    def strip(obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        del obj["metadata"]["namespace"], obj["metadata"]["labels"]["modelops.dev/env"]
        main = obj["spec"]["predictors"][0]
        del main["replicas"], container(main)["resources"]
        return obj

    staging, production = (seldon(rendered, env) for env in ("staging", "production"))
    assert strip(staging) == strip(production)
    assert staging["spec"]["predictors"][0]["replicas"] < production["spec"]["predictors"][0]["replicas"]


def test_argocd_dir_validates(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["argocd"]
    manifests.validate(objects, GITOPS)
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert kinds == [
        "AppProject/modelops",
        "AppProject/modelops-monitoring",
        "Application/modelops-monitoring",
        "Application/modelops-production",
        "Application/modelops-staging",
        "Application/modelops-staging-kserve",
        "ConfigMap/argocd-cm",
    ]
    apps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Application"}
    assert {a["spec"]["source"]["path"] for a in apps.values()} == {
        f"gitops/envs/{e}" for e in manifests.envs(GITOPS)
    } | {"gitops/monitoring"}
    # Least privilege per project: the model namespaces get SeldonDeployments, batch CronJobs and
    # the signer's public key (a ConfigMap) only, the monitoring namespace the alerts and the
    # dashboard only.
    projects = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "AppProject"}
    allowed = {
        name: sorted((k["group"], k["kind"]) for k in spec["namespaceResourceWhitelist"])
        for name, spec in projects.items()
    }
    assert allowed == {
        "modelops": [
            ("", "ConfigMap"),
            ("batch", "CronJob"),
            ("machinelearning.seldon.io", "SeldonDeployment"),
            ("serving.kserve.io", "InferenceService"),
        ],
        "modelops-monitoring": [("", "ConfigMap"), ("monitoring.coreos.com", "PrometheusRule")],
    }
    assert "clusterResourceWhitelist" not in projects["modelops-monitoring"]
    monitoring_ns = {o["metadata"]["namespace"] for o in manifests.render_monitoring(GITOPS)}
    assert {d["namespace"] for d in projects["modelops-monitoring"]["destinations"]} == monitoring_ns
    assert {apps["modelops-monitoring"]["spec"]["destination"]["namespace"]} == monitoring_ns
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    lua = cm["data"]["resource.customizations.health.machinelearning.seldon.io_SeldonDeployment"]
    for state, health in (("Available", "Healthy"), ("Failed", "Degraded"), ("Creating", "Progressing")):
        assert f'"{state}"' in lua and f'"{health}"' in lua


def test_main_checks_everything(capsys: pytest.CaptureFixture[str]) -> None:
    assert manifests.main([str(GITOPS)]) == 0
    # each env has a SeldonDeployment (or InferenceService) per model and its opted-in batch jobs;
    # argocd and monitoring add 9
    jobs = len(list(GITOPS.glob("envs/*/batch/*.yaml")))
    envs = len(manifests.envs(GITOPS))
    assert f"{envs * len(MODELS) + jobs + 9} object(s) valid" in capsys.readouterr().out


def test_promoted_overlay_with_canary_and_shadow_blocks_validates(gitops: Path) -> None:
    """The layout promote relies on: value edits plus appended copy/replace blocks render and validate."""
    overlay = gitops / "envs" / "staging" / "credit-hgb.yaml"
    text = promote_text(overlay.read_text()).replace(
        "  path: /spec/predictors/0/traffic\n  value: 100", "  path: /spec/predictors/0/traffic\n  value: 90"
    )
    block = """
- op: copy
  from: /spec/predictors/0
  path: /spec/predictors/-
- op: replace
  path: /spec/predictors/{i}/name
  value: {name}
- op: replace
  path: /spec/predictors/{i}/traffic
  value: {traffic}
- op: replace
  path: /spec/predictors/{i}/graph/modelUri
  value: file:///srv/modelops-store/credit-hgb/{h}/
- op: replace
  path: /spec/predictors/{i}/componentSpecs/0/spec/containers/0/env/1/value
  value: v8
- op: replace
  path: /spec/predictors/{i}/componentSpecs/0/spec/containers/0/env/2/value
  value: "{h}"
- op: add
  path: /spec/predictors/{i}/annotations
  value:
    modelops.dev/version: v8
    modelops.dev/content-hash: "{h}"
"""
    text += block.format(i=1, name="canary", traffic=10, h=OTHER)
    text += (
        block.format(i=2, name="shadow", traffic=0, h=OTHER)
        + "- op: add\n  path: /spec/predictors/2/shadow\n  value: true\n"
    )
    overlay.write_text(text)
    (obj,) = [o for o in manifests.render("staging", gitops) if o["metadata"]["name"] == MODEL]
    manifests.validate([obj], gitops)
    shares = {p["name"]: (p["traffic"], p.get("shadow", False)) for p in obj["spec"]["predictors"]}
    assert shares == {"main": (90, False), "canary": (10, False), "shadow": (0, True)}
    # a canary or shadow is a copy of main: it requires the same tokens
    assert {env_of(p)["MODELOPS_AUTH_TOKENS_FILE"] for p in obj["spec"]["predictors"]} == {
        "/etc/modelops/serving-tokens/tokens"
    }
    assert obj["metadata"]["annotations"]["modelops.dev/content-hash"] == HASH


# --- errors --------------------------------------------------------------------------------


def test_unknown_env_lists_the_known_ones() -> None:
    with pytest.raises(ManifestError, match=r"unknown env 'prod'.*production, staging"):
        manifests.render("prod", GITOPS)


def test_broken_kustomization_reports_kubectl_message(gitops: Path) -> None:
    (gitops / "envs" / "staging" / "kustomization.yaml").write_text("resources:\n  - ../../nowhere\n")
    with pytest.raises(ManifestError, match=r"envs/staging: kustomize failed: .*nowhere"):
        manifests.render("staging", gitops)
    assert manifests.main([str(gitops)]) == ManifestError.exit_code


def test_reordered_base_fails_the_index_guards(gitops: Path) -> None:
    base = gitops / "base" / "credit-hgb.yaml"
    text = base.read_text()
    version = "                  - name: MODELOPS_MODEL_VERSION\n                    value: unpromoted\n"
    assert version in text
    base.write_text(
        text.replace(version, "").replace(
            "                  - name: MODELOPS_LOG_LEVEL\n",
            version + "                  - name: MODELOPS_LOG_LEVEL\n",
        )
    )
    with pytest.raises(ManifestError, match=r"test failed"):
        manifests.render("production", gitops)


def test_one_error_lists_every_problem(gitops: Path) -> None:
    overlay = gitops / "envs" / "production" / "credit-hgb.yaml"
    overlay.write_text(
        overlay.read_text().replace("value: 100", "value: 150").replace("value: 3", "value: -1")
    )
    with pytest.raises(ManifestError) as info:
        manifests.check_all(gitops)
    message = str(info.value)
    assert (
        "envs/production: SeldonDeployment/credit-hgb spec.predictors[0].traffic: 150 is greater than"
        in message
    )
    assert "spec.predictors[0].replicas: -1 is less than the minimum of 0" in message
    assert "sums to 150, not 100" in message
    assert "envs/staging" not in message


# --- one negative test per rule ------------------------------------------------------------

Mutation = Callable[[Obj], Any]


def _set(path: str | tuple[str, ...], value: Any) -> Mutation:
    """A mutation setting a dotted path or a tuple of keys (digits index lists) to value; None deletes it."""
    keys = path.split(".") if isinstance(path, str) else path

    def apply(obj: Obj) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in keys]
        node: Any = obj
        for part in parents:
            node = node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value

    return apply


P0 = "spec.predictors.0"
C0 = f"{P0}.componentSpecs.0.spec.containers.0"

SELDON_RULES: list[tuple[str, Mutation, str]] = [
    (
        "apiVersion",
        _set("apiVersion", "machinelearning.seldon.io/v9"),
        "no schema for machinelearning.seldon.io/v9",
    ),
    ("name required", _set("metadata.name", None), "metadata: 'name' is a required property"),
    ("predictors non-empty", _set("spec.predictors", []), "spec.predictors: [] should be non-empty"),
    ("predictor name", _set(f"{P0}.name", None), "spec.predictors[0]: 'name' is a required property"),
    ("predictor graph", _set(f"{P0}.graph", None), "spec.predictors[0]: 'graph' is a required property"),
    (
        "predictor replicas",
        _set(f"{P0}.replicas", None),
        "spec.predictors[0]: 'replicas' is a required property",
    ),
    (
        "predictor typo",
        _set(f"{P0}.trafic", 100),
        "Additional properties are not allowed ('trafic' was unexpected)",
    ),
    ("graph name", _set(f"{P0}.graph.name", None), "spec.predictors[0].graph: 'name' is a required property"),
    ("graph modelUri", _set(f"{P0}.graph.modelUri", None), "graph: 'modelUri' is a required property"),
    ("content-addressed", _set(f"{P0}.graph.modelUri", "s3://b/credit-hgb/latest/"), "(content-addressed:"),
    (
        "traffic max",
        _set(f"{P0}.traffic", 101),
        "spec.predictors[0].traffic: 101 is greater than the maximum of 100",
    ),
    (
        "traffic min",
        _set(f"{P0}.traffic", -1),
        "spec.predictors[0].traffic: -1 is less than the minimum of 0",
    ),
    (
        "traffic sum",
        _set(f"{P0}.traffic", 90),
        "traffic of non-shadow predictors sums to 90, not 100 (main=90)",
    ),
    ("one main", _set(f"{P0}.name", "primary"), "exactly one predictor must be named 'main', found 0"),
    (
        "runAsNonRoot",
        _set(f"{C0}.securityContext.runAsNonRoot", False),
        "securityContext.runAsNonRoot: True was expected",
    ),
    (
        "pod runAsNonRoot",
        _set(f"{P0}.componentSpecs.0.spec.securityContext.runAsNonRoot", False),
        "spec.securityContext.runAsNonRoot: True was expected",
    ),
    (
        "readOnlyRootFilesystem",
        _set(f"{C0}.securityContext.readOnlyRootFilesystem", False),
        "readOnlyRootFilesystem: True was expected",
    ),
    (
        "allowPrivilegeEscalation",
        _set(f"{C0}.securityContext.allowPrivilegeEscalation", True),
        "allowPrivilegeEscalation: False was expected",
    ),
    (
        "drop ALL",
        _set(f"{C0}.securityContext.capabilities.drop", ["NET_RAW"]),
        "capabilities.drop: ['NET_RAW'] does not contain items matching",
    ),
    (
        "seccomp",
        _set(f"{C0}.securityContext.seccompProfile.type", "Unconfined"),
        "seccompProfile.type: 'Unconfined' is not one of",
    ),
    ("readinessProbe", _set(f"{C0}.readinessProbe", None), "'readinessProbe' is a required property"),
    ("livenessProbe", _set(f"{C0}.livenessProbe", None), "'livenessProbe' is a required property"),
    ("limits", _set(f"{C0}.resources.limits", None), "resources: 'limits' is a required property"),
    (
        "requests memory",
        _set(f"{C0}.resources.requests.memory", None),
        "requests: 'memory' is a required property",
    ),
    ("expected hash env", _set(f"{C0}.env.2.name", "OTHER"), "(the server reads MODELOPS_EXPECTED_HASH)"),
    # the pod spec is a core PodSpec: a misplaced or misspelt field the API server would prune
    (
        "volumeMounts belong to the container",
        _set(f"{P0}.componentSpecs.0.spec.volumeMounts", [{"name": "tmp", "mountPath": "/tmp"}]),
        "spec.predictors[0].componentSpecs[0].spec: Additional properties are not allowed "
        "('volumeMounts' was unexpected)",
    ),
    (
        "secret field name",
        _set(f"{P0}.componentSpecs.0.spec.volumes.1.secret.secretname", "modelops-serving-tokens"),
        "componentSpecs[0].spec.volumes[1].secret: Additional properties are not allowed",
    ),
    (
        "mount readOnly type",
        _set(f"{C0}.volumeMounts.1.readOnly", "yes"),
        "componentSpecs[0].spec.containers[0].volumeMounts[1].readOnly: 'yes' is not of type 'boolean'",
    ),
    (
        "annotation required",
        _set(("metadata", "annotations", "modelops.dev/source-pr"), None),
        "'modelops.dev/source-pr' is a required property",
    ),
    (
        "annotation hash format",
        _set(("metadata", "annotations", "modelops.dev/content-hash"), "abc"),
        "'abc' does not match",
    ),
    (
        "container named like node",
        _set(f"{C0}.name", "server"),
        "no container is named like the graph node 'credit-hgb'",
    ),
    (
        "uri hash = env hash",
        _set(f"{C0}.env.2.value", OTHER),
        f"content hash {HASH} in the URI differs from MODELOPS_EXPECTED_HASH {OTHER}",
    ),
    (
        "annotation hash = env",
        _set(("metadata", "annotations", "modelops.dev/content-hash"), OTHER),
        f"metadata.annotations.modelops.dev/content-hash: '{OTHER}' differs from the container env '{HASH}'",
    ),
    (
        "annotation version = env",
        _set(("metadata", "annotations", "modelops.dev/version"), "v6"),
        "modelops.dev/version: 'v6' differs from the container env 'v7'",
    ),
    (
        "model name = annotation",
        _set(f"{C0}.env.0.value", "other"),
        "MODELOPS_MODEL_NAME 'other' differs from annotation modelops.dev/model 'credit-hgb'",
    ),
    (
        "placeholder goes with unpromoted",
        _set(f"{P0}.graph.modelUri", "unpromoted://credit-hgb/"),
        "the placeholder unpromoted://credit-hgb/ goes only with",
    ),
    (
        "unpromoted needs placeholder",
        _set(f"{C0}.env.1.value", "unpromoted"),
        "MODELOPS_MODEL_VERSION 'unpromoted' needs the placeholder modelUri",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "message"), [r[1:] for r in SELDON_RULES], ids=[r[0] for r in SELDON_RULES]
)
def test_seldon_rule(rendered: dict[str, list[Obj]], mutate: Mutation, message: str) -> None:
    obj = seldon(rendered)
    manifests.validate([obj], GITOPS)  # the promoted-looking object is valid before the mutation
    mutate(obj)
    with pytest.raises(ManifestError) as info:
        manifests.validate([obj], GITOPS, where="envs/staging")
    assert message in str(info.value)
    assert str(info.value).startswith("envs/staging: ")


CANARY_RULES: list[tuple[str, Mutation, str]] = [
    (
        "canary traffic sum",
        lambda o: o["spec"]["predictors"][0].update(traffic=100),
        "sums to 110, not 100 (main=100, canary=10)",
    ),
    (
        "duplicate names",
        lambda o: o["spec"]["predictors"][1].update(name="main"),
        "predictor name 'main' is used more than once",
    ),
    (
        "canary hash annotation",
        lambda o: o["spec"]["predictors"][1]["annotations"].update({"modelops.dev/content-hash": HASH}),
        "spec.predictors[1].annotations.modelops.dev/content-hash",
    ),
    (
        "main is no shadow",
        lambda o: o["spec"]["predictors"][0].update(shadow=True),
        "the 'main' predictor cannot be a shadow",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "message"), [r[1:] for r in CANARY_RULES], ids=[r[0] for r in CANARY_RULES]
)
def test_canary_rule(rendered: dict[str, list[Obj]], mutate: Mutation, message: str) -> None:
    obj = canary(seldon(rendered))
    manifests.validate([obj], GITOPS)
    mutate(obj)
    with pytest.raises(ManifestError) as info:
        manifests.validate([obj], GITOPS)
    assert message in str(info.value)


def test_shadow_takes_no_traffic(rendered: dict[str, list[Obj]]) -> None:
    obj = canary(seldon(rendered), share=0, shadow=True)
    manifests.validate([obj], GITOPS)
    obj["spec"]["predictors"][1]["traffic"] = 5
    with pytest.raises(
        ManifestError, match=r"spec.predictors\[1\].traffic: a shadow predictor takes no traffic"
    ):
        manifests.validate([obj], GITOPS)


def _argo(rendered: dict[str, list[Obj]], kind: str) -> Obj:
    """A deep copy of the first rendered Argo CD object of a kind."""
    return copy.deepcopy(next(o for o in rendered["argocd"] if o["kind"] == kind))


ARGO_RULES: list[tuple[str, str, Mutation, str]] = [
    (
        "prune",
        "Application",
        _set("spec.syncPolicy.automated.prune", False),
        "automated.prune: True was expected",
    ),
    (
        "selfHeal",
        "Application",
        _set("spec.syncPolicy.automated.selfHeal", None),
        "'selfHeal' is a required property",
    ),
    (
        "automated",
        "Application",
        _set("spec.syncPolicy.automated", None),
        "'automated' is a required property",
    ),
    ("repoURL", "Application", _set("spec.source.repoURL", None), "'repoURL' is a required property"),
    ("path", "Application", _set("spec.source.path", "gitops/base"), "'gitops/base' does not match"),
    (
        "targetRevision",
        "Application",
        _set("spec.source.targetRevision", None),
        "'targetRevision' is a required property",
    ),
    (
        "project",
        "Application",
        _set("spec.project", "default"),
        "(the modelops AppProject, not the unrestricted default)",
    ),
    ("app name", "Application", _set("metadata.name", None), "'name' is a required property"),
    ("sourceRepos", "AppProject", _set("spec.sourceRepos", []), "spec.sourceRepos: [] should be non-empty"),
    ("sourceRepos *", "AppProject", _set("spec.sourceRepos", ["*"]), "spec.sourceRepos[0]"),
    ("destinations", "AppProject", _set("spec.destinations", None), "'destinations' is a required property"),
    (
        "destination *",
        "AppProject",
        _set("spec.destinations.0.namespace", "*"),
        "(a named namespace, never *)",
    ),
    (
        "configmap strict",
        "ConfigMap",
        _set("data.extra", 1),
        "ConfigMap/argocd-cm data.extra: 1 is not of type 'string'",
    ),
]


@pytest.mark.parametrize(
    ("kind", "mutate", "message"), [r[1:] for r in ARGO_RULES], ids=[r[0] for r in ARGO_RULES]
)
def test_argocd_rule(rendered: dict[str, list[Obj]], kind: str, mutate: Mutation, message: str) -> None:
    obj = _argo(rendered, kind)
    mutate(obj)
    with pytest.raises(ManifestError) as info:
        manifests.validate([obj], GITOPS)
    assert message in str(info.value)


def test_not_an_object_is_reported() -> None:
    with pytest.raises(ManifestError, match=r"not a Kubernetes object"):
        manifests.validate([{"metadata": {"name": "x"}}], GITOPS)
