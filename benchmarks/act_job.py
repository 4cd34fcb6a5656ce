"""What one act job costs the workflow harness before it does any work: the fixed price of every job
the suite and `make demo` run (`src/modelops/runtime/forge.py`).

Three throwaway workflows in one forge, run in turns (A B C, --rounds times, after one warm-up run
of C that saves the session's venv entry), CPU from the children's rusage of this process:

  checkout  actions/checkout only: act, the checkout stand-in, git (the baseline)
  setup     + the project's setup action: the cache stand-ins (uv, DVC, venv), uv sync
  command   + `uv run --frozen modelops --help`: a first CLI call

The setup action's own cost is setup minus checkout, in the same run.

    uv run --frozen python benchmarks/act_job.py [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from modelops.runtime.forge import PROJECT_ROOT, Forge

CHECKOUT_PIN = next(
    line.split("@")[1].split()[0]
    for line in (PROJECT_ROOT / ".github/workflows/ci.yml").read_text().splitlines()
    if "actions/checkout@" in line
)
SETUP = "      - uses: ./.github/actions/setup\n"
STEPS = {
    "checkout": "",
    "setup": SETUP,
    "command": SETUP + "      - run: uv run --frozen modelops --help > /dev/null\n",
}


def workflow(name: str) -> str:
    return f"""\
name: {name}
on: pull_request
permissions: {{}}
jobs:
  {name}:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    steps:
      - uses: actions/checkout@{CHECKOUT_PIN}
        with:
          persist-credentials: false
{STEPS[name]}"""


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def run(forge: Forge, event: dict, name: str) -> tuple[float, float]:
    cpu, start = children_cpu(), time.monotonic()
    forge.run_workflow(f".github/workflows/{name}.yml", "pull_request", event).check()
    return children_cpu() - cpu, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="act-job-"))
    os.environ.setdefault("MODELOPS_HARNESS_VENV_CACHE", str(root / "venv-cache"))
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as the test session does
    forge = Forge.from_project(root / "forge")
    for name in STEPS:
        forge.write(f".github/workflows/{name}.yml", workflow(name))
    event = forge.open_pr("bench", title="bench")
    run(forge, event, "command")  # warm-up: builds and saves the venv entry once
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in STEPS}
    for _ in range(args.rounds):
        for name in STEPS:
            samples[name].append(run(forge, event, name))
    cpu = {name: statistics.median(c for c, _ in runs) for name, runs in samples.items()}
    print(f"act job, median of {args.rounds} rounds (CPU-s of act and everything it ran; wall s)")
    for name, runs in samples.items():
        print(f"  {name:9s} CPU {cpu[name]:5.2f}  wall {statistics.median(w for _, w in runs):5.2f}")
    print(f"  the setup action: {cpu['setup'] - cpu['checkout']:.2f} CPU-s a job")


if __name__ == "__main__":
    main()
