"""Signed models: publish signs with Sigstore's model-signing; promote, sync and batch check the
env's policy before anything is served.

Who signs (`Signer.from_env`, read by `modelops promote`):

- `MODELOPS_SIGNING_KEY`: the path of a PEM private key (EC P-256/384/521); local and offline.
- `MODELOPS_SIGNING_KEYLESS=true`: Sigstore keyless with the ambient OIDC identity (GitHub Actions
  with `permissions: id-token: write`: the workflow's own identity). A key, when set, wins.
- neither: publish signs nothing (an env that requires signatures then refuses the promotion unless
  the artifact is signed already).

Who may have signed is the env's policy, carried by its manifests (`signing_rules`). A laptop cannot
obtain or check a keyless signature from a CI workflow, so `MODELOPS_LOCAL_SIGNER_KEY` (a PEM
public key) stands in for a keyless policy in what runs here (`modelops sync`, `modelops batch
--env`, `modelops promote`), the way the local store stands in for a bucket: a signature is still
required, by that key instead. It never replaces a key policy, and the server never reads it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops_serving import signature, storage
from modelops_serving.signature import Policy, SignatureError

from modelops.delivery import kserve_rules, manifests, signing_rules
from modelops.errors import PublishError

KEY_ENV = "MODELOPS_SIGNING_KEY"
KEYLESS_ENV = "MODELOPS_SIGNING_KEYLESS"
LOCAL_KEY_ENV = "MODELOPS_LOCAL_SIGNER_KEY"


class SigningError(PublishError):
    """A model cannot be signed, or its signature does not satisfy the policy; nothing was changed."""


class SignatureConflict(SigningError):
    """A signature already sits beside the artifact and this signer did not make it: it stays."""


def signature_uri(model_uri: str) -> str:
    """`<modelUri without its trailing slash>.sig`: where a published model's signature lives."""
    return signature.signature_uri(model_uri)


@dataclass(frozen=True)
class Signer:
    """What publish signs with: a private key file, or Sigstore keyless (`key` None)."""

    key: Path | None = None

    @classmethod
    def from_env(cls) -> Signer | None:
        """The signer `MODELOPS_SIGNING_KEY` / `MODELOPS_SIGNING_KEYLESS` configure, or None."""
        if key := os.environ.get(KEY_ENV, "").strip():
            return cls(Path(key).expanduser())
        if os.environ.get(KEYLESS_ENV, "").strip().lower() in ("1", "true", "yes"):
            return cls(None)
        return None

    def describe(self) -> str:
        return f"the key {self.key} ({KEY_ENV})" if self.key else f"Sigstore keyless ({KEYLESS_ENV})"

    def policy(self) -> Policy:
        """The policy this signer's signatures satisfy (keyless: this workflow's GitHub identity)."""
        if self.key is not None:
            from cryptography.hazmat.primitives import serialization

            try:
                private = serialization.load_pem_private_key(self.key.read_bytes(), None)
            except (OSError, ValueError, TypeError) as exc:
                raise SigningError(
                    f"{self.key} ({KEY_ENV}): not a readable, unencrypted PEM private key: {exc}"
                ) from None
            pem = private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            try:
                return signature.key_policy(pem, f"{self.key}")
            except SignatureError as exc:
                raise SigningError(f"{KEY_ENV}: {exc}") from None
        ref, server = os.environ.get("GITHUB_WORKFLOW_REF"), os.environ.get("GITHUB_SERVER_URL")
        if not ref or not server:
            raise SigningError(
                f"{KEYLESS_ENV}: keyless signing needs the OIDC identity of a GitHub Actions job "
                "(GITHUB_WORKFLOW_REF is not set); set MODELOPS_SIGNING_KEY to sign with a key here"
            )
        return Policy(identity=f"{server}/{ref}", issuer=signature.GITHUB_ISSUER)

    def sign(self, model_dir: Path, dest: Path) -> None:
        """Write the signature of `model_dir` to `dest` (SigningError naming the reason)."""
        from model_signing import signing as ms

        config = ms.Config().set_hashing_config(signature.hashing_config())
        try:
            if self.key is not None:
                self.policy()  # a clear error for a bad key file first
                config.use_elliptic_key_signer(private_key=self.key)
            else:
                config.use_sigstore_signer(identity_token=_ambient_token())
            config.sign(model_dir, dest)
        except SigningError:
            raise
        except Exception as exc:  # key parsing, the OIDC exchange, Fulcio and Rekor raise many types
            raise SigningError(
                f"signing {model_dir} with {self.describe()} failed: {type(exc).__name__}: {exc}"
            ) from None

    def accepts(self, model_dir: Path, existing: Path, where: str) -> None:
        """Raise SignatureConflict unless `existing` is this signer's valid signature of `model_dir`."""
        try:
            signature.verify(model_dir, existing, self.policy(), where)
        except SignatureError as exc:
            raise SignatureConflict(
                f"{where}: a signature is already published beside the model and {self.describe()} "
                f"did not make it ({exc}). Signatures are immutable like the artifact, so it was kept; "
                "if the env's policy accepts it there is nothing to do, otherwise find out who signed "
                "it before removing it and publishing again"
            ) from None


def _ambient_token() -> str:
    """The job's OIDC token for Sigstore, never an interactive login (which would hang CI)."""
    from sigstore.oidc import detect_credential

    token = detect_credential()
    if not token:
        raise SigningError(
            f"{KEYLESS_ENV}: no ambient OIDC credential (a GitHub Actions job needs `permissions: "
            "id-token: write`); set MODELOPS_SIGNING_KEY to sign with a key instead"
        )
    return token


# --- the env's policy ----------------------------------------------------------------------------


def _objects(manifest_or_env: Any) -> list[dict[str, Any]]:
    if isinstance(manifest_or_env, str):
        return manifests.render(manifest_or_env)
    if isinstance(manifest_or_env, dict):
        return [manifest_or_env]
    return list(manifest_or_env)


def required(manifest_or_env: Any) -> bool:
    """True when the env (its name, one rendered object, or the rendered objects) requires signed
    models: any predictor or batch container sets a signer policy."""
    for obj in _objects(manifest_or_env):
        containers: list[dict[str, Any]] = []
        if obj.get("kind") in manifests.MODEL_KINDS:
            containers = [signing_rules.predictor_container(p)[1] for p in kserve_rules.predictors(obj)]
        elif obj.get("kind") == "CronJob":
            pod: Any = obj
            for key in signing_rules.BATCH_POD:
                pod = pod.get(key) or {}
            containers = pod.get("containers") or []
        for box in containers:
            values, _ = signing_rules.env_values(box)
            if any(values.get(name) for name in signature.POLICY_ENV):
                return True
    return False


def present(uri: str) -> bool:
    """True when a signature sits beside the published model `uri` (no check of who made it)."""
    where = signature_uri(uri)
    if storage.is_local(where):
        return storage.local_path(where).is_file()
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(where)
        return bool(fs.isfile(path))
    except Exception as exc:  # backends, credentials, network
        raise PublishError(f"{where}: cannot read the artifact store: {type(exc).__name__}: {exc}") from None


def policy_for(objects: list[dict[str, Any]], model: str) -> Policy | None:
    """The policy `model`'s main predictor states in the rendered objects, as checked here
    (`MODELOPS_LOCAL_SIGNER_KEY` standing in for a keyless one); None when none is required."""
    for obj in objects:
        if obj.get("kind") in manifests.MODEL_KINDS and obj.get("metadata", {}).get("name") == model:
            for predictor in kserve_rules.predictors(obj):
                if predictor.get("name") == manifests.MAIN:
                    pod, box = signing_rules.predictor_container(predictor)
                    stated, problems = signing_rules.stated(pod, box, objects)
                    if problems:
                        raise SigningError(f"{obj['kind']}/{model}: {'; '.join(problems)}")
                    return local(stated.policy()) if stated else None
    return None


def local(accepted: Policy | None) -> Policy | None:
    """`accepted` as this machine checks it: a keyless policy becomes MODELOPS_LOCAL_SIGNER_KEY's."""
    path = os.environ.get(LOCAL_KEY_ENV, "").strip()
    if accepted is None or not accepted.keyless or not path:
        return accepted
    try:
        pem = Path(path).expanduser().read_bytes()
        return signature.key_policy(pem, f"{path} ({LOCAL_KEY_ENV}, standing in for {accepted.describe()})")
    except (OSError, SignatureError) as exc:
        raise SigningError(f"{LOCAL_KEY_ENV}={path}: {exc}") from None


def check(uri: str, accepted: Policy) -> None:
    """The published model at `uri` must carry a signature that verifies under `accepted`."""
    where = signature_uri(uri)
    with tempfile.TemporaryDirectory(prefix="modelops-signature-") as tmp:
        try:
            model_dir = storage.resolve(uri, cache_dir=Path(tmp))
        except storage.ModelLoadError as exc:
            raise SigningError(f"cannot read the model to check its signature: {exc}") from None
        try:
            found = storage.fetch_file(where, Path(tmp))
        except storage.ModelLoadError as exc:
            raise SigningError(f"unsigned: {exc}; the env requires {accepted.describe()}") from None
        try:
            signature.verify(model_dir, found, accepted, where)
        except SignatureError as exc:
            raise SigningError(str(exc)) from None


def check_signer(signer: Signer | None, accepted: Policy, uri: str) -> None:
    """Before publishing: refuse when the signature the env needs cannot come out of this run."""
    if signer is None:
        if not present(uri):
            raise SigningError(
                f"{signature_uri(uri)}: unsigned, and no signer is configured; the env requires "
                f"{accepted.describe()}. Set {KEY_ENV} (a PEM private key) or, on GitHub, "
                f"{KEYLESS_ENV}=true with `id-token: write`"
            )
        return
    own = signer.policy()
    if (own.public_key is None) != (accepted.public_key is None) or (
        _key_id(own) != _key_id(accepted)
        if own.public_key
        else (own.identity, own.issuer) != (accepted.identity, accepted.issuer)
    ):
        raise SigningError(
            f"{signer.describe()} makes {own.describe()}, but the env requires {accepted.describe()}"
        )


def _key_id(policy: Policy) -> bytes:
    """A public key's DER bytes: the same key however its PEM is wrapped."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(policy.public_key or b"")
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_key(directory: Path) -> tuple[Path, Path]:
    """A fresh EC P-256 key pair: `directory`/key.pem (private, mode 0600) and key.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "key.pem", directory / "key.pub"
    private.touch(mode=0o600)
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def local_env(directory: Path) -> dict[str, str]:
    """Sign and check with one local key: MODELOPS_SIGNING_KEY and MODELOPS_LOCAL_SIGNER_KEY as the
    environment sets them (both), else a fresh pair in `directory`."""
    given = {name: os.environ.get(name, "") for name in (KEY_ENV, LOCAL_KEY_ENV)}
    if all(given.values()):
        return given
    private, public = generate_key(directory)
    return {KEY_ENV: str(private), LOCAL_KEY_ENV: str(public)}


def process_env(accepted: Policy | None, directory: Path) -> dict[str, str]:
    """The MODELOPS_SIGNER_* variables a local server or batch process checks `accepted` with: a
    key as a file in `directory` (the cluster mounts it from a ConfigMap); none for None."""
    if accepted is None:
        return {}
    if accepted.keyless:
        return {
            "MODELOPS_SIGNER_IDENTITY": accepted.identity or "",
            "MODELOPS_SIGNER_ISSUER": accepted.issuer or "",
        }
    import hashlib

    pem = accepted.public_key or b""
    path = directory / f"{hashlib.sha256(pem).hexdigest()[:16]}.pub"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pem)
    return {"MODELOPS_SIGNER_PUBLIC_KEY": str(path.resolve())}


# What `process_env` replaces in a manifest's container env: the signature is read beside modelUri
# here (no storage initializer copied the model), with the policy as this machine checks it.
PROCESS_ENV = (*signature.POLICY_ENV, signing_rules.STORE)
