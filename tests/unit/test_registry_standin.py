"""The registry stand-in behind the docker and attest action stand-ins (standins/bin/registry.py):
a push needs a login, the digest is deterministic, an attestation names a pushed image by digest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from modelops.runtime.act import STANDINS

IMAGE = "ghcr.io/acme/modelops-serving"


def action(tmp_path: Path, kind: str, inputs: dict, sha: str = "1" * 40) -> tuple[int, str, dict]:
    """Run one stand-in call in `tmp_path` (the job's workspace); (exit code, stderr, outputs)."""
    out = tmp_path / "github_output"
    out.write_text("")
    env = {
        "MODELOPS_HARNESS_STATE": str(tmp_path),
        "GITHUB_OUTPUT": str(out),
        "GITHUB_SHA": sha,
        "RUNNER_TEMP": str(tmp_path),
        "INPUTS": json.dumps(inputs),
    }
    proc = subprocess.run(
        [sys.executable, str(STANDINS / "bin/registry.py"), kind],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    return proc.returncode, proc.stderr, outputs


def test_push_needs_a_login_and_the_digest_depends_on_the_dockerfile_and_commit(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    build = {"context": ".", "file": "Dockerfile", "push": True, "tags": f"{IMAGE}:sha-1"}
    code, err, _ = action(tmp_path, "build-push", build)
    assert code == 1 and "push ghcr.io/acme/modelops-serving:sha-1: unauthorized (no login to ghcr.io)" in err
    assert action(tmp_path, "login", {"registry": "ghcr.io", "username": "bot", "password": "t"})[0] == 0
    first = action(tmp_path, "build-push", build)[2]["digest"]
    assert first == action(tmp_path, "build-push", build)[2]["digest"]  # deterministic
    assert first != action(tmp_path, "build-push", build, sha="2" * 40)[2]["digest"]
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert (
        calls[1]["tool"] == "docker/login-action" and calls[1]["inputs"]["password"] is True
    )  # never the value
    assert calls[2]["inputs"] == {
        "context": ".",
        "file": "Dockerfile",
        "push": "true",
        "tags": f"{IMAGE}:sha-1",
    }
    # An attestation names the pushed image by digest, without a tag.
    attest = {"subject-name": IMAGE, "subject-digest": first, "push-to-registry": True}
    code, _, outputs = action(tmp_path, "attest", attest)
    assert code == 0 and outputs["attestation-id"] == "1" and Path(outputs["bundle-path"]).is_file()
    code, err, _ = action(tmp_path, "attest", attest | {"subject-digest": "sha256:" + "9" * 64})
    assert code == 1 and "is not in the registry: push it first" in err
    code, err, _ = action(tmp_path, "attest", attest | {"subject-name": f"{IMAGE}:sha-1"})
    assert code == 1 and "must not carry a tag or digest" in err
