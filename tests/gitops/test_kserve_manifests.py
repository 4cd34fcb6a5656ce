"""The KServe platform's manifests: the strict InferenceService schema (a misplaced field is an error,
not a field the API server prunes), the rules it cannot say, the platform setting, and switching an
env's platform in one commit (`modelops platform set`). Pure: kustomize and files, no training."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from modelops.delivery import manifests, platforms, switch
from modelops.delivery.patches import read_state
from tests.gitops_models import write_release

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "gitops"
ENV = "staging-kserve"
HASH = "a" * 64


@pytest.fixture(scope="module")
def isvc() -> dict:
    """credit-hgb's rendered InferenceService in the shipped KServe env."""
    objects = manifests.render(ENV, GITOPS)
    return next(
        o for o in objects if o["kind"] == "InferenceService" and o["metadata"]["name"] == "credit-hgb"
    )


def problems_of(obj: dict) -> list[str]:
    return manifests.problems([obj], GITOPS, ENV)


def test_the_shipped_kserve_env_renders_valid_inference_services(isvc: dict) -> None:
    objects = manifests.render(ENV, GITOPS)
    assert {o["kind"] for o in objects} == {"InferenceService"}
    assert manifests.problems(objects, GITOPS, ENV) == []
    predictor = isvc["spec"]["predictor"]
    (box,) = predictor["containers"]
    env = {e["name"]: e.get("value") for e in box["env"]}
    assert box["name"] == "kserve-container" and env["PROTOCOL"] == "v2"
    assert env["STORAGE_URI"] == "unpromoted://credit-hgb/" and env["MODELOPS_SIGNER_IDENTITY"]
    assert box["image"].startswith("ghcr.io/your-org/modelops-serving@sha256:")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    # the Seldon predictor's pod, field for field: one template (pod_template) for both
    seldon = next(o for o in manifests.render("staging", GITOPS) if o["metadata"]["name"] == "credit-hgb")
    pod = seldon["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    assert predictor["securityContext"] == pod["securityContext"] and predictor["volumes"] == pod["volumes"]
    (sbox,) = pod["containers"]
    for key in ("readinessProbe", "livenessProbe", "securityContext", "volumeMounts", "resources", "envFrom"):
        assert box[key] == sbox[key], key


@pytest.mark.parametrize(
    ("where", "field", "value", "message"),
    [
        # a container's field on the predictor: KServe's CRD has no such predictor field
        ((), "volumeMounts", [{"name": "tmp", "mountPath": "/tmp"}], "'volumeMounts' was unexpected"),
        # the canary share under spec instead of spec.predictor
        (("..",), "canaryTrafficPercent", 10, "spec: Additional properties are not allowed"),
        # a typo in the container: checked as the core Container type
        (("containers", 0), "readinesProbe", {}, "'readinesProbe' was unexpected"),
        # a typo in the pod security context: the core PodSecurityContext
        (("securityContext",), "runAsUsr", 1, "'runAsUsr' was unexpected"),
    ],
)
def test_a_misplaced_field_is_refused(
    isvc: dict, where: tuple, field: str, value: object, message: str
) -> None:
    obj = copy.deepcopy(isvc)
    node = obj["spec"] if where == ("..",) else obj["spec"]["predictor"]
    for key in () if where == ("..",) else where:
        node = node[key]
    node[field] = value
    assert any(message in p for p in problems_of(obj)), problems_of(obj)


def test_rules_the_schema_cannot_say(isvc: dict) -> None:
    no_protocol = copy.deepcopy(isvc)
    box = no_protocol["spec"]["predictor"]["containers"][0]
    box["env"] = [e for e in box["env"] if e["name"] != "PROTOCOL"]
    assert any("PROTOCOL: None, not 'v2'" in p for p in problems_of(no_protocol))
    canary = copy.deepcopy(isvc)
    canary["spec"]["predictor"]["canaryTrafficPercent"] = 10  # but no canary release annotations
    assert any("spec.predictor.annotations.modelops.dev/version" in p for p in problems_of(canary))
    stale = copy.deepcopy(isvc)
    stale["metadata"]["annotations"]["modelops.dev/storage-uri"] = f"file:///s/credit-hgb/{HASH}/"
    assert any(
        "storage-uri" in p and "differs from the container's STORAGE_URI" in p for p in problems_of(stale)
    )


def test_a_canary_is_kserve_own_split_and_its_revisions_are_main_and_canary(tmp_path: Path) -> None:
    from modelops.delivery import kserve_rules

    shutil.copytree(GITOPS, tmp_path / "gitops")
    write_release(tmp_path, ENV, "credit-hgb", HASH, "v3")
    write_release(tmp_path, ENV, "credit-hgb", "b" * 64, "v4", canary=10)
    objects = manifests.render(ENV, tmp_path / "gitops")
    assert manifests.problems(objects, tmp_path / "gitops", ENV) == []
    obj = next(o for o in objects if o["metadata"]["name"] == "credit-hgb")
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 10
    views = {p["name"]: (p["traffic"], p["graph"]["modelUri"]) for p in kserve_rules.predictors(obj)}
    assert views == {
        "main": (90, f"file:///srv/store/credit-hgb/{HASH}/"),
        "canary": (10, f"file:///srv/store/credit-hgb/{'b' * 64}/"),
    }
    main, extras = read_state(tmp_path / "gitops/envs" / ENV / "credit-hgb.yaml")
    assert (main.version, [(e.name, e.release.version, e.traffic) for e in extras]) == (
        "v3",
        [("canary", "v4", 10)],
    )


def test_analyze_compares_main_and_kserve_canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`modelops analyze` reads the pair off the InferenceService: main from the annotations, the
    canary from the spec, with KServe's split."""
    from modelops.monitoring import canary

    shutil.copytree(GITOPS, tmp_path / "gitops")
    write_release(tmp_path, ENV, "credit-hgb", HASH, "v3")
    write_release(tmp_path, ENV, "credit-hgb", "b" * 64, "v4", canary=10)
    monkeypatch.chdir(tmp_path)
    pair = canary.predictors("credit-hgb", ENV)
    assert (pair.namespace, pair.kind) == ("modelops-staging-kserve", "canary")
    assert (pair.main.version, pair.main.traffic, pair.main.content_hash) == ("v3", 90, HASH)
    assert (pair.canary.version, pair.canary.traffic, pair.canary.content_hash) == ("v4", 10, "b" * 64)


def test_the_setting_and_the_rendered_kind_must_agree(tmp_path: Path) -> None:
    shutil.copytree(GITOPS, tmp_path / "gitops")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["platforms"] = {ENV: "seldon", "qa": "kserve"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rendered = {f"envs/{ENV}": manifests.render(ENV, tmp_path / "gitops")}
    found = manifests.platform_problems(rendered, tmp_path / "gitops")
    assert any("platforms.qa: there is no env 'qa'" in p for p in found)
    assert any(f"platform is seldon ({tmp_path / 'params.yaml'} platforms.{ENV})" in p for p in found)


def test_the_kserve_app_ignores_one_webhook_field_and_the_schema_checks_it() -> None:
    objects = manifests.render_argocd(GITOPS)
    app = next(o for o in objects if o["metadata"]["name"] == "modelops-staging-kserve")
    assert app["spec"]["source"]["path"] == f"gitops/envs/{ENV}"
    assert app["spec"]["ignoreDifferences"] == [
        {
            "group": "serving.kserve.io",
            "kind": "InferenceService",
            "jsonPointers": ["/metadata/annotations/serving.kserve.io~1deploymentMode"],
        }
    ]
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert manifests.problems([app], GITOPS) == []
    broad = copy.deepcopy(app)  # ignoring a whole section would hide a changed model
    broad["spec"]["ignoreDifferences"][0]["jsonPointers"] = ["/spec"]
    assert any("jsonPointers[0]" in p for p in manifests.problems([broad], GITOPS))
    typo = copy.deepcopy(app)
    typo["spec"]["ignoreDifferences"][0]["jsonPointer"] = ["/metadata/annotations/x"]
    assert any("'jsonPointer' was unexpected" in p for p in manifests.problems([typo], GITOPS))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def test_switching_a_platform_is_one_commit_that_keeps_the_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelops.cli import app

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "params.yaml", repo)
    for folder in ("data", "gitops"):
        shutil.copytree(
            ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("raw.csv", "prepared", "*.dvc")
        )
    write_release(repo, "staging", "credit-hgb", HASH, "v5")
    write_release(repo, "staging", "hpc-forest", "c" * 64, "v2", canary=20)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    monkeypatch.chdir(repo)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@t")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@t")
    runner = CliRunner()
    refused = runner.invoke(app, ["platform", "set", "staging", "kserve"])
    assert refused.exit_code == 9 and "hpc-forest has a canary in staging" in refused.output, refused.output
    assert {p: p.read_bytes() for p in before} == before  # nothing written
    write_release(repo, "staging", "hpc-forest", "c" * 64, "v2")  # finish it
    git(repo, "commit", "-qam", "finish")
    done = runner.invoke(app, ["platform", "set", "staging", "kserve"])
    assert done.exit_code == 0, done.output
    changed = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(changed) == sorted(
        ["params.yaml", "gitops/envs/staging/kustomization.yaml"]
        + [f"gitops/envs/staging/{m}.yaml" for m in ("credit-hgb", "hpc-forest", "concrete-hgb")]
    )
    assert platforms.of_env("staging", repo) is platforms.KSERVE
    manifests.check_all(repo / "gitops")
    obj = next(
        o for o in manifests.render("staging", repo / "gitops") if o["metadata"]["name"] == "credit-hgb"
    )
    assert obj["kind"] == "InferenceService"
    assert obj["metadata"]["annotations"]["modelops.dev/version"] == "v5"
    assert obj["metadata"]["annotations"]["modelops.dev/storage-uri"].endswith(f"/{HASH}/")
    assert obj["spec"]["predictor"]["minReplicas"] == 1
    assert runner.invoke(app, ["platform", "set", "staging", "kserve"]).output.startswith(
        "staging already runs"
    )
    shadow = runner.invoke(app, ["promote", "credit-hgb", "--env", "staging", "--shadow", "--dry-run"])
    assert shadow.exit_code == 9 and "cannot mirror traffic" in shadow.output, shadow.output
    git(repo, "revert", "--no-edit", "HEAD")  # a revert switches back, byte for byte
    assert platforms.of_env("staging", repo) is platforms.SELDON
    assert switch.plan("staging", "seldon", repo) == {}
