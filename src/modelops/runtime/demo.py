"""`modelops demo`: the whole loop on one laptop: propose, report, merge to deploy, revert to roll back.

Everything is the real thing except GitHub itself: a bare repository is `origin`, the workflows
run under act (`modelops.runtime.forge`, with small stand-ins for GitHub's API, CML and the setup actions),
`modelops sync` plays Argo CD + Seldon, the artifact store, DVC remote and MLflow store are
directories and a SQLite file in the workspace. The workspace is left for the user to explore.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelops.config import Params, load_params
from modelops.delivery import signing
from modelops.errors import ModelopsError
from modelops.runtime import sync as runtime
from modelops.runtime.forge import DVC_CONFIG, VENV_BIN, Forge, HarnessError, tool_env

PR_BRANCH = "propose/slower-learning-rate"
BAD_BRANCH = "experiment/one-tree"
CANARY_SHARE = 50  # the canary's share of production traffic in steps 6 and 7
ENDPOINT = "/seldon/modelops-{env}/{model}/api/v1.0/predictions"
ENVS = ("staging", "production")


class DemoError(ModelopsError):
    """A step of the demo failed; the message names the step and shows the command's output."""

    exit_code = 16


def proposal(params: Params, model: str) -> dict[str, float | int]:
    """The PR's change: a slower learning rate with more rounds (for the first shipped model,
    0.05 x 200 -> 0.03 x 300: ROC AUC 0.832 -> 0.834, log loss 0.438 -> 0.436, F1 0.590 -> 0.598;
    the gate passes it)."""
    hyper = params.model(model).hyperparams
    if not {"learning_rate", "max_iter"} <= hyper.keys():
        raise DemoError(
            f"params.yaml: models.{model}.hyperparams needs learning_rate and max_iter for the demo's "
            f"proposal (it has {sorted(hyper)}); choose another with --model"
        )
    return {"learning_rate": round(hyper["learning_rate"] * 0.6, 6), "max_iter": int(hyper["max_iter"] * 1.5)}


def served_models(params: Params, root: Path) -> list[str]:
    """The models of params.yaml that have manifests in every env, in params order."""
    envs = [p.parent for p in (root / "gitops" / "envs").glob("*/kustomization.yaml")]
    return [m for m in params.models if envs and all((e / f"{m}.yaml").exists() for e in envs)]


@dataclass
class Demo:
    """One run of the loop in `workspace` (recreated), printing as it goes.

    Two models are served throughout: the pull request changes `model`'s params; `other` is left
    alone and must answer with the same version, from the same server, at every step.
    """

    workspace: Path
    model: str | None = None
    other: str | None = None
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
        self.pids: dict[str, list[int]] = {}

    def choose(self, root: Path) -> None:
        """The changed model (default: the first served one) and the unchanged one (the next)."""
        params = load_params(root / "params.yaml")
        served = served_models(params, root)
        for name in (self.model, self.other):
            if name is not None and name not in params.models:
                raise DemoError(f"unknown model {name!r} (params.yaml has {', '.join(params.models)})")
            if name is not None and name not in served:
                raise DemoError(f"{name} has no manifests under gitops/envs/: nothing would serve it")
        self.model = self.model or served[0] if served else self.model
        rest = [m for m in served if m != self.model]
        self.other = self.other or (rest[0] if rest else None)
        if self.model is None or self.other is None or self.model == self.other:
            raise DemoError(
                "the demo needs two models with manifests in every env "
                f"(served: {', '.join(served) or 'none'}); add one with `modelops new model` "
                "or name them with --model and --other"
            )
        self.proposal = proposal(params, self.model)
        self.production_pr_branch = f"promote/production/{self.model}"

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> list[tuple[str, float]]:
        """All five steps; the runtimes are stopped at the end, the workspace is kept."""
        from modelops.runtime.forge import PROJECT_ROOT

        self.choose(PROJECT_ROOT)
        changed, other = self.model, self.other
        start = time.monotonic()
        try:
            with self.step(f"1. train {changed} and {other} on main, promote both to staging and production"):
                self.baseline()
            with self.step("2. sync production, send real held-out rows to both models"):
                self.sync("production")
                self.predict_all("production", {changed: "v1", other: "v1"})
            with self.step(f"3. propose a change to {changed} in a pull request ({other} unchanged)"):
                self.propose()
            with self.step(
                f"4. merge: promote.yml promotes {changed} only; sync staging, merge its PR, sync"
            ):
                self.merge_and_deploy()
            with self.step(f"5. revert {changed}'s production promotion, sync: its previous version answers"):
                self.revert()
            with self.step(
                f"6. canary {changed} v2 at {CANARY_SHARE}% of production with outcomes fed back; "
                "canary.yml proposes finishing it"
            ):
                self.good_canary()
            with self.step(f"7. canary a deliberately bad {changed}; canary.yml aborts it by itself"):
                self.bad_canary()
        except HarnessError as exc:
            raise DemoError(f"the local forge failed: {exc}") from None
        finally:
            if hasattr(self, "forge"):
                for env in ENVS:
                    self.cli("sync", "--env", env, "--stop", check=False)
        self.timeline.append(("total", time.monotonic() - start))
        self.say(
            f"\n== timeline (changed by the PR: {changed}; unchanged, served at v1 throughout: {other}) =="
        )
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
        # The envs require signed models: publishing signs with a local key, which stands in for
        # the promote workflow's keyless identity wherever this laptop checks signatures.
        self.signing = signing.local_env(self.workspace / "signing")
        self.env |= self.signing
        self.forge = Forge.from_project(self.workspace)
        self.forge.write(".dvc/config", DVC_CONFIG.format(remote=self.workspace / "dvc-remote"))
        self.forge.commit("DVC remote: a directory in the workspace")
        self.shell("dvc", "repro")
        self.shell("dvc", "push", "-q")
        if self.forge.git("status", "--porcelain"):
            self.forge.commit("Train every model: the baseline")
        else:  # invariant 1: a fresh clone reproduces the committed dvc.lock byte for byte
            self.say("   dvc repro reproduced the committed dvc.lock exactly: nothing to commit")
        for model in (self.model, self.other):
            self.say(f"   {model} baseline metrics: {self.metrics(model)}")
        for model in (self.model, self.other):
            for env in ENVS:
                out = self.cli("promote", model, "--env", env)
                self.say(f"   {out.splitlines()[-1] if out else env}")
        self.forge.push("main")

    def tune(self, hyperparams: dict[str, Any]) -> None:
        """Set some of the changed model's hyper-parameters in the work tree's params.yaml.

        Round-trip YAML: the diff is the changed values only, comments and order kept."""
        from ruamel.yaml import YAML

        rt = YAML()
        rt.width = 4096
        rt.indent(mapping=2, sequence=4, offset=2)
        path = self.forge.work / "params.yaml"
        doc = rt.load(path.read_text())
        doc["models"][self.model]["hyperparams"].update(hyperparams)
        with path.open("w") as out:
            rt.dump(doc, out)

    def propose(self) -> None:
        forge = self.forge
        forge.checkout(PR_BRANCH, create=True)
        self.tune(self.proposal)
        # The author's side of DVC: reproduce, push the outputs, commit the lock with the params.
        self.shell("dvc", "repro")
        self.shell("dvc", "push", "-q")
        self.say(f"   {self.model} proposed metrics: {self.metrics(self.model)}")
        event = forge.open_pr(PR_BRANCH, title=f"Tune {self.model}: {self.proposal}")
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
        forge, changed, other = self.forge, self.model, self.other
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
            env=self.signing,
            timeout=900,
        )
        if not result.ok:
            raise DemoError(f"promote.yml failed:\n{result}")
        promoted = forge.git("log", "--format=%s", f"{merged}..main", cwd=forge.origin).splitlines()
        self.say(f"   promote.yml passed in {result.duration:.0f} s: {'; '.join(promoted) or 'no commit'}")
        if any(other in line for line in promoted) or not any(changed in line for line in promoted):
            raise DemoError(f"promote.yml should promote {changed} only, it committed: {promoted}")
        prs = [p for p in forge.gh_state["prs"] if p["number"] > 1]
        for pr in prs:
            self.say(f"   it opened PR #{pr['number']}: {pr['title']}")
        if [p["headRefName"] for p in prs] != [self.production_pr_branch]:
            raise DemoError(f"expected one production PR, for {changed}: {[p['title'] for p in prs]}")
        self.sync("staging")
        self.predict_all("staging", {changed: "v2", other: "v1"})
        # "Rebase and merge" of the one-commit production PR: main gets the promotion commit itself.
        forge.git("fetch", "-q", "origin")
        forge.git("merge", "-q", "--ff-only", "origin/main")
        forge.git("cherry-pick", f"origin/{self.production_pr_branch}")
        forge.push("main")
        self.promotion = forge.head()
        self.say(f"   merged the production PR: {forge.git('log', '-1', '--format=%s')}")
        self.sync("production")
        self.predict_all("production", {changed: "v2", other: "v1"})

    def revert(self) -> None:
        forge = self.forge
        forge.git("revert", "--no-edit", self.promotion)
        forge.push("main")
        self.say(f"   {forge.git('log', '-1', '--format=%s')}")
        self.sync("production")
        self.predict_all("production", {self.model: "v1", self.other: "v1"})
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

    def code(self, *args: str) -> int:
        """Run a command in the work clone; its exit code."""
        return subprocess.run(args, cwd=self.forge.work, env=self.env, capture_output=True).returncode

    def cli(self, *args: str, check: bool = True) -> str:
        return self.shell(str(VENV_BIN / "modelops"), *args, check=check)

    def sync(self, env: str) -> None:
        out = self.cli("sync", "--env", env, "--interval", "1")
        self.say("\n".join(f"   {line}" for line in out.splitlines()))

    def auth(self, env: str) -> dict[str, str]:
        """The Authorization header of the env's runtime, if it was started with tokens (run the
        demo with MODELOPS_AUTH_TOKENS_FILE set to see auth on)."""
        return runtime.client_headers(env, self.forge.work / ".modelops/runtime")

    def predict_all(self, env: str, expect: dict[str, str]) -> None:
        """Each model answers with its expected version; the unchanged one from the same servers."""
        status = json.loads((self.forge.work / ".modelops/runtime" / f"{env}.json").read_text())
        served = httpx.get(
            status["endpoint"] + "/_modelops/status", headers=self.auth(env), timeout=10
        ).json()
        for model, version in expect.items():
            self.predict(env, model, version, status["endpoint"])
        pids = {
            d["name"]: sorted(pid for p in d["predictors"] for pid in p["pids"])
            for d in served["deployments"]
        }
        key, now = f"{env}/{self.other}", pids[self.other]
        if key not in self.pids:
            self.pids[key] = now
            self.say(f"   {self.other} in {env}: serves {expect[self.other]} (pids {now})")
        elif self.pids[key] != now:
            raise DemoError(f"{self.other} in {env} was restarted (pids {self.pids[key]} -> {now})")
        else:
            self.say(f"   {self.other} in {env}: still {expect[self.other]}, same server (pids {now})")

    def predict(self, env: str, model: str, expect: str, endpoint: str) -> None:
        """Score three held-out rows of the model's dataset through the env's endpoint."""
        import pandas as pd

        from modelops.pipeline.prepare import read_split

        ds = load_params(self.forge.work / "params.yaml").dataset_of(model)
        features = list(ds.features)
        rows = read_split(self.forge.work / ds.test_file).head(3)
        # JSON has no NaN: a missing value is null, which the server reads as missing.
        values = [
            [None if pd.isna(v) else v for v in row] for row in rows[features].astype(object).to_numpy()
        ]
        body = {"data": {"names": features, "ndarray": values}}
        url = endpoint + ENDPOINT.format(env=env, model=model)
        answer = httpx.post(url, json=body, headers=self.auth(env), timeout=30)
        if answer.status_code != 200:
            raise DemoError(f"POST {url}: {answer.status_code} {answer.text}")
        version, digest = answer.headers.get("x-model-version"), answer.headers.get("x-model-hash", "")
        data: dict[str, Any] = answer.json()["data"]
        names = data.get("names") or []
        scores = ", ".join(
            "/".join(f"{n} {p:.2f}" for n, p in zip(names, row, strict=True))
            if names
            else "/".join(f"{v:.2f}" for v in (row if isinstance(row, list) else [row]))
            for row in data["ndarray"]
        )
        self.say(f"   POST {url}\n   -> {version} (hash {digest[:12]}): {scores}")
        if version != expect:
            raise DemoError(f"{model} in {env} answered with {version}, expected {expect}")

    def metrics(self, model: str) -> str:
        from modelops.tasks import HEADLINE

        params = load_params(self.forge.work / "params.yaml")
        values = json.loads((self.forge.work / f"models/{model}/metrics.json").read_text())
        return ", ".join(f"{k} {values[k]:.4f}" for k in HEADLINE[params.dataset_of(model).task])

    # --- canaries (steps 6 and 7) ----------------------------------------------------------

    def good_canary(self) -> None:
        """v2 back as a canary; traffic with outcomes; canary.yml opens the finish PR; merge it."""
        forge, model = self.forge, self.model
        out = self.cli("promote", model, "--env", "production", "--canary", str(CANARY_SHARE), "--push")
        self.say(f"   {out.splitlines()[-1]}")
        self.sync("production")
        self.traffic("production", model)
        branch = f"canary/production/{model}"
        self.run_canary("production", expect=f"a PR from {branch}")
        pr = next((p for p in forge.gh_state["prs"] if p["headRefName"] == branch), None)
        if pr is None:
            raise DemoError(f"canary.yml opened no PR from {branch}: {forge.gh_state['prs']}")
        self.say(f"   canary.yml opened PR #{pr['number']}: {pr['title']}")
        self.say("\n".join(f"   | {line}" for line in pr["body"].splitlines()[:24]))
        forge.git("fetch", "-q", "origin")
        forge.git("merge", "-q", "--ff-only", "origin/main")
        forge.git("cherry-pick", f"origin/{branch}")
        forge.push("main")
        self.say(f"   merged it: {forge.git('log', '-1', '--format=%s')}")
        self.sync("production")
        self.predict_all("production", {model: "v2", self.other: "v1"})

    def bad_canary(self) -> None:
        """Train a one-tree model on a branch, canary it in production, feed outcomes back:
        canary.yml commits the abort to main by itself and production serves the good model only."""
        forge, model = self.forge, self.model
        forge.checkout(BAD_BRANCH, create=True)
        self.tune({"max_iter": 1})  # one tree: a near-constant guess
        self.shell("dvc", "repro", f"package@{model}")
        self.say(f"   {model} on {BAD_BRANCH} (one tree): {self.metrics(model)}")
        forge.commit(f"Experiment: {model} with one tree")
        out = self.cli("promote", model, "--env", "production", "--canary", str(CANARY_SHARE))
        self.say(f"   {out.splitlines()[-1]}")
        canary = forge.head()
        forge.checkout("main")
        self.shell("dvc", "checkout", "-q")
        forge.git("cherry-pick", canary)  # the canary's manifest edit alone reaches main
        forge.push("main")
        self.sync("production")
        self.traffic("production", model)
        before = forge.origin_sha("main")
        self.run_canary("production", expect="an abort commit on main")
        subjects = forge.git("log", "--format=%s (%an)", f"{before}..main", cwd=forge.origin).splitlines()
        if not any(s.startswith(f"abort(production): {model}") for s in subjects):
            raise DemoError(f"canary.yml should have committed the abort of {model}'s canary: {subjects}")
        self.say(f"   canary.yml committed to main: {'; '.join(subjects)}")
        body = forge.git("log", "-1", "--format=%b", "origin/main")
        self.say("\n".join(f"   | {line}" for line in body.splitlines()[:24]))
        forge.git("fetch", "-q", "origin")
        forge.git("merge", "-q", "--ff-only", "origin/main")
        self.sync("production")
        self.predict_all("production", {model: "v2", self.other: "v1"})
        served = json.loads((forge.work / ".modelops/runtime/production.json").read_text())
        status = httpx.get(
            served["endpoint"] + "/_modelops/status", headers=self.auth("production"), timeout=10
        )
        status = status.json()
        mine = next(d for d in status["deployments"] if d["name"] == model)
        versions = sorted({p["version"] for p in mine["predictors"]})
        self.say(f"   production serves {model} {', '.join(versions)} only")
        if versions != ["v2"]:
            raise DemoError(f"after the abort production should serve {model} v2 only, it serves {versions}")

    def traffic(self, env: str, model: str, batch: int = 1000, most: int = 12_000) -> None:
        """Held-out rows through the env's endpoint, their truths fed back, in batches until
        `modelops analyze` has enough to answer (the rule's sample sizes, not a fixed count)."""
        from modelops.runtime import traffic

        served = json.loads((self.forge.work / ".modelops/runtime" / f"{env}.json").read_text())
        total: dict[str, int] = {}
        for seed in range(most // batch):
            counts = traffic.send(
                self.forge.work, served["endpoint"], env, model, batch, seed=seed, headers=self.auth(env)
            )
            for version, n in counts.items():
                total[version] = total.get(version, 0) + n
            code = self.code(
                str(VENV_BIN / "modelops"),
                "analyze",
                model,
                "--env",
                env,
                "--out",
                str(self.workspace / "analysis"),
            )
            if code != 21:  # 21: wait, not enough data yet
                break
        spread = ", ".join(f"{v} {n}" for v, n in sorted(total.items()))
        self.say(f"   {sum(total.values())} requests with outcomes fed back ({spread}): enough to decide")

    def run_canary(self, env: str, expect: str) -> None:
        served = json.loads((self.forge.work / ".modelops/runtime" / f"{env}.json").read_text())
        logs = (self.forge.work / ".modelops/runtime" / env / "inference-log").resolve()
        result = self.forge.run_workflow(
            ".github/workflows/canary.yml",
            "workflow_dispatch",
            {
                "ref": "refs/heads/main",
                "inputs": {"env": env, "model": self.model},
                "repository": {
                    "full_name": self.forge.repository,
                    "name": self.forge.repository.split("/")[1],
                    "owner": {"login": self.forge.repository.split("/")[0]},
                    "default_branch": "main",
                },
            },
            variables=self.variables
            | {"MODELOPS_RUNTIME_URL": served["endpoint"], "MODELOPS_INFERENCE_LOGS": str(logs)},
            env=self.signing,
            timeout=900,
        )
        if not result.ok:
            raise DemoError(f"canary.yml failed (expected {expect}):\n{result}")
        self.say(f"   canary.yml passed in {result.duration:.0f} s")

    def stop_leftovers(self) -> None:
        """A previous run's runtimes, if it was interrupted, before its workspace is removed."""
        work = self.workspace / "work"
        if (work / ".modelops").exists():
            for env in ENVS:
                subprocess.run(
                    [str(VENV_BIN / "modelops"), "sync", "--env", env, "--stop"],
                    cwd=work,
                    env=self.env,
                    capture_output=True,
                    check=False,
                )
