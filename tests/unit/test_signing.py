"""Signing: publish writes `<hash>.sig` once beside the artifact and never replaces it; the env's
policy as its manifests state it (keyless shipped, or a key from a ConfigMap) and the rules that
keep it whole; the local key that stands in for keyless here; the checks promote calls."""

from __future__ import annotations

import copy
import shutil
import stat
import uuid
from pathlib import Path

import fsspec
import pytest
from modelops_serving import signature
from modelops_serving.integrity import tree_hash

from modelops.delivery import manifests, publish, signing
from modelops.delivery.signing import SignatureConflict, Signer, SigningError
from tests.unit.test_publish import MODEL, make_model, snapshot

GITOPS = Path(__file__).resolve().parents[2] / "gitops"
IDENTITY = "https://github.com/your-org/modelops/.github/workflows/promote.yml@refs/heads/main"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("keys")
    return {name: signing.generate_key(root / name) for name in ("ours", "theirs")}


@pytest.fixture(scope="module")
def production() -> list[dict]:
    """The shipped production env, rendered (requires keyless signatures of the promote workflow)."""
    return manifests.render("production", GITOPS)


def test_publish_signs_once_beside_the_tree_and_never_replaces_a_signature(tmp_path: Path, keys) -> None:
    model_dir, store = make_model(tmp_path / "model"), tmp_path / "store"
    digest = tree_hash(model_dir)
    first = publish.publish(model_dir, MODEL, str(store), Signer(keys["ours"][0]))
    sig = store / MODEL / f"{digest}.sig"
    assert first.signed and first.signature == sig.as_uri()
    assert sorted(p.name for p in (store / MODEL).iterdir()) == [digest, f"{digest}.sig"]  # no temp left
    assert tree_hash(store / MODEL / digest) == digest  # the artifact itself is unchanged
    assert not sig.stat().st_mode & stat.S_IWUSR
    signature.verify(model_dir, sig, signature.key_policy(keys["ours"][1].read_bytes(), "ours"))
    assert signing.present(first.uri)

    before = snapshot(store)
    again = publish.publish(model_dir, MODEL, str(store), Signer(keys["ours"][0]))
    assert (again.signed, again.signature, again.reused) == (False, sig.as_uri(), True)
    assert snapshot(store) == before  # the existing signature (ECDSA: other bytes each time) kept
    with pytest.raises(SignatureConflict) as conflict:
        publish.publish(model_dir, MODEL, str(store), Signer(keys["theirs"][0]))
    assert str(sig) in str(conflict.value) and "it was kept" in str(conflict.value)
    assert "signed with another key" in str(conflict.value)
    assert snapshot(store) == before


def test_a_remote_store_gets_the_signature_beside_the_prefix(tmp_path: Path, keys) -> None:
    model_dir, store = make_model(tmp_path / "model"), f"memory://sig-{uuid.uuid4().hex[:8]}"
    try:
        first = publish.publish(model_dir, MODEL, store, Signer(keys["ours"][0]))
        assert first.signed and first.signature == first.uri.rstrip("/") + ".sig"
        assert signing.present(first.uri) and not signing.present(first.uri.replace(MODEL, "other"))
        signing.check(first.uri, signature.key_policy(keys["ours"][1].read_bytes(), "ours"))
        assert not publish.publish(model_dir, MODEL, store, Signer(keys["ours"][0])).signed
        with pytest.raises(SignatureConflict):
            publish.publish(model_dir, MODEL, store, Signer(keys["theirs"][0]))
    finally:
        fs, root = fsspec.core.url_to_fs(store)
        fs.rm(root, recursive=True)


def test_who_signs_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, keys, tmp_path: Path) -> None:
    monkeypatch.delenv(signing.KEY_ENV)
    monkeypatch.delenv(signing.KEYLESS_ENV, raising=False)
    assert Signer.from_env() is None
    monkeypatch.setenv(signing.KEYLESS_ENV, "true")
    monkeypatch.delenv("GITHUB_WORKFLOW_REF", raising=False)
    assert Signer.from_env() == Signer(None)
    with pytest.raises(SigningError, match="OIDC identity of a GitHub Actions job"):
        Signer(None).policy()
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv(
        "GITHUB_WORKFLOW_REF", "your-org/modelops/.github/workflows/promote.yml@refs/heads/main"
    )
    assert Signer(None).policy() == signature.Policy(identity=IDENTITY, issuer=signature.GITHUB_ISSUER)
    for name in ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        monkeypatch.delenv(name, raising=False)  # no `id-token: write`: never an interactive login
    with pytest.raises(SigningError, match="no ambient OIDC credential"):
        Signer(None).sign(make_model(tmp_path / "keyless"), tmp_path / "keyless.sig")
    assert not (tmp_path / "keyless.sig").exists()
    monkeypatch.setenv(signing.KEY_ENV, str(keys["ours"][0]))  # a key wins: under act, on laptops
    assert Signer.from_env() == Signer(keys["ours"][0])
    with pytest.raises(SigningError, match="not a readable, unencrypted PEM private key"):
        Signer(keys["ours"][1]).sign(make_model(tmp_path / "m"), tmp_path / "m.sig")
    assert not (tmp_path / "m.sig").exists()


def test_the_shipped_envs_require_the_promote_workflows_keyless_signature(production, monkeypatch) -> None:
    assert signing.required(production) and signing.required("staging")
    monkeypatch.delenv(signing.LOCAL_KEY_ENV)
    for model in ("credit-hgb", "concrete-hgb"):
        expected = signature.Policy(identity=IDENTITY, issuer=signature.GITHUB_ISSUER)
        assert signing.policy_for(production, model) == expected
    job = next(o for o in production if o["kind"] == "CronJob")
    assert signing.required(job)
    bare = copy.deepcopy(next(o for o in production if o["kind"] == "SeldonDeployment"))
    for predictor in bare["spec"]["predictors"]:
        box = predictor["componentSpecs"][0]["spec"]["containers"][0]
        box["env"] = [e for e in box["env"] if not e["name"].startswith("MODELOPS_SIGNER_")]
    assert not signing.required(bare)


def test_a_local_key_stands_in_for_keyless_only(production, keys, monkeypatch) -> None:
    monkeypatch.setenv(signing.LOCAL_KEY_ENV, str(keys["ours"][1]))
    local = signing.policy_for(production, "credit-hgb")
    assert local.public_key == keys["ours"][1].read_bytes()
    assert signing.LOCAL_KEY_ENV in local.source and IDENTITY in local.source
    key_policy = signature.key_policy(keys["theirs"][1].read_bytes(), "theirs")
    assert signing.local(key_policy) is key_policy  # a key policy is checked as written
    monkeypatch.setenv(signing.LOCAL_KEY_ENV, str(keys["ours"][0]))
    with pytest.raises(SigningError, match=f"{signing.LOCAL_KEY_ENV}=.*not a PEM public key"):
        signing.policy_for(production, "credit-hgb")


def test_promote_refuses_early_what_cannot_satisfy_the_policy(tmp_path: Path, keys) -> None:
    uri = publish.artifact_uri(MODEL, "0" * 64, str(tmp_path / "store"))
    ours = signature.key_policy(keys["ours"][1].read_bytes(), "ours")
    with pytest.raises(SigningError, match="unsigned, and no signer is configured"):
        signing.check_signer(None, ours, uri)
    with pytest.raises(
        SigningError, match="but the env requires signatures made with the private key of ours"
    ):
        signing.check_signer(Signer(keys["theirs"][0]), ours, uri)
    signing.check_signer(Signer(keys["ours"][0]), ours, uri)
    keyless = signature.Policy(identity=IDENTITY, issuer=signature.GITHUB_ISSUER)
    with pytest.raises(SigningError, match="requires keyless signatures of"):
        signing.check_signer(Signer(keys["ours"][0]), keyless, uri)
    with pytest.raises(SigningError, match="no such model directory"):
        signing.check(uri, ours)
    model = make_model(Path(publish.storage.local_path(uri)))
    with pytest.raises(SigningError, match=r"unsigned: .*\.sig: no such file; the env requires signatures"):
        signing.check(uri, ours)
    Signer(keys["theirs"][0]).sign(model, model.with_name(model.name + ".sig"))
    with pytest.raises(SigningError, match="signed with another key"):
        signing.check(uri, ours)


def seldon(objects: list[dict], name: str = "credit-hgb") -> dict:
    return next(o for o in objects if o["kind"] == "SeldonDeployment" and o["metadata"]["name"] == name)


def env_of(container: dict) -> dict:
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda o: env_of(main_box(o))["MODELOPS_SIGNER_ISSUER"].update(value=""), "go together"),
        (
            lambda o: main_box(o)["env"].append({"name": "MODELOPS_SIGNER_PUBLIC_KEY", "value": "/k.pub"}),
            "both set",
        ),
        (
            lambda o: main_box(o)["env"].remove(env_of(main_box(o))["MODELOPS_SIGNATURE_STORE"]),
            "MODELOPS_SIGNATURE_STORE must name the artifact store",
        ),
        (
            lambda o: env_of(main_box(o))["MODELOPS_SIGNER_IDENTITY"].update(value="https://elsewhere"),
            "but credit-hgb's main predictor as",  # the batch job of concrete-hgb is unaffected
        ),
    ],
)
def test_the_rules_name_a_broken_policy(production, break_it, message) -> None:
    assert manifests.problems(production, GITOPS) == []
    objects = copy.deepcopy(production)
    for o in objects:
        if o["kind"] == "CronJob":
            o["metadata"]["labels"]["modelops.dev/model"] = "credit-hgb"  # credit-hgb's job now
            o["metadata"]["name"] = "credit-hgb-batch"
    break_it(objects)
    found = [p for p in manifests.problems(objects, GITOPS) if "sign" in p.lower() or "SIGN" in p]
    assert any(message in p for p in found), found


def main_box(objects: list[dict]) -> dict:
    return seldon(objects)["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]


def test_a_canary_cannot_escape_main_s_policy(production) -> None:
    objects = copy.deepcopy(production)
    obj = seldon(objects)
    canary = copy.deepcopy(obj["spec"]["predictors"][0])
    canary["name"] = "canary"
    box = canary["componentSpecs"][0]["spec"]["containers"][0]
    box["env"] = [e for e in box["env"] if not e["name"].startswith("MODELOPS_SIGN")]
    obj["spec"]["predictors"].append(canary)
    found = signing.signing_rules.problems(objects)
    assert any("spec.predictors[canary]: verifies signatures as no signature required" in p for p in found)


def test_the_key_component_mounts_a_committed_public_key(tmp_path: Path, keys) -> None:
    root = tmp_path / "gitops"
    shutil.copytree(GITOPS, root)
    shutil.copy(keys["ours"][1], root / "components/signed-by-key/signer.pub")
    kustomization = root / "envs/production/kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("signed-keyless", "signed-by-key"))
    objects = manifests.render("production", root)
    manifests.validate(objects, root)  # Seldon's CRD schema, kubernetes-validate and the rules
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert configmap["metadata"]["name"] == "modelops-signer"  # fixed: the CRD cannot follow a hash
    policy = signing.policy_for(objects, "credit-hgb")
    assert policy.public_key == keys["ours"][1].read_bytes()
    assert policy.source == "ConfigMap/modelops-signer key signer.pub"
    job = next(o for o in objects if o["kind"] == "CronJob")
    mounts = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "modelops-signer", "mountPath": "/etc/modelops/signer", "readOnly": True} in mounts

    def configmap_of(o: list[dict]) -> dict:
        return next(c for c in o if c["kind"] == "ConfigMap")

    for where, broken in [
        ("must be readOnly: true", lambda o: main_box(o)["volumeMounts"][-1].pop("readOnly")),
        ("is not rendered in this env", lambda o: o.remove(configmap_of(o))),
        ("not a PEM public key", lambda o: configmap_of(o)["data"].update({"signer.pub": "x"})),
    ]:
        changed = copy.deepcopy(objects)
        broken(changed)
        assert any(where in p for p in manifests.problems(changed, root)), where
