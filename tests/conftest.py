"""Shared fixtures: small real git repositories with the project's pipeline, a runner, and the
processes a test starts (stopped by PID)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelops.workspace import create_pipeline_repo
from tests.processes import Processes

# Set before anything loads scikit-learn's OpenMP runtime, which reads it once: the suite keeps both
# cores busy (two xdist workers, act jobs, servers), and an OpenMP thread that spin-waits for a
# descheduled sibling burns a core doing nothing. `modelops evaluate credit-hgb` beside a running
# suite took 12.4 CPU-s spinning, 5.8 passive. How threads wait changes no result.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

VENV_BIN = Path(sys.executable).parent
# Heaviest folders first (the README's demo alone takes ~8 minutes), so that under xdist
# (`--dist loadfile --no-loadscope-reorder`, see the Makefile) the long files start at once and
# the run ends on short unit tests, not on one worker busy with the demo while the other idles.
FIRST = ("e2e", "workflows", "integration")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Reorder whole folders only (a stable sort): a file's tests stay together and in order."""
    rank = {folder: i for i, folder in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.parent.name, len(FIRST)))


def run(cmd: list[str], cwd: Path, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    """Run a command with the project's venv on PATH; on failure show its output."""
    env = os.environ | {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env |= kw.pop("env", {})
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Git identity for test commits, a signing key; no MLflow server, user git config or bearer
    token leaks in."""
    home = tmp_path_factory.mktemp("home")
    os.environ.update(
        {
            "GIT_AUTHOR_NAME": "modelops-test",
            "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "modelops-test",
            "GIT_COMMITTER_EMAIL": "test@example.invalid",
            "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GX_ANALYTICS_ENABLED": "false",
            "DVC_NO_ANALYTICS": "1",
        }
    )
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    # Bearer tokens are on only where a test turns them on.
    for name in ("MODELOPS_TOKEN", "MODELOPS_AUTH_TOKENS_FILE"):
        os.environ.pop(name, None)
    # The shipped envs require signed models: every promotion (in-process, CLI, act job, demo)
    # signs with this session's key, which also stands in for the promote workflow's keyless
    # identity wherever signatures are checked here (`modelops.delivery.signing.local`).
    from modelops.delivery import signing

    private, public = signing.generate_key(home / "signing")
    os.environ.update({signing.KEY_ENV: str(private), signing.LOCAL_KEY_ENV: str(public)})
    # A container's PYTHONDONTWRITEBYTECODE=1 made each of the suite's CLI subprocesses compile
    # the project's modules again; caching them changes no behaviour.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    # act jobs restore their venv from the cache stand-in: one entry per uv.lock for the whole
    # session (both xdist workers), not one per forge, so only the first job builds a venv.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    os.environ["MODELOPS_HARNESS_VENV_CACHE"] = str(shared / "venv-cache")
    # Passed hyper-parameter checks (config.verdicts_dir), kept per session rather than in the
    # user's ~/.cache: every process and act job of the run shares them, as a machine's would.
    os.environ["MODELOPS_CACHE_DIR"] = str(shared / "modelops-cache")
    (home / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n")


@pytest.fixture
def processes() -> Iterator[Processes]:
    """The processes a test starts (`Processes.start`), stopped by PID when it ends."""
    started = Processes()
    yield started
    started.stop()


def make_pipeline_repo(dest: Path, remote: Path | None = None) -> Path:
    """A fresh git repo holding the project's pipeline, committed, with a local DVC remote."""
    return create_pipeline_repo(dest, remote or dest.parent / f"{dest.name}-dvc-remote")


@pytest.fixture(scope="session")
def trained_repo(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The project's pipeline reproduced once and committed (shared, treat as read-only).

    Under xdist the workers share one: the first builds it under a file lock in the run's common
    temp dir, the others wait and reuse it (a minute of training saved per extra worker).
    """
    from filelock import FileLock

    if worker_id == "master":
        return _train(tmp_path_factory.mktemp("trained") / "repo")
    shared = tmp_path_factory.getbasetemp().parent / "trained"
    with FileLock(f"{shared}.lock"):
        if not (shared / "done").exists():
            _train(shared / "repo")
            (shared / "done").touch()
    return shared / "repo"


def _train(repo: Path) -> Path:
    make_pipeline_repo(repo)
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "train"], repo)
    return repo


@pytest.fixture
def repo_copy(trained_repo: Path, tmp_path: Path) -> Path:
    """A private clone of the trained repo with the DVC cache shared read-only through a remote."""
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(trained_repo), str(clone)], tmp_path)
    run(["dvc", "remote", "add", "--local", "-f", "local", str(tmp_path / "remote")], clone)
    return clone


ROOT = Path(__file__).resolve().parents[1]


def declaration(name: str = "credit", **changes) -> dict:
    """A shipped dataset declaration as parsed YAML, with top-level keys replaced (e.g. `source`)."""
    import yaml

    return yaml.safe_load((ROOT / "data" / name / "dataset.yaml").read_text()) | changes


def synthetic(rows: int, seed: int = 0) -> dict:
    """A declaration `source` of seeded rows that follow the declaration."""
    return {"kind": "synthetic", "rows": rows, "seed": seed}


def make_params(models: dict, datasets: dict | None = None, **sections):
    """Params validated for real over in-memory declarations (default: the shipped credit one).

    Models default to `dataset: credit`; `datasets` maps name -> declaration mapping.
    """
    from modelops.config import parse_params

    datasets = datasets or {"credit": declaration()}
    models = {name: {"dataset": next(iter(datasets))} | spec for name, spec in models.items()}
    raw = {"datasets": {name: {} for name in datasets}, "models": models} | sections
    return parse_params(raw, declarations=datasets)


def train_and_package(root: Path, name: str, params, rows: int, metrics: dict) -> dict:
    """Train and package a small model for real inside `root` (the stage functions, no DVC).

    Rows are synthetic, following the model's dataset declaration. `metrics` stands in for the
    evaluate stage's output, which the model card reads.
    """
    import json

    from modelops.pipeline import ingest, package, prepare, train

    ds = params.dataset_of(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        ds.raw_file.parent.mkdir(parents=True, exist_ok=True)
        ingest.synthesize(ds, rows, 0).to_csv(ds.raw_file, index=False)
        prepare.prepare(ds, params.split(ds.name))
        train.train(name, params.model(name), ds)
        Path("models", name, "metrics.json").write_text(json.dumps(metrics))
        Path("models", name, "plots").mkdir(exist_ok=True)
        return package.package(name, params)


def project_files(dest: Path) -> None:
    """params.yaml and the dataset declarations it validates against, copied into `dest`."""
    from modelops.runtime.forge import PROJECT_ROOT

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "params.yaml", dest / "params.yaml")
    for found in PROJECT_ROOT.glob("data/*/dataset.yaml"):
        (dest / found.parent.relative_to(PROJECT_ROOT)).mkdir(parents=True, exist_ok=True)
        shutil.copy(found, dest / found.relative_to(PROJECT_ROOT))


def free_port() -> int:
    """A loopback port nobody listens on right now (servers in tests bind 127.0.0.1 only)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clone_with_outputs(trained: Path, dest: Path, origin: Path | None = None) -> tuple[Path, dict[str, str]]:
    """Clone a trained repo (through a bare `origin` when given) with its DVC outputs checked out,
    and the env of an empty artifact store and MLflow registry beside it."""
    source = trained
    if origin is not None:
        run(["git", "clone", "-q", "--bare", str(trained), str(origin)], dest.parent)
        source = origin
    run(["git", "clone", "-q", str(source), str(dest)], dest.parent)
    shutil.copytree(trained / ".dvc/cache", dest / ".dvc/cache")
    run(["dvc", "checkout", "-q"], dest)
    env = {
        "MODELOPS_ARTIFACT_STORE": str(dest.parent / "store"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{dest.parent / 'mlflow.db'}",
    }
    return dest, env


def shipped_dataset(name: str = "credit", **changes):
    """A shipped declaration as a validated `Dataset` (top-level keys replaceable)."""
    from modelops.declarations import parse_dataset

    return parse_dataset(name, declaration(name, **changes), f"data/{name}/dataset.yaml")


def credit_params(raw: dict):
    """Params for models on the shipped credit declaration, written the short way tests need:
    `data` ({source: credit|synthetic, rows, seed}) picks the declaration's source, `split` its
    split, and a flat `gate` ({minimum, max_regression, max_latency_ratio}) the binary policy."""
    from modelops.config import parse_params

    raw = dict(raw)
    data = raw.pop("data", {"source": "credit"})
    source = declaration()["source"]
    if data.get("source") == "synthetic":
        source = synthetic(data.get("rows", 10_000), data.get("seed", 0))
    split = raw.pop("split", {})
    gate = dict(raw.pop("gate", {}))
    if gate:
        ratio = gate.pop("max_latency_ratio", None)
        raw["gate"] = {"binary": gate} | ({"max_latency_ratio": ratio} if ratio else {})
    raw["datasets"] = {"credit": {"split": split}}
    raw["models"] = {name: {"dataset": "credit"} | spec for name, spec in raw["models"].items()}
    return parse_params(raw, declarations={"credit": declaration(source=source)})
