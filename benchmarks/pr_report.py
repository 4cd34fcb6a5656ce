"""PR report benchmark: how long a params-only pull request waits for its report, training aside.

Runs the real `.github/workflows/model-pr.yml` under act (host mode, the same forge and stand-ins
as the workflow tests and `make demo`) on a forge whose main is trained and deployed to production:

  first    the PR changes params only, so the job trains the model (`dvc repro --pull`)
  rerun    the same event again with nothing changed (what a "Re-run jobs" click does)

For each run it reads act's per-step durations and reports the time from the workflow's start to
the posted comment, the training step inside it, and the difference (the overhead the issue budgets:
30 s for the first run, 15 s for a rerun), plus the slowest steps. The baseline in the same run is
the training step itself: `overhead_ratio` = overhead / training.

    uv run --frozen python benchmarks/pr_report.py
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path

from modelops.runtime.demo import MODEL, PROPOSAL
from modelops.runtime.forge import DVC_CONFIG, VENV_BIN, ActResult, Forge, tool_env

WORKFLOW = ".github/workflows/model-pr.yml"
COMMENT_STEP = "Post or update the PR comment"
TRAIN_STEP = "Reproduce the pipeline"
STEP = re.compile(r"^\[[^\]]+\]\s+(?:✅|❌)\s+(?:Success|Failure) - (Pre|Main|Post) (.+?) \[([0-9.hms]+)\]$")
GO_DURATION = re.compile(r"([0-9.]+)(ms|h|m|s)")


def seconds(text: str) -> float:
    """A Go duration as act prints it (1m2.5s, 3.1s, 64.4ms) in seconds."""
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in GO_DURATION.findall(text))


def steps(result: ActResult) -> list[tuple[str, float]]:
    """(phase and name, seconds) of every step act finished, in order (composite sub-steps included)."""
    found = []
    for line in result.stdout.splitlines():
        if m := STEP.match(line.strip()):
            found.append((f"{m[1]} {m[2]}", seconds(m[3])))
    return found


def breakdown(result: ActResult) -> dict[str, object]:
    """Start-to-comment time, the training inside it, and the overhead."""
    done = steps(result)
    names = [n for n, _ in done]
    comment = next(i for i, n in enumerate(names) if n.startswith(f"Main {COMMENT_STEP}"))
    after = sum(s for _, s in done[comment + 1 :])
    training = sum(s for n, s in done if n.startswith(f"Main {TRAIN_STEP}"))
    to_comment = result.duration - after
    slowest = sorted(done[: comment + 1], key=lambda x: -x[1])[:6]
    return {
        "wall_s": round(result.duration, 1),
        "to_comment_s": round(to_comment, 1),
        "training_s": round(training, 1),
        "overhead_s": round(to_comment - training, 1),
        "overhead_ratio": round((to_comment - training) / training, 2) if training else None,
        "slowest_steps": {n: round(s, 1) for n, s in slowest},
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="modelops-bench-pr-") as tmp:
        root = Path(tmp)
        env = tool_env(f"sqlite:///{root}/m.db", root / "store")
        for key in ("NAME", "EMAIL"):
            for who in ("AUTHOR", "COMMITTER"):
                os.environ.setdefault(f"GIT_{who}_{key}", "bench" if key == "NAME" else "bench@invalid")
        forge = Forge.from_project(root)
        forge.write(".dvc/config", DVC_CONFIG.format(remote=root / "dvc-remote"))
        forge.commit("DVC remote")

        def run(*args: str) -> None:
            subprocess.run(args, cwd=forge.work, env=env, check=True, capture_output=True)

        run("dvc", "repro")
        run("dvc", "push")
        forge.commit("train", allow_empty=True)
        run(str(VENV_BIN / "modelops"), "promote", MODEL, "--env", "production")
        forge.push("main")

        params = (forge.work / "params.yaml").read_text()
        for key, value in PROPOSAL.items():
            params = re.sub(rf"^(\s+{key}: )\S+", rf"\g<1>{value}", params, count=1, flags=re.MULTILINE)
        forge.write("params.yaml", params)
        event = forge.open_pr("bench/params", title="params only")
        variables = {k: env[k] for k in ("MODELOPS_ARTIFACT_STORE", "MLFLOW_TRACKING_URI")}
        results = {}
        for name in ("first", "rerun"):
            result = forge.run_workflow(
                WORKFLOW, "pull_request", event, variables=variables, cml_on_path=True, timeout=900
            ).check()
            results[name] = breakdown(result)
            print(name, json.dumps(results[name], indent=2), flush=True)
    out = {
        "workflow": WORKFLOW,
        "change": f"params only: {PROPOSAL}",
        "runs": results,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = Path(__file__).parent / "results/pr_report.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
