"""What an env should serve: its manifests at the tracked commit, rendered and validated.

Like Argo CD's repo server: the runtime keeps a bare mirror of its own, fetches the tracked branch
into it, and renders `gitops/envs/<env>` with the same kustomize and checks CI runs, at that commit.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from modelops_serving.signature import Policy

from modelops.delivery import kserve_rules, manifests, signing, signing_rules
from modelops.errors import ModelopsError


class SyncError(ModelopsError):
    """The env cannot be synced (or the runtime cannot be reached); what runs keeps running."""

    exit_code = 13


@dataclass(frozen=True)
class PredictorSpec:
    """One predictor as the rendered manifest states it."""

    name: str
    traffic: int
    shadow: bool
    replicas: int
    uri: str
    version: str
    content_hash: str
    env: tuple[tuple[str, str], ...]
    # Who must have signed the model, as checked here (`signing.local`); None: nobody.
    policy: Policy | None = None

    @property
    def placeholder(self) -> bool:
        return bool(manifests.PLACEHOLDER_URI.match(self.uri))


@dataclass(frozen=True)
class DeploymentSpec:
    """One SeldonDeployment as rendered: where it is routed and its predictors."""

    namespace: str
    name: str
    predictors: tuple[PredictorSpec, ...]


def git(repo: Path, *args: str, binary: bool = False) -> Any:
    """Run git in `repo`; a failure is a SyncError naming the command and git's message."""
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, check=False)
    if proc.returncode != 0:
        raise SyncError(f"git {' '.join(args)} (in {repo}): {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout if binary else proc.stdout.decode().strip()


def source(repo: Path, remote: str | None) -> str:
    """What Argo CD would clone: the remote's URL when the repo has that remote, else the repo itself."""
    if remote and remote in git(repo, "remote").split():
        url = git(repo, "remote", "get-url", remote)
        local = (repo / url).resolve()
        return str(local) if "://" not in url and local.exists() else url
    return str(repo)


def fetch(mirror: Path, origin: str, branch: str) -> str:
    """Update the runtime's own bare mirror of `branch` and return its commit.

    A mirror of its own, as Argo CD's repo server keeps: polling never touches the user's clone
    (its index, FETCH_HEAD or refs), so `git pull` there cannot race the runtime.
    """
    if not (mirror / "HEAD").exists():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        git(mirror.parent, "init", "--quiet", "--bare", str(mirror))
    git(mirror, "fetch", "--quiet", "--force", origin, f"+refs/heads/{branch}:refs/heads/{branch}")
    return git(mirror, "rev-parse", f"refs/heads/{branch}^{{commit}}")


def rendered(repo: Path, rev: str, env: str) -> list[dict[str, Any]]:
    """Render and validate `gitops/envs/<env>` as committed at `rev` in `repo` (a bare mirror)."""
    archive = git(repo, "archive", "--format=tar", rev, "gitops", binary=True)
    with tempfile.TemporaryDirectory(prefix="modelops-sync-") as tmp:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        root = Path(tmp) / "gitops"
        objects = manifests.render(env, root)
        manifests.validate(objects, root, where=f"gitops/envs/{env} at {rev}", env=env)
    return objects


def desired(repo: Path, rev: str, env: str) -> list[DeploymentSpec]:
    """The models `gitops/envs/<env>` serves at `rev` (SeldonDeployments or InferenceServices),
    rendered and validated."""
    objects = rendered(repo, rev, env)
    return [deployment(obj, objects) for obj in objects if obj.get("kind") in manifests.MODEL_KINDS]


def deployment(obj: dict[str, Any], objects: list[dict[str, Any]] | None = None) -> DeploymentSpec:
    """A rendered SeldonDeployment's namespace, name and predictors (release, traffic, shadow);
    with all the env's `objects`, also each predictor's signing policy. An InferenceService's
    predictors are its revisions: main (the previous rolled-out one during a canary) and canary,
    split by `canaryTrafficPercent` as KServe splits them (`kserve_rules.predictors`)."""
    predictors = []
    for p in kserve_rules.predictors(obj):
        env = manifests.container_env(p)
        policy = None
        if objects is not None:
            stated = signing_rules.stated(*signing_rules.predictor_container(p), objects)[0]
            policy = signing.local(stated.policy()) if stated else None
        predictors.append(
            PredictorSpec(
                name=p["name"],
                traffic=int(p.get("traffic", 0)),
                shadow=bool(p.get("shadow", False)),
                replicas=int(p.get("replicas", 1)),
                uri=p["graph"]["modelUri"],
                version=env.get("MODELOPS_MODEL_VERSION", ""),
                content_hash=env.get("MODELOPS_EXPECTED_HASH", ""),
                env=tuple(sorted((k, str(v)) for k, v in env.items() if v is not None)),
                policy=policy,
            )
        )
    meta = obj["metadata"]
    return DeploymentSpec(meta.get("namespace", "default"), meta["name"], tuple(predictors))
