"""The serving platforms an env can run on, and where each keeps what a promotion writes.

An env's platform is one setting, `platforms.<env>` in params.yaml (read by `modelops.config`;
unset: `seldon`). Each platform has its base manifests, its kustomize patch target and the JSON
pointers of the fields a promotion edits; everything that reads or writes an env patch goes through
the `Layout` of its platform, so promote, rollback, history, status, the preview and the policy
check work the same on both (docs/delivery.md#serving-platforms-seldon-or-kserve).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import ModuleType
from typing import Any

from modelops.delivery import kserve_template, seldon_template
from modelops.errors import ModelopsError


@dataclass(frozen=True)
class Layout:
    """One platform: its kind, where its base lives and the paths a promotion reads and writes."""

    name: str
    api_version: str
    kind: str
    base: str  # the directory under gitops/ that holds one base manifest per model
    uri: str  # JSON pointers of main's release, as the env patch writes them
    version: str
    content_hash: str
    replicas: tuple[str, ...]
    resources: str
    traffic: str | None  # main's share, when the platform states it (Seldon); None: implicit
    templates: ModuleType  # BASE, PATCH and SIZING: what `modelops new model` writes
    shadow: bool  # whether the platform can mirror traffic to a second model

    @property
    def base_template(self) -> Template:
        return self.templates.BASE

    @property
    def patch_template(self) -> Template:
        return self.templates.PATCH

    @property
    def sizing_template(self) -> Template:
        return self.templates.SIZING

    @property
    def target(self) -> dict[str, str]:
        """The kustomize patch target selecting this platform's objects (without the name)."""
        group, version = self.api_version.split("/")
        return {"group": group, "version": version, "kind": self.kind}


_SELDON_CONTAINER = "/spec/predictors/0/componentSpecs/0/spec/containers/0"
_KSERVE_CONTAINER = "/spec/predictor/containers/0"

SELDON = Layout(
    name="seldon",
    api_version="machinelearning.seldon.io/v1",
    kind="SeldonDeployment",
    base="base",
    uri="/spec/predictors/0/graph/modelUri",
    version=f"{_SELDON_CONTAINER}/env/1/value",
    content_hash=f"{_SELDON_CONTAINER}/env/2/value",
    replicas=("/spec/predictors/0/replicas",),
    resources=f"{_SELDON_CONTAINER}/resources",
    traffic="/spec/predictors/0/traffic",
    templates=seldon_template,
    shadow=True,
)

KSERVE = Layout(
    name="kserve",
    api_version="serving.kserve.io/v1beta1",
    kind="InferenceService",
    base="base/kserve",
    uri=f"{_KSERVE_CONTAINER}/env/5/value",  # STORAGE_URI
    version=f"{_KSERVE_CONTAINER}/env/1/value",
    content_hash=f"{_KSERVE_CONTAINER}/env/2/value",
    replicas=("/spec/predictor/minReplicas", "/spec/predictor/maxReplicas"),
    resources=f"{_KSERVE_CONTAINER}/resources",
    traffic=None,  # the previous rolled-out revision keeps what canaryTrafficPercent leaves
    templates=kserve_template,
    shadow=False,
)

LAYOUTS = {layout.name: layout for layout in (SELDON, KSERVE)}
BY_KIND = {layout.kind: layout for layout in LAYOUTS.values()}
# KServe's canary share; its block in an env patch starts with this operation.
CANARY_PERCENT = "/spec/predictor/canaryTrafficPercent"


class PlatformError(ModelopsError):
    """A platform cannot do what was asked (or the setting is unknown); nothing was written."""

    exit_code = 9


def of_ops(ops: list[dict[str, Any]]) -> Layout:
    """The layout an env patch is written for, read from its operations' paths."""
    if any(str(op.get("path", "")).startswith("/spec/predictor/") for op in ops):
        return KSERVE
    return SELDON


def of_env(env: str, root: Path = Path()) -> Layout:
    """The layout of an env's platform, as params.yaml under `root` sets it (`platforms.<env>`)."""
    from modelops.config import PARAMS_FILE, load_params

    return LAYOUTS[load_params(root / PARAMS_FILE).platform(env)]


def refuse_shadow(env: str, layout: Layout) -> None:
    """A shadow on a platform without mirroring is an error, before anything is written."""
    if not layout.shadow:
        raise PlatformError(
            f"--shadow: env {env!r} runs on {layout.name} (params.yaml platforms.{env}), which cannot "
            "mirror traffic to a second model (KServe has no shadow). Use a small canary instead "
            "(`--canary 1`: real answers from 1% of requests, judged by `modelops analyze`), or a "
            "Seldon env for the shadow (docs/delivery.md#serving-platforms-seldon-or-kserve); "
            "nothing was written"
        )
