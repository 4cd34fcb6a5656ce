"""PR feedback time with many models: does a pull request that touches one model pay for the others?

Two scratch repositories from the project's pipeline, trained on `main` (not timed):
  one   the binary model alone, on its dataset
  ten   the same model plus nine others on all shipped datasets (every task), untouched by the PR
Then the same pull request in both: one hyper-parameter of the shared model. The time measured is
model-pr.yml's feedback work, run as its steps run it: validate (`dvc repro --glob 'validate@*'`),
`dvc repro`, `modelops report --base main --env production`, `modelops gate`.
Each repetition sets a new value, so training really runs (no run-cache hit); runs alternate
one/ten/ten/one and the ratio is ten / one of the medians.

    uv run --frozen python benchmarks/pr_feedback.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from scratch import edit_yaml, pipeline_repo

from modelops.workspace import PROJECT_ROOT, venv_tool

# The nine untouched models: one more of each fitting family per shipped dataset, small enough to
# train quickly but real.
EXTRA = {
    "binary": [("logistic_regression", {"max_iter": 500}), ("random_forest", {"n_estimators": 30})],
    "multiclass": [("hist_gradient_boosting", {"max_iter": 50}), ("extra_trees", {"n_estimators": 30})],
    "regression": [("ridge", {"alpha": 1.0}), ("random_forest", {"n_estimators": 30})],
}


def models() -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(the PR's model, the one-model params entries, the ten-model params entries)."""
    from modelops.config import load_params

    shipped = load_params(PROJECT_ROOT / "params.yaml")
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["models"]
    target = next(m for m in raw if shipped.dataset_of(m).task == "binary")
    ten = dict(raw)
    for name in raw:
        task = shipped.dataset_of(name).task
        for estimator, hyper in EXTRA[task]:
            ten[f"{raw[name]['dataset']}-{estimator.replace('_', '-')}"] = {
                "dataset": raw[name]["dataset"],
                "estimator": estimator,
                "seed": 0,  # dvc.yaml's evaluate stage reads models.<m>.seed and .threads
                "threads": 1,
                "hyperparams": hyper,
            }
    extra = [m for m in ten if m not in raw]
    for i in range(10 - len(ten)):  # top up to ten with seeds of the target's family
        # a deep copy: a shared dict would be dumped as a YAML alias, and one edit would change both
        ten[f"{target}-seed{i + 1}"] = copy.deepcopy(raw[target]) | {"seed": i + 1}
    while len(ten) > 10:
        ten.pop(extra.pop())
    return target, {target: raw[target]}, ten


def sh(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"{cmd} failed in {cwd}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def trained(base: Path, name: str, entries: dict[str, Any]) -> Path:
    """A repo with `entries`, reproduced and committed on main, then on a branch `pr`."""
    repo = pipeline_repo(base / name, entries)
    sh([venv_tool("dvc"), "repro"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "train"], repo)
    sh(["git", "checkout", "-qb", "pr"], repo)
    return repo


STEPS = {
    "validate": ["dvc", "repro", "--glob", "validate@*"],
    "repro": ["dvc", "repro"],
    "report": ["modelops", "report", "--base", "main", "--env", "production", "--out", "report"],
    "gate": ["modelops", "gate", "--report", "report/report.json"],
}


def feedback(repo: Path, target: str, value: float) -> dict[str, float]:
    """Commit the PR's change (a new learning rate), then time each step of model-pr.yml."""
    edit_yaml(repo / "params.yaml", lambda d: d["models"][target]["hyperparams"].update(learning_rate=value))
    sh(["git", "commit", "-qam", f"learning_rate {value}"], repo)
    times: dict[str, float] = {}
    for step, cmd in STEPS.items():
        start = time.perf_counter()
        proc = sh([venv_tool(cmd[0]), *cmd[1:]], repo, check=step != "gate")
        times[step] = time.perf_counter() - start
        if step == "gate" and proc.returncode not in (0, 10):
            raise SystemExit(f"gate failed to run:\n{proc.stderr}")
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "outputs", "--allow-empty"], repo)
    return times | {"total": sum(times.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="PR runs per repo (ABBA order)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks/results/pr_feedback.json")
    args = parser.parse_args()
    target, one, ten = models()
    runs: dict[str, list[dict[str, float]]] = {"one": [], "ten": []}
    with tempfile.TemporaryDirectory(prefix="modelops-bench-") as tmp:
        repos = {"one": trained(Path(tmp), "one", one), "ten": trained(Path(tmp), "ten", ten)}
        order = ["one", "ten", "ten", "one"] * args.repeats
        for i, kind in enumerate(order[: 2 * args.repeats]):
            runs[kind].append(feedback(repos[kind], target, round(0.06 + 0.01 * i, 2)))
            print(
                f"  {kind} run {i}: {json.dumps({k: round(v, 1) for k, v in runs[kind][-1].items()})}",
                file=sys.stderr,
            )
    median = {k: {s: statistics.median(r[s] for r in v) for s in v[0]} for k, v in runs.items()}
    result = {
        "models": {"one": len(one), "ten": len(ten)},
        "changed_model": target,
        "median_s": {k: {s: round(x, 2) for s, x in v.items()} for k, v in median.items()},
        "ratio": round(median["ten"]["total"] / median["one"]["total"], 3),
    }
    print("| repo | models | validate (s) | dvc repro (s) | report (s) | gate (s) | total (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in ("one", "ten"):
        m = median[kind]
        print(
            f"| {kind} | {result['models'][kind]} | {m['validate']:.1f} | {m['repro']:.1f} | "
            f"{m['report']:.1f} | {m['gate']:.1f} | {m['total']:.1f} |"
        )
    print(f"\nratio ten / one: **{result['ratio']}** (target <= 1.15)")
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, **result}, indent=2) + "\n")


if __name__ == "__main__":
    main()
