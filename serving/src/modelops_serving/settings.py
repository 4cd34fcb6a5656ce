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
