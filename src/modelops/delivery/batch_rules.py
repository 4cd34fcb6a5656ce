"""The rules a rendered batch CronJob must keep, beyond what the Kubernetes schema says.

A model's batch job (`<model>-batch`, labelled `modelops.dev/model`) must score with exactly what
the model's main predictor serves (same modelUri, version, content hash and image: invariant 3, git
alone decides), be hardened like it (same security contexts, the same Secret for the store), run
the engine (`modelops-batch`) as an Indexed Job whose completions are its `--shards N`, and never run
two at once. Pure functions on the rendered objects; `manifests.problems` calls them for every env.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONTAINER = "batch"
COMMAND = ["modelops-batch"]
SUFFIX = "-batch"
MODEL_LABEL = "modelops.dev/model"
RELEASE_ENV = ("MODELOPS_MODEL_URI", "MODELOPS_MODEL_VERSION", "MODELOPS_EXPECTED_HASH")
POD = "spec.jobTemplate.spec.template.spec"


@dataclass(frozen=True)
class Main:
    """What a model's SeldonDeployment says its main predictor runs: the batch job must match it."""

    uri: str
    version: str
    content_hash: str
    placeholder: bool
    image: str | None
    secret: str | None
    pod_security: Any
    container_security: Any

    def release(self) -> dict[str, str]:
        """The three env values a batch job must carry, by name."""
        return dict(zip(RELEASE_ENV, (self.uri, self.version, self.content_hash), strict=True))


@dataclass(frozen=True)
class Args:
    """The engine options a batch container's args set (the rest is passed through untouched)."""

    input: str | None = None
    output: str | None = None
    shards: str | None = None
    shard: str | None = None


OPTIONS = {"--input": "input", "--output": "output", "--shards": "shards", "--shard": "shard"}


def parse_args(args: list[Any]) -> tuple[Args, list[str]]:
    """The options the rules and the local runner need, and any problems (repeated or valueless)."""
    found: dict[str, str] = {}
    problems = []
    for i, arg in enumerate(args):
        name, eq, inline = str(arg).partition("=")
        if name not in OPTIONS:
            continue
        value = inline if eq else (str(args[i + 1]) if i + 1 < len(args) else None)
        if value is None or (not eq and value.startswith("--")):
            problems.append(f"args: {name} has no value")
        elif OPTIONS[name] in found:
            problems.append(f"args: {name} is given more than once")
        else:
            found[OPTIONS[name]] = value
    return Args(**found), problems


def container(cronjob: dict[str, Any]) -> dict[str, Any] | None:
    """The engine's container of a batch CronJob (named `batch`), or None."""
    pod = cronjob.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    return next((c for c in pod.get("containers") or [] if c.get("name") == CONTAINER), None)


def model_of(cronjob: dict[str, Any]) -> str | None:
    """The model a CronJob is the batch job of (its `modelops.dev/model` label), or None."""
    labels = cronjob.get("metadata", {}).get("labels") or {}
    return labels.get(MODEL_LABEL)


def problems(cronjob: dict[str, Any], main: Main | None) -> list[str]:
    """Every rule the batch CronJob breaks, each as `path: message`; `main` is its model's, if any."""
    model = model_of(cronjob)
    found: list[str] = []
    if cronjob.get("metadata", {}).get("name") != f"{model}{SUFFIX}":
        found.append(f"metadata.name: the batch job of {model} must be named {model}{SUFFIX}")
    if main is None:
        return [
            *found,
            f"(root): no SeldonDeployment {model} in this env: a batch job scores with its main predictor",
        ]
    spec = cronjob.get("spec", {})
    job = spec.get("jobTemplate", {}).get("spec", {})
    pod = job.get("template", {}).get("spec", {})
    if spec.get("concurrencyPolicy") != "Forbid":
        found.append("spec.concurrencyPolicy: must be Forbid (two runs would write the same output)")
    if main.placeholder and spec.get("suspend") is not True:
        found.append(
            f"spec.suspend: must be true while {model} is unpromoted (there is no model to score with)"
        )
    if job.get("completionMode") != "Indexed":
        found.append(
            "spec.jobTemplate.spec.completionMode: must be Indexed (JOB_COMPLETION_INDEX is the shard)"
        )
    if pod.get("restartPolicy") != "Never":
        found.append(f"{POD}.restartPolicy: must be Never (a failed shard is retried as a new pod)")
    if pod.get("securityContext") != main.pod_security:
        found.append(f"{POD}.securityContext: differs from the predictor's pod securityContext")
    box = container(cronjob)
    if box is None:
        return [*found, f"{POD}.containers: no container named {CONTAINER!r}"]
    where = f"{POD}.containers[{CONTAINER}]"
    found += _container(box, where, model, main)
    found += _shards(box, where, job)
    return found


def _container(box: dict[str, Any], where: str, model: str | None, main: Main) -> list[str]:
    found = []
    if box.get("command") != COMMAND:
        found.append(f"{where}.command: must be {COMMAND} (the engine), got {box.get('command')}")
    if box.get("image") != main.image:
        found.append(f"{where}.image: {box.get('image')!r} differs from the predictor's {main.image!r}")
    if box.get("securityContext") != main.container_security:
        found.append(f"{where}.securityContext: differs from the predictor container's")
    if not any(m.get("mountPath") == "/tmp" for m in box.get("volumeMounts") or []):
        found.append(f"{where}.volumeMounts: nothing is mounted on /tmp (the root filesystem is read-only)")
    secrets = [(e.get("secretRef") or {}).get("name") for e in box.get("envFrom") or []]
    if main.secret and main.secret not in secrets:
        found.append(f"{where}.envFrom: no secretRef {main.secret!r} (the model store's credentials)")
    env = {e.get("name"): e for e in box.get("env") or [] if isinstance(e, dict)}
    wanted = {"MODELOPS_MODEL_NAME": model, **main.release()}
    for name, value in wanted.items():
        entry = env.get(name)
        if entry is None or "value" not in entry:
            found.append(f"{where}.env: {name} must be set to a value (the main predictor's {value!r})")
        elif str(entry["value"]) != value:
            found.append(
                f"{where}.env.{name}: {entry['value']!r} differs from the main predictor's {value!r} "
                "(`modelops promote` edits both)"
            )
    return found


def _shards(box: dict[str, Any], where: str, job: dict[str, Any]) -> list[str]:
    args, found = parse_args(box.get("args") or [])
    found = [f"{where}.{p}" for p in found]
    for option in ("input", "output"):
        if getattr(args, option) is None:
            found.append(f"{where}.args: --{option} URL is required")
    if args.shard is not None:
        found.append(f"{where}.args: --shard I/N scores one fixed shard in every pod; use --shards N")
    completions = job.get("completions")
    if args.shards is None or args.shards != str(completions):
        found.append(
            f"{where}.args: --shards must equal spec.jobTemplate.spec.completions ({completions}), "
            f"got {args.shards}"
        )
    elif isinstance(completions, int) and completions > 1 and "{shard}" not in (args.output or "{shard}"):
        found.append(f"{where}.args: --output must contain {{shard}} with {completions} shards")
    parallelism = job.get("parallelism", 1)
    if isinstance(completions, int) and isinstance(parallelism, int) and parallelism > completions:
        found.append(
            f"spec.jobTemplate.spec.parallelism: {parallelism} is more than completions {completions}"
        )
    return found
