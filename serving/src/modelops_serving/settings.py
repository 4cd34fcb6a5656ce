"""Every knob of the model server: one pydantic-settings model, read from `MODELOPS_*` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server configuration; the SeldonDeployment manifest sets these as container env variables."""

    model_config = SettingsConfigDict(env_prefix="MODELOPS_", protected_namespaces=(), extra="ignore")

    # Seldon's storage initializer downloads `modelUri` into /mnt/models before the container starts.
    model_uri: str = "/mnt/models"
    model_name: str = "model"
    model_version: str = "unversioned"
    expected_hash: str | None = Field(None, description="sha256 tree hash the manifest promises")
    cache_dir: Path = Path("/tmp/modelops-models")
    # Who may have signed the model (signature.py): a public key, or a keyless identity + issuer.
    # Unset: no signature required. The env overlay's manifests set one.
    signer_public_key: Path | None = Field(None, description="PEM public key the signature must verify with")
    signer_identity: str | None = Field(None, description="keyless: the signing certificate's identity")
    signer_issuer: str | None = Field(None, description="keyless: the OIDC issuer of that identity")
    # The store root the signature is read from when the model was copied elsewhere first
    # (Seldon's storage initializer: /mnt/models); unset: the signature is beside model_uri.
    signature_store: str | None = None

    max_batch_size: int = Field(64, ge=1)
    # 0 = continuous batching: a batch is whatever queued while the previous predict ran (measured
    # faster than a timed wait once a small predict costs ~0.2 ms; see the batching module).
    max_batch_wait_ms: float = Field(0.0, ge=0)
    max_rows_per_request: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    allow_nan: bool = False
    threads: int = Field(1, ge=1, description="BLAS/OpenMP threads of the predict worker")

    host: str = "127.0.0.1"
    port: int = Field(9000, ge=0, le=65535)  # what Seldon's executor calls for a v1 model container
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # On SIGTERM: readiness goes false at once, the listener stays open this long (so the endpoint
    # is removed from the Service before connections are refused), then in-flight requests finish.
    shutdown_delay_s: float = Field(5.0, ge=0)

    # Bearer tokens (auth.py): unset, the server answers anyone (the local default); set, prediction,
    # feedback and metadata need `Authorization: Bearer <token>`, and a missing, empty or unreadable
    # file stops the server from starting (it never serves open by accident).
    auth_tokens_file: str | None = Field(
        None, description="Tokens file, one a line (# comments), e.g. a mounted Secret; unset: no auth"
    )
    auth_reload_interval_s: float = Field(
        1.0, ge=0, description="How often, at most, the tokens file is checked for a change (rotation)"
    )

    # The sampled inference log (inference_log.py) that `modelops monitor` reads. /tmp: the only
    # writable path of the read-only container. 0.1: drift statistics need hundreds of rows per
    # window, which a tenth of even modest traffic gives, at a tenth of the disk and writer CPU.
    inference_log_dir: Path = Field(
        Path("/tmp/modelops-inference-log"),
        description="Root of the inference log: <dir>/<model>/<YYYY-MM-DD>/<HHMMSS>-<pid>-<seq>.jsonl",
    )
    inference_log_sample_rate: float = Field(
        0.1, ge=0, le=1, description="Fraction of requests whose rows are logged; 0 turns the log off"
    )
    inference_log_queue_size: int = Field(
        10_000, ge=1, description="Sampled requests waiting for the writer; beyond it they are dropped"
    )
    inference_log_max_file_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="A log file is closed and a new one started past this size"
    )

    # Ground-truth feedback (feedback.py): the predictions a feedback can still join, oldest first out.
    # ~0.4 KB per remembered request plus 8 bytes per output value: the defaults stay under ~70 MB.
    feedback_memory_requests: int = Field(
        100_000, ge=0, description="Recent predictions remembered for feedback; 0 turns feedback off"
    )
    feedback_memory_rows: int = Field(
        500_000, ge=0, description="Rows of recent predictions remembered for feedback (a second bound)"
    )
    feedback_log_queue_size: int = Field(
        10_000, ge=1, description="Accepted feedbacks waiting for the log writer; beyond it they are dropped"
    )
