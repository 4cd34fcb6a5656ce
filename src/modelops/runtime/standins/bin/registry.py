"""Stands in for the container tool chain an image workflow calls: no Docker engine, registry or
attestation service is reachable here. One subcommand per action stand-in (its action.yml passes
the action's inputs as JSON in $INPUTS):

- `setup-buildx` (docker/setup-buildx-action): records, answers a builder name.
- `login` (docker/login-action): records the registry and user (the password as present or not,
  never its value) and remembers the login in `<state>/registry.json`.
- `build-push` (docker/build-push-action): checks the Dockerfile exists and, with `push: true`,
  that each tag's registry was logged in to; answers a deterministic fake digest (sha256 of the
  Dockerfile's bytes, the inputs and the commit) and records the image as pushed.
- `attest` (actions/attest): checks the subject (name without tag, a sha256 digest; pushed, if
  `push-to-registry`) and answers a fake attestation id, URL and bundle file.

Every call is one line of `<state>/calls.jsonl` (tool = the action's name, `inputs` = what it was
asked), so a test can assert on exactly what the workflow requested.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

from _recorder import fail, load, record, save

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
SECRET_INPUTS = ("password", "github-token")
ACTIONS = {
    "setup-buildx": "docker/setup-buildx-action",
    "login": "docker/login-action",
    "build-push": "docker/build-push-action",
    "attest": "actions/attest",
}


def output(**values: str) -> None:
    """Write step outputs, as the real action would."""
    with open(os.environ["GITHUB_OUTPUT"], "a") as out:
        for key, value in values.items():
            out.write(f"{key}={value}\n")


def lines(value: str) -> list[str]:
    """A list input (newline- or comma-separated), as docker's actions read them."""
    return [item.strip() for item in re.split(r"[\n,]", value or "") if item.strip()]


def registry_of(ref: str) -> str:
    """The registry host of an image reference (Docker Hub when the first part is not a host)."""
    first, _, rest = ref.partition("/")
    return first if rest and ("." in first or ":" in first or first == "localhost") else "docker.io"


def build_push(inputs: dict[str, str], state: dict) -> None:
    context = inputs.get("context") or "."
    dockerfile = Path(inputs.get("file") or Path(context) / "Dockerfile")
    if not dockerfile.is_file():
        fail(ACTIONS["build-push"], f"failed to read dockerfile: open {dockerfile}: no such file")
    tags = lines(inputs.get("tags", ""))
    pushing = inputs.get("push") == "true"
    for tag in tags if pushing else []:
        if registry_of(tag) not in state["logins"]:
            fail(ACTIONS["build-push"], f"push {tag}: unauthorized (no login to {registry_of(tag)})")
    recipe = {
        "dockerfile": hashlib.sha256(dockerfile.read_bytes()).hexdigest(),
        "inputs": {k: v for k, v in sorted(inputs.items()) if k not in SECRET_INPUTS},
        "commit": os.environ.get("GITHUB_SHA", ""),
    }
    digest = "sha256:" + hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    if pushing:
        for tag in tags:
            name = tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag
            state["images"][f"{name}@{digest}"] = {"tags": tags, "dockerfile": str(dockerfile)}
    print(f"build-push stand-in: built {dockerfile}{' and pushed ' + ', '.join(tags) if pushing else ''}")
    metadata = {"containerimage.digest": digest, "image.name": ",".join(tags)}
    output(digest=digest, imageid=digest, metadata=json.dumps(metadata))


def attest(inputs: dict[str, str], state: dict) -> None:
    name, digest = inputs.get("subject-name", ""), inputs.get("subject-digest", "")
    if not DIGEST.match(digest):
        fail(ACTIONS["attest"], f"subject-digest must be sha256:<64 hex>, got {digest!r}")
    if ":" in name.rsplit("/", 1)[-1] or "@" in name:
        fail(ACTIONS["attest"], f"subject-name must not carry a tag or digest, got {name!r}")
    if inputs.get("push-to-registry") == "true" and f"{name}@{digest}" not in state["images"]:
        fail(ACTIONS["attest"], f"{name}@{digest} is not in the registry: push it first")
    number = len(state["attestations"]) + 1
    bundle = Path(os.environ.get("RUNNER_TEMP") or ".") / f"attestation-{number}.jsonl"
    statement = {"subject": {"name": name, "digest": digest}, "predicate": "slsa-provenance"}
    bundle.write_text(json.dumps(statement))
    state["attestations"].append({"name": name, "digest": digest})
    repo = os.environ.get("GITHUB_REPOSITORY", "")
    output(
        **{
            "bundle-path": str(bundle),
            "attestation-id": str(number),
            "attestation-url": f"https://github.com/{repo}/attestations/{number}",
            "storage-record-ids": "",
        }
    )


def main(kind: str) -> None:
    given = json.loads(os.environ.get("INPUTS") or "{}")
    # As a JavaScript action reads its inputs: strings ("true", not True; "" when unset).
    inputs = {k: json.dumps(v) if isinstance(v, bool) else str(v or "") for k, v in given.items()}
    asked = {k: (bool(v) if k in SECRET_INPUTS else v) for k, v in inputs.items()}
    record(ACTIONS[kind], [], inputs=asked)
    state = load("registry.json", {"logins": {}, "images": {}, "attestations": []})
    if kind == "setup-buildx":
        output(name="modelops-standin", driver="docker-container", platforms="linux/amd64")
    elif kind == "login":
        if not inputs.get("password"):
            fail(ACTIONS["login"], "Password required")
        state["logins"][inputs.get("registry") or "docker.io"] = inputs.get("username", "")
    elif kind == "build-push":
        build_push(inputs, state)
    else:
        attest(inputs, state)
    save("registry.json", state)


if __name__ == "__main__":
    main(sys.argv[1])
