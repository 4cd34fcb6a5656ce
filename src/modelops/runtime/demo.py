"""`modelops demo`: the whole loop on one laptop: propose, report, merge to deploy, revert to roll back.

Everything is the real thing except GitHub itself: a bare repository is `origin`, the workflows
run under act (`modelops.runtime.forge`, with small stand-ins for GitHub's API, CML and the setup actions),
`modelops sync` plays Argo CD + Seldon, the artifact store, DVC remote and MLflow store are
directories and a SQLite file in the workspace. The workspace is left for the user to explore.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelops.errors import ModelopsError
from modelops.pipeline import dataset
from modelops.runtime.forge import DVC_CONFIG, VENV_BIN, Forge, HarnessError, tool_env

MODEL = "credit-hgb"
# The proposal: a slower learning rate with more rounds (measured on the shipped credit data:
# ROC AUC 0.832 -> 0.834, log loss 0.438 -> 0.436, F1 0.590 -> 0.598; the gate passes it).
PROPOSAL = {"learning_rate": 0.03, "max_iter": 300}
PR_BRANCH = "propose/slower-learning-rate"
PRODUCTION_PR_BRANCH = f"promote/production/{MODEL}"
ENDPOINT = "/seldon/modelops-{env}/" + MODEL + "/api/v1.0/predictions"


class DemoError(ModelopsError):
    """A step of the demo failed; the message names the step and shows the command's output."""

    exit_code = 16


@dataclass
class Demo:
    """One run of the loop in `workspace` (recreated), printing as it goes."""

    workspace: Path
    say: Callable[[str], None] = print
    timeline: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workspace = self.workspace.resolve()
        self.store = self.workspace / "artifacts"
        self.env = tool_env(f"sqlite:///{self.workspace / 'mlflow.db'}", self.store)
        self.env |= {"GX_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1"}
        for key, value in (("NAME", "modelops demo"), ("EMAIL", "demo@modelops.invalid")):
            for who in ("AUTHOR", "COMMITTER"):
                self.env.setdefault(f"GIT_{who}_{key}", value)
                os.environ.setdefault(f"GIT_{who}_{key}", value)  # the forge's own git calls
        self.variables = {k: self.env[k] for k in ("MODELOPS_ARTIFACT_STORE", "MLFLOW_TRACKING_URI")}

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> list[tuple[str, float]]:
        """All six steps; the runtimes are stopped at the end, the workspace is kept."""
        start = time.monotonic()
        try:
            with self.step("1. train the baseline on main, promote it to staging and production"):
                self.baseline()
            with self.step("2. sync production, send real predictions"):
                self.sync("production")
                self.predict("production", expect="v1")
            with self.step("3. propose a better model in a pull request (model-pr.yml under act)"):
                self.propose()
            with self.step("4. merge: promote.yml under act, sync staging, merge the production PR, sync"):
                self.merge_and_deploy()
            with self.step("5. revert the production promotion, sync: the previous model answers"):
                self.revert()
        except HarnessError as exc:
            raise DemoError(f"the local forge failed: {exc}") from None
        finally:
            if hasattr(self, "forge"):
                for env in ("staging", "production"):
                    self.cli("sync", "--env", env, "--stop", check=False)
        self.timeline.append(("total", time.monotonic() - start))
        self.say("\n== timeline ==")
        for name, seconds in self.timeline:
            self.say(f"{seconds:7.1f} s  {name}")
        self.say(f"\nworkspace: {self.workspace}  (work/ is the clone, origin.git the bare origin)")
        self.say(f"  cd {self.forge.work} && modelops sync --env production   # serve it again")
        self.say(f"  cd {self.forge.work} && modelops status                  # git, MLflow, runtime")
        return self.timeline

    def baseline(self) -> None:
        if self.workspace.exists():
            self.stop_leftovers()
            shutil.rmtree(self.workspace)
        self.workspace.mkdir(parents=True)
        self.forge = Forge.from_project(self.workspace)
        self.forge.write(".dvc/config", DVC_CONFIG.format(remote=self.workspace / "dvc-remote"))
        self.forge.commit("DVC remote: a directory in the workspace")
        self.shell("dvc", "repro")
        self.shell("dvc", "push", "-q")
        if self.forge.git("status", "--porcelain"):
            self.forge.commit(f"Train {MODEL}: the baseline")
        else:  # invariant 1: a fresh clone reproduces the committed dvc.lock byte for byte
            self.say("   dvc repro reproduced the committed dvc.lock exactly: nothing to commit")
        self.say(f"   baseline metrics: {self.metrics()}")
        for env in ("staging", "production"):
            out = self.cli("promote", MODEL, "--env", env)
            self.say(f"   {out.splitlines()[-1] if out else env}")
        self.forge.push("main")

    def propose(self) -> None:
        forge = self.forge
        forge.checkout(PR_BRANCH, create=True)
        params = (forge.work / "params.yaml").read_text()
        for key, value in PROPOSAL.items():
            params, n = re.subn(rf"^(\s+{key}: )\S+", rf"\g<1>{value}", params, count=1, flags=re.MULTILINE)
            if n != 1:
                raise DemoError(f"params.yaml: expected a `{key}:` line under models.{MODEL}.hyperparams")
        forge.write("params.yaml", params)
        # The author's side of DVC: reproduce, push the outputs, commit the lock with the params.
        self.shell("dvc", "repro")
        self.shell("dvc", "push", "-q")
        self.say(f"   proposed metrics: {self.metrics()}")
        event = forge.open_pr(PR_BRANCH, title=f"Tune {MODEL}: {PROPOSAL}")
        result = forge.run_workflow(
            ".github/workflows/model-pr.yml",
            "pull_request",
            event,
            variables=self.variables,
            cml_on_path=True,
            timeout=900,
        )
        comments = result.cml_comments.get(f"pr/{event['number']}", [])
        if not result.ok or not comments:
            raise DemoError(f"model-pr.yml did not pass and post its report:\n{result}")
        self.report = comments[-1]
        self.say(f"   model-pr.yml passed in {result.duration:.0f} s; the comment it posted on PR #1:\n")
        self.say("\n".join(f"   | {line}" for line in self.report.splitlines()))

    def merge_and_deploy(self) -> None:
        forge = self.forge
        forge.checkout("main")
        before = forge.head()
        forge.git("merge", "-q", "--no-ff", PR_BRANCH, "-m", f"Merge pull request #1 from {PR_BRANCH}")
        forge.push("main")
        merged = forge.head()
        forge.set_api_response(f"repos/{forge.repository}/commits/{merged}/pulls", [{"number": 1}])
        result = forge.run_workflow(
            ".github/workflows/promote.yml",
            "push",
            forge.push_event(before=before),
            variables=self.variables,
            timeout=900,
        )
        if not result.ok:
            raise DemoError(f"promote.yml failed:\n{result}")
        self.say(f"   promote.yml passed in {result.duration:.0f} s: {forge.origin_log()[0]}")
        prs = [p for p in forge.gh_state["prs"] if p["headRefName"] == PRODUCTION_PR_BRANCH]
        self.say(
            f"   it opened PR #{prs[-1]['number']}: {prs[-1]['title']}" if prs else "   (no production PR)"
        )
        self.sync("staging")
        self.predict("staging", expect="v2")
        # "Rebase and merge" of the one-commit production PR: main gets the promotion commit itself.
        forge.git("fetch", "-q", "origin")
        forge.git("merge", "-q", "--ff-only", "origin/main")
        forge.git("cherry-pick", f"origin/{PRODUCTION_PR_BRANCH}")
        forge.push("main")
        self.promotion = forge.head()
        self.say(f"   merged the production PR: {forge.git('log', '-1', '--format=%s')}")
        self.sync("production")
        self.predict("production", expect="v2")

    def revert(self) -> None:
        forge = self.forge
        forge.git("revert", "--no-edit", self.promotion)
        forge.push("main")
        self.say(f"   {forge.git('log', '-1', '--format=%s')}")
        self.sync("production")
        self.predict("production", expect="v1")
        status = self.cli("status")
        self.say("\n".join(f"   {line}" for line in status.splitlines()))

    # --- helpers -------------------------------------------------------------------------

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"\n== {name} ==")
        t0 = time.monotonic()
        yield
        self.timeline.append((name, time.monotonic() - t0))

    def shell(self, *args: str, check: bool = True) -> str:
        """Run a command in the work clone with the demo's env; a failure raises with its output."""
        proc = subprocess.run(args, cwd=self.forge.work, env=self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise DemoError(f"`{' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout.strip()

    def cli(self, *args: str, check: bool = True) -> str:
        return self.shell(str(VENV_BIN / "modelops"), *args, check=check)

    def sync(self, env: str) -> None:
        out = self.cli("sync", "--env", env, "--interval", "1")
        self.say("\n".join(f"   {line}" for line in out.splitlines()))

    def predict(self, env: str, expect: str) -> None:
        """Score three held-out rows through the env's endpoint; the answer must be `expect`'s."""
        import pandas as pd

        status = json.loads((self.forge.work / ".modelops/runtime" / f"{env}.json").read_text())
        rows = pd.read_parquet(self.forge.work / dataset.TEST_FILE).head(3)
        features = list(dataset.FEATURES)
        # JSON has no NaN: a missing value is null, which the server reads as missing.
        values = [
            [None if pd.isna(v) else v for v in row] for row in rows[features].astype(object).to_numpy()
        ]
        body = {"data": {"names": features, "ndarray": values}}
        url = status["endpoint"] + ENDPOINT.format(env=env)
        answer = httpx.post(url, json=body, timeout=30)
        if answer.status_code != 200:
            raise DemoError(f"POST {url}: {answer.status_code} {answer.text}")
        version, digest = answer.headers.get("x-model-version"), answer.headers.get("x-model-hash", "")
        data: dict[str, Any] = answer.json()["data"]
        probs = ", ".join(
            "/".join(f"{name} {p:.2f}" for name, p in zip(data["names"], row, strict=True))
            for row in data["ndarray"]
        )
        self.say(f"   POST {url}\n   -> {version} (hash {digest[:12]}): {probs}")
        if version != expect:
            raise DemoError(f"{env} answered with {version}, expected {expect}")

    def metrics(self) -> str:
        values = json.loads((self.forge.work / f"models/{MODEL}/metrics.json").read_text())
        return ", ".join(f"{k} {values[k]:.4f}" for k in ("roc_auc", "f1", "log_loss"))

    def stop_leftovers(self) -> None:
        """A previous run's runtimes, if it was interrupted, before its workspace is removed."""
        work = self.workspace / "work"
        if (work / ".modelops").exists():
            for env in ("staging", "production"):
                subprocess.run(
                    [str(VENV_BIN / "modelops"), "sync", "--env", env, "--stop"],
                    cwd=work,
                    env=self.env,
                    capture_output=True,
                    check=False,
                )
