"""`modelops image pin`: the digest lands in every env's kustomization as one revertable commit;
bad input is refused and writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from modelops.cli import app
from modelops.delivery import image
from tests.conftest import run

ROOT = Path(__file__).resolve().parents[2]
DIGEST, OTHER = "sha256:" + "e" * 64, "sha256:" + "f" * 64
REPOSITORY = "ghcr.io/acme/modelops-serving"
KUSTOMIZATIONS = [
    "gitops/envs/production/kustomization.yaml",
    "gitops/envs/staging-kserve/kustomization.yaml",
    "gitops/envs/staging/kustomization.yaml",
]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "gitops", root / "gitops")
    run(["git", "init", "-q", "-b", "main"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "initial"], root)
    monkeypatch.chdir(root)
    return root


def pin(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["image", "pin", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def gitops(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / "gitops").rglob("*"))
        if p.is_file()
    }


def entry(root: Path, env: str) -> dict:
    data = yaml.safe_load((root / "gitops" / "envs" / env / "kustomization.yaml").read_text())
    [found] = [e for e in data["images"] if e["name"] == "modelops-serving"]
    return found


def test_a_pin_is_one_commit_of_the_kustomizations_and_a_revert_restores_them(repo: Path) -> None:
    before = gitops(repo)
    code, out = pin("--digest", DIGEST, "--image", REPOSITORY, "--source-commit", "1a2b3c")
    assert code == 0, out
    assert f"image: pin modelops-serving {DIGEST[:19]} in production, staging, staging-kserve" in out
    assert run(["git", "show", "--format=", "--name-only", "HEAD"], repo).stdout.split() == KUSTOMIZATIONS
    body = run(["git", "log", "-1", "--format=%B"], repo).stdout
    for trailer in (
        f"Image: {REPOSITORY}@{DIGEST}",
        "Envs: production, staging, staging-kserve",
        "Source-Commit: 1a2b3c",
    ):
        assert trailer in body
    for env in ("staging", "production", "staging-kserve"):
        assert entry(repo, env) == {"name": "modelops-serving", "newName": REPOSITORY, "digest": DIGEST}
    # Only those values changed: the files' comments and layout are as they were.
    diff = run(["git", "diff", "-U0", "HEAD~1", "HEAD"], repo).stdout
    edited = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert sorted(ln[1:].strip().split(":")[0] for ln in edited) == ["digest"] * 6 + ["newName"] * 6
    run(["git", "revert", "--no-edit", "HEAD"], repo)
    assert gitops(repo) == before


def test_pinning_what_runs_makes_no_commit_and_env_narrows_the_pin(repo: Path) -> None:
    pin("--digest", DIGEST, "--image", REPOSITORY)
    head = run(["git", "rev-parse", "HEAD"], repo).stdout
    code, out = pin("--digest", DIGEST)
    assert code == 0 and "already run(s)" in out and run(["git", "rev-parse", "HEAD"], repo).stdout == head
    code, out = pin("--digest", OTHER, "--env", "staging")  # the repository stays what it was
    assert code == 0, out
    assert entry(repo, "staging") == {"name": "modelops-serving", "newName": REPOSITORY, "digest": OTHER}
    assert entry(repo, "production")["digest"] == DIGEST


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--digest", "sha256:abc"], "--digest 'sha256:abc': expected sha256:<64 lowercase hex digits>"),
        (["--digest", DIGEST, "--image", f"{REPOSITORY}:1.0"], "expected a registry repository without tag"),
        (
            ["--digest", DIGEST, "--env", "qa"],
            "unknown env(s) qa (known: production, staging, staging-kserve)",
        ),
        (["--digest", DIGEST, "--open-pr"], "--open-pr needs --branch NAME"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(repo: Path, args: list[str], message: str) -> None:
    before, head = gitops(repo), run(["git", "rev-parse", "HEAD"], repo).stdout
    code, out = pin(*args)
    assert code == 9 and message in out, out
    assert gitops(repo) == before and run(["git", "rev-parse", "HEAD"], repo).stdout == head


def test_the_pr_body_says_what_merging_runs_and_how_to_verify_it() -> None:
    pinned = image.Pinned(
        "c0ffee", "--- a\n+++ b\n", f"{REPOSITORY}@{DIGEST}", ["staging", "production"], "s"
    )
    body = image.pr_body(pinned, "1a2b3c", "https://github.com/acme/modelops/actions/runs/9", "acme/modelops")
    assert body.startswith(
        "Merging this makes staging, production run the serving image built from 1a2b3c by "
        "https://github.com/acme/modelops/actions/runs/9:"
    )
    assert f"gh attestation verify oci://{REPOSITORY}@{DIGEST} --repo acme/modelops" in body
    assert "```diff\n--- a\n+++ b\n```" in body
