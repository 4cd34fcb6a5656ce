"""Model signatures (Sigstore's `model-signing`): who signed a model, checked before it is unpickled.

A hash proves the bytes are the ones the manifest names, not who produced them. The manifest also
carries a policy, in the container env:

- `MODELOPS_SIGNER_PUBLIC_KEY`: the path of a PEM public key (EC P-256/384/521); the model must be
  signed with its private key. Offline: nothing is fetched to verify.
- `MODELOPS_SIGNER_IDENTITY` + `MODELOPS_SIGNER_ISSUER`: Sigstore keyless; the signing certificate
  must name this identity (e.g. the promote workflow of a repository on main) and come from this
  OIDC issuer. Verifying fetches Sigstore's trusted root (TUF) over the network.

Neither set: no signature is required. The signature is the file `<modelUri without its trailing
slash>.sig`, beside the content-addressed directory in the store; where Seldon's storage
initializer copied the model elsewhere (/mnt/models), `<MODELOPS_SIGNATURE_STORE>/<model>/<hash>.sig`.
What is signed: model-signing's manifest of every file's sha256 (file serialization, no ignored
paths, no symlinks), i.e. the same files the tree hash covers. `model_signing` is imported only
when a policy is set: it costs ~1-2 s of start-up.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops_serving.storage import ModelLoadError

SUFFIX = ".sig"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
POLICY_ENV = ("MODELOPS_SIGNER_PUBLIC_KEY", "MODELOPS_SIGNER_IDENTITY", "MODELOPS_SIGNER_ISSUER")


class SignatureError(ModelLoadError):
    """The model is not signed as its policy demands (or the policy itself is malformed)."""


@dataclass(frozen=True)
class Policy:
    """Who may have signed a model: a public key (PEM bytes), or a keyless identity and issuer."""

    public_key: bytes | None = None
    identity: str | None = None
    issuer: str | None = None
    source: str = ""  # where the key came from, for messages (a path, a ConfigMap, ...)

    @property
    def keyless(self) -> bool:
        return self.public_key is None

    def describe(self) -> str:
        """One phrase for log lines: whose signature this policy accepts."""
        if self.keyless:
            return f"keyless signatures of {self.identity} (issuer {self.issuer})"
        return f"signatures made with the private key of {self.source or 'the configured public key'}"


def policy(public_key: Path | None, identity: str | None, issuer: str | None) -> Policy | None:
    """The policy the three settings state (None: no signature required); SignatureError if malformed."""
    identity, issuer = (identity or "").strip() or None, (issuer or "").strip() or None
    if public_key is not None and (identity or issuer):
        raise SignatureError(
            "MODELOPS_SIGNER_PUBLIC_KEY and MODELOPS_SIGNER_IDENTITY/ISSUER are both set; a policy is "
            "one or the other"
        )
    if bool(identity) != bool(issuer):
        have, missing = ("IDENTITY", "ISSUER") if identity else ("ISSUER", "IDENTITY")
        raise SignatureError(f"MODELOPS_SIGNER_{have} is set without MODELOPS_SIGNER_{missing}")
    if public_key is not None:
        try:
            pem = Path(public_key).read_bytes()
        except OSError as exc:
            raise SignatureError(f"MODELOPS_SIGNER_PUBLIC_KEY={public_key}: {exc.strerror or exc}") from None
        return key_policy(pem, str(public_key))
    if identity:
        return Policy(identity=identity, issuer=issuer)
    return None


def key_policy(pem: bytes, source: str) -> Policy:
    """A key policy from PEM bytes, checked to be an EC public key model-signing can verify with."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{source}: not a PEM public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        raise SignatureError(f"{source}: model-signing verifies EC P-256, P-384 or P-521 keys only")
    return Policy(public_key=pem, source=source)


def signature_uri(model_uri: str, *, store: str | None = None, name: str = "", content_hash: str = "") -> str:
    """Where a model's signature is: beside its URI, or under `store` by name and hash."""
    if store:
        return f"{store.rstrip('/')}/{name}/{content_hash}{SUFFIX}"
    return model_uri.rstrip("/") + SUFFIX


def hashing_config() -> Any:
    """How model-signing hashes a model here, for signing and verifying alike: every file."""
    from model_signing import hashing

    return (
        hashing.Config()
        .use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)
        .set_ignored_paths(paths=[], ignore_git_paths=False)
    )


def verify(model_dir: Path, signature: Path, accepted: Policy, where: str | None = None) -> None:
    """Verify `signature` over `model_dir` under `accepted`; SignatureError naming `where` and why."""
    from model_signing import verifying

    config = verifying.Config().set_hashing_config(hashing_config())
    with tempfile.TemporaryDirectory(prefix="modelops-signer-") as tmp:
        try:
            if accepted.keyless:
                config.use_sigstore_verifier(identity=accepted.identity, oidc_issuer=accepted.issuer)
            else:
                key = Path(tmp) / "signer.pub"
                key.write_bytes(accepted.public_key or b"")
                config.use_elliptic_key_verifier(public_key=key)
            config.verify(model_dir, signature)
        except Exception as exc:  # the library raises ValueError, InvalidSignature, JSON and network errors
            raise SignatureError(f"{where or signature}: {_reason(exc, accepted)}") from None


def _reason(exc: Exception, accepted: Policy) -> str:
    """What a verification failure means, in words (some of the library's exceptions are empty)."""
    from cryptography.exceptions import InvalidSignature

    text = str(exc).strip()
    if isinstance(exc, InvalidSignature):
        return f"the signature does not verify: not made by {accepted.describe()}"
    if text.startswith("Key mismatch"):
        return f"signed with another key, not as required ({accepted.describe()})"
    if text.startswith("Signature mismatch"):
        return f"the model's files differ from the signed ones ({_mismatch(text)})"
    if accepted.keyless:
        return f"not verified as {accepted.describe()}: {type(exc).__name__}: {text}"
    return f"not a valid signature for {accepted.describe()}: {type(exc).__name__}: {text}"


@dataclass(frozen=True)
class Required:
    """A model's signature must verify under `policy`; it is the file at `uri`."""

    policy: Policy
    uri: str


def required(settings: Any) -> Required | None:
    """What the server's settings demand of the model's signature (None: nothing)."""
    accepted = policy(settings.signer_public_key, settings.signer_identity, settings.signer_issuer)
    if accepted is None:
        return None
    where = signature_uri(
        settings.model_uri,
        store=settings.signature_store,
        name=settings.model_name,
        content_hash=(settings.expected_hash or "").strip().lower(),
    )
    return Required(accepted, where)


def check(model_uri: str, model_dir: Path, demand: Required, cache_dir: Path | None = None) -> None:
    """Refuse the model (SignatureError, one line) unless its signature verifies under the policy."""
    from modelops_serving.storage import fetch_file

    try:
        found = fetch_file(demand.uri, cache_dir)
    except ModelLoadError as exc:
        raise SignatureError(
            f"model {model_uri} REFUSED: unsigned ({exc}); the manifest requires {demand.policy.describe()}"
        ) from None
    try:
        verify(model_dir, found, demand.policy, demand.uri)
    except SignatureError as exc:
        raise SignatureError(f"model {model_uri} REFUSED: bad signature: {exc}") from None


def _mismatch(text: str) -> str:
    """model-signing's manifest diff as file names. Its text is the repr of a list of strings, whose
    quoting depends on the raw digest bytes inside, so it is parsed back rather than matched."""
    import ast
    import re

    try:
        diffs = [str(d) for d in ast.literal_eval(text.split(":", 1)[1].strip())]
    except (ValueError, SyntaxError, TypeError, IndexError):
        return text
    parts = []
    for label, pattern in [
        ("changed", r"Hash mismatch for '(.+?)': Expected"),
        ("not signed", r"Extra files found in model '.*?': (.+)"),
        ("missing", r"Missing files in model '.*?': (.+)"),
    ]:
        found = [m.group(1) for d in diffs if (m := re.match(pattern, d, re.DOTALL))]
        parts += [f"{label}: {', '.join(found)}"] if found else []
    return "; ".join(parts) or text
