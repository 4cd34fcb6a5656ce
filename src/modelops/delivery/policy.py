"""`modelops policy check`: the promotion policy a pull request that touches gitops/ must keep.

policy.yml runs it on every such pull request (a required status check), comparing the work tree
with the branch the pull request merges into (`--base`). Each rule is a function from the `Change`
to an `Outcome`: refusals (rule, model, env, file, the problem and what to do) and lines saying
what it checked. The rules (`RULES`, in the order they report):

- `staging-first`: along `policy.order` in params.yaml, an env may only receive a content hash
  the env before it has *served*: the main or canary predictor of that env's patch file in some
  commit of the base's first-parent history (what the branch actually deployed). A pull request
  that puts a hash into both envs at once is refused: its own staging commit has served nothing.
  Always allowed: the all-zero unpromoted hash, and a hash the env itself served before (a
  rollback). A predictor the env already had at the base (a shadow being finished) is not new.
- `canary-share`: a canary takes between `policy.canary_share.min` and `.max` percent of its
  env's traffic, a shadow none.
- `image-digest`: the rendered envs of `image_rules.DIGEST_ENVS` run every image by digest.
- `signatures`: an env whose manifests state a signer policy receives only releases whose
  signature sits beside them in the artifact store (the job needs read access to the store).

Exit codes: 0 passed; 22 refused; 23 the check cannot run (an unknown base, a shallow clone, an env
of `policy.order` missing); 6 gitops/ does not render; 2 params.yaml is invalid.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops.config import Params
from modelops.delivery import image_rules, manifests, signing
from modelops.delivery.patches import Extra, Release, parse_state
from modelops.errors import ModelopsError

GITOPS = Path("gitops")
SERVING = ("main", "canary")  # predictors that answer clients; a shadow's answers are discarded


class PolicyRefused(ModelopsError):
    """`modelops policy check`: the pull request breaks the promotion policy; the message lists
    every refusal with what to do."""

    exit_code = 22


class PolicyError(ModelopsError):
    """`modelops policy check` cannot judge: unknown base, shallow history, an env of
    `policy.order` missing from gitops/envs/."""

    exit_code = 23


@dataclass(frozen=True)
class Refusal:
    """One thing the pull request may not do, and what to do instead."""

    rule: str
    model: str
    env: str
    file: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.model} in {self.env} ({self.file}): {self.problem}. To fix: {self.fix}"


@dataclass
class Outcome:
    """What one rule found: refusals, and lines saying what it checked (printed on a pass)."""

    refusals: list[Refusal] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)


class Change:
    """The pull request as the rules see it: gitops/ in the work tree against the base's history."""

    def __init__(self, base: str, params: Params, root: Path = Path()) -> None:
        self.root, self.base, self.params = Path(root), base, params
        if self._git("rev-parse", "--is-shallow-repository") == "true":
            raise PolicyError(
                "the clone is shallow: the policy reads gitops/ history; fetch it all "
                "(actions/checkout with fetch-depth: 0, or `git fetch --unshallow`)"
            )
        try:
            self.base_sha = self._git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
        except PolicyError:
            raise PolicyError(
                f"--base {base}: no such commit in this clone (fetch it first, e.g. `git fetch origin main`)"
            ) from None
        self.gitops = self.root / GITOPS
        self.envs = manifests.envs(self.gitops)
        self._rendered: dict[str, list[dict[str, Any]]] = {}
        self._history: dict[str, list[tuple[str, str | None]]] = {}

    def _git(self, *args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True)
        if proc.returncode != 0:
            why = proc.stderr.strip() or f"exit code {proc.returncode}"
            raise PolicyError(f"git {' '.join(args)}: {why}")
        return proc.stdout.strip()

    def rendered(self, env: str) -> list[dict[str, Any]]:
        """The env's objects as kustomize renders the work tree (once per env)."""
        if env not in self._rendered:
            self._rendered[env] = manifests.render(env, self.gitops)
        return self._rendered[env]

    def patch(self, env: str, model: str) -> str:
        """The repository-relative path of a model's patch file in an env."""
        return f"{GITOPS}/envs/{env}/{model}.yaml"

    def models(self, env: str) -> list[str]:
        """The models with a patch file in the env, in the work tree."""
        folder = self.gitops / "envs" / env
        return sorted(p.stem for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")

    def state(self, env: str, model: str) -> tuple[Release, list[Extra]]:
        """What the env's patch file says a model serves, in the work tree."""
        rel = self.patch(env, model)
        return parse_state((self.root / rel).read_text(), rel)

    def predictors(self, env: str, model: str) -> Iterator[tuple[str, Release]]:
        """(predictor name, release) of main and every canary or shadow, in the work tree."""
        main, extras = self.state(env, model)
        yield "main", main
        for extra in extras:
            yield extra.name, extra.release

    def history(self, env: str, model: str) -> list[tuple[str, str | None]]:
        """(commit, file text) of every state of the patch file on the base's first-parent line,
        newest first, so the first is its state at the base (text None: that commit deleted it)."""
        rel = self.patch(env, model)
        if rel in self._history:
            return self._history[rel]
        shas = self._git("log", "--first-parent", "--format=%H", self.base_sha, "--", rel).split()
        self._history[rel] = []
        if not shas:
            return []
        batch = "".join(f"{sha}:{rel}\n" for sha in shas)
        proc = subprocess.run(
            ["git", "cat-file", "--batch"], cwd=self.root, input=batch.encode(), capture_output=True
        )
        out, pos = proc.stdout, 0
        states: list[tuple[str, str | None]] = []
        for sha in shas:
            header_end = out.index(b"\n", pos)
            header = out[pos:header_end].split()
            pos = header_end + 1
            if header[-1] == b"missing":  # the commit deleted the file
                states.append((sha, None))
                continue
            size = int(header[2])
            states.append((sha, out[pos : pos + size].decode()))
            pos += size + 1
        self._history[rel] = states
        return states

    def served(self, env: str, model: str, roles: tuple[str, ...] = SERVING) -> dict[str, tuple[str, str]]:
        """content hash -> (commit, version) of what the env's `roles` served on the base's line."""
        found: dict[str, tuple[str, str]] = {}
        for sha, text in reversed(self.history(env, model)):  # oldest first: keep the first commit
            if text is None:
                continue
            main, extras = self._parse(text, f"{sha[:12]}:{self.patch(env, model)}")
            for name, release in [("main", main), *((e.name, e.release) for e in extras)]:
                if name in roles:
                    found.setdefault(release.content_hash, (sha, release.version))
        return found

    @staticmethod
    def _parse(text: str, where: str) -> tuple[Release, list[Extra]]:
        """A past state of a patch file; one the reader cannot parse means the check cannot judge."""
        try:
            return parse_state(text, where)
        except ModelopsError as exc:
            raise PolicyError(f"cannot read the history: {exc}") from None

    def received(self, env: str) -> list[tuple[str, str, Release]]:
        """(model, predictor, release) the env gets with this change: work-tree predictors whose
        content hash the env's patch file did not hold at the base, in any predictor."""
        out = []
        for model in self.models(env):
            history = self.history(env, model)
            before: set[str] = set()
            if history and history[0][1] is not None:
                main, extras = self._parse(history[0][1], f"{self.base}:{self.patch(env, model)}")
                before = {main.content_hash, *(e.release.content_hash for e in extras)}
            out += [(model, n, r) for n, r in self.predictors(env, model) if r.content_hash not in before]
        return out


def receives(env: str, model: str, predictor: str, release: Release) -> str:
    """How a rule's checked lines and refusals name one received release."""
    return f"{env} receives {model} {release.version} ({release.content_hash[:12]}, {predictor})"


def staging_first(change: Change) -> Outcome:
    """Each env of `policy.order` receives only content hashes the env before it has served."""
    outcome = Outcome()
    order = change.params.policy.order
    missing = [env for env in order if env not in change.envs]
    if missing:
        raise PolicyError(
            f"params.yaml policy.order names {', '.join(missing)}, but {change.gitops / 'envs'} has "
            f"{', '.join(change.envs) or 'no env'}"
        )
    for before, env in itertools.pairwise(order):
        received = change.received(env)
        if not received:
            outcome.checked.append(f"{env} receives no new content hash")
        for model, predictor, release in received:
            what = receives(env, model, predictor, release)
            if release.content_hash == manifests.UNPROMOTED_HASH:
                outcome.checked.append(f"{what}: the unpromoted placeholder")
            elif hit := change.served(before, model).get(release.content_hash):
                outcome.checked.append(f"{what}: {before} served it (commit {hit[0][:12]}, {hit[1]})")
            elif hit := change.served(env, model).get(release.content_hash):
                outcome.checked.append(f"{what}: {env} served it before (commit {hit[0][:12]}), a rollback")
            else:
                outcome.refusals.append(
                    Refusal(
                        "staging-first",
                        model,
                        env,
                        change.patch(env, model),
                        f"the {predictor} predictor would serve content hash {release.content_hash} "
                        f"({release.version}), which {before} never served: no commit of "
                        f"{change.patch(before, model)} on {change.base} has it as main or canary",
                        f"promote it to {before} first (`modelops promote {model} --env {before}`, which "
                        f"promote.yml runs on merge), let it serve there, then propose it for {env} again",
                    )
                )
    return outcome


def canary_share(change: Change) -> Outcome:
    """Every canary takes a share of its env's traffic within bounds; a shadow takes none."""
    outcome = Outcome()
    bounds = change.params.policy.canary_share
    for env in change.envs:
        for model in change.models(env):
            for extra in change.state(env, model)[1]:
                if extra.name == "shadow":
                    ok, allowed = extra.traffic == 0, "0%"
                else:
                    ok, allowed = bounds.min <= extra.traffic <= bounds.max, f"{bounds.min}% to {bounds.max}%"
                line = f"{model} in {env}: {extra.name} {extra.release.version} takes {extra.traffic}%"
                if ok:
                    outcome.checked.append(f"{line} (allowed: {allowed})")
                    continue
                outcome.refusals.append(
                    Refusal(
                        "canary-share",
                        model,
                        env,
                        change.patch(env, model),
                        f"the {extra.name} takes {extra.traffic}% of the traffic; allowed: {allowed} "
                        "(params.yaml policy.canary_share)",
                        f"give it a share in bounds (`modelops promote {model} --env {env} --canary N` "
                        "rewrites the block, main takes the rest), or finish it (`--finish`)",
                    )
                )
    if not outcome.checked and not outcome.refusals:
        outcome.checked.append("no canary or shadow in any env")
    return outcome


def image_digest(change: Change) -> Outcome:
    """The envs that must run images by digest do, in every container they render."""
    outcome = Outcome()
    for env in sorted(image_rules.DIGEST_ENVS & set(change.envs)):
        objects = change.rendered(env)
        for obj in objects:
            meta = obj.get("metadata") or {}
            model = (meta.get("labels") or {}).get("modelops.dev/model") or meta.get("name", "?")
            for where, problem, fix in image_rules.findings(obj, env):
                outcome.refusals.append(
                    Refusal(
                        "image-digest",
                        model,
                        env,
                        f"{GITOPS}/envs/{env}/kustomization.yaml",
                        f"{obj.get('kind')}/{meta.get('name')} {where}: {problem}",
                        fix,
                    )
                )
        for image, count in sorted(image_rules.digests(objects).items()):
            unbuilt = image.endswith(image_rules.UNBUILT)
            note = " (the shipped placeholder: no image built yet)" if unbuilt else ""
            outcome.checked.append(f"{env} runs {image} in {count} container(s){note}")
    return outcome


def signatures(change: Change) -> Outcome:
    """Every release an env that requires signed models receives has its signature in the store.

    Presence only: who signed is checked where the bytes are used (server, sync, batch) and by
    `modelops promote`. A store this job cannot read means the rule cannot judge (exit 23)."""
    outcome = Outcome()
    for env in change.envs:
        if not signing.required(change.rendered(env)):
            outcome.checked.append(f"{env} requires no signature")
            continue
        received = change.received(env)
        if not received:
            outcome.checked.append(f"{env} requires signatures and receives no new content hash")
        for model, predictor, release in received:
            what = receives(env, model, predictor, release)
            if release.content_hash == manifests.UNPROMOTED_HASH:
                outcome.checked.append(f"{what}: the unpromoted placeholder")
                continue
            try:
                signed = signing.present(release.uri)
            except ModelopsError as exc:
                raise PolicyError(f"[signatures] {model} in {env}: {exc}") from None
            if signed:
                outcome.checked.append(f"{what}: signed ({signing.signature_uri(release.uri)})")
            else:
                outcome.refusals.append(
                    Refusal(
                        "signatures",
                        model,
                        env,
                        change.patch(env, model),
                        f"{env} requires signed models, and no signature sits beside {release.uri} "
                        f"(expected {signing.signature_uri(release.uri)})",
                        "publish it through `modelops promote` with a signer (promote.yml signs "
                        "keyless on main; MODELOPS_SIGNING_KEY locally), then propose it again",
                    )
                )
    return outcome


Rule = Callable[[Change], Outcome]
# The rules, in the order they report. Each takes the Change and returns an Outcome; to add one,
# write it here and list it.
RULES: tuple[tuple[str, Rule], ...] = (
    ("staging-first", staging_first),
    ("canary-share", canary_share),
    ("image-digest", image_digest),
    ("signatures", signatures),
)


def check(base: str, params: Params, root: Path = Path()) -> dict[str, Outcome]:
    """Every rule's outcome for the work tree against `base` (nothing is written)."""
    change = Change(base, params, root)
    return {name: rule(change) for name, rule in RULES}


def enforce(outcomes: dict[str, Any], base: str) -> list[str]:
    """The lines a passing check prints; raises PolicyRefused listing every refusal otherwise."""
    refusals = [r for outcome in outcomes.values() for r in outcome.refusals]
    if refusals:
        listed = "\n".join(f"  - {r}" for r in refusals)
        raise PolicyRefused(f"policy check against {base}: {len(refusals)} refusal(s):\n{listed}")
    lines = [f"policy check against {base}: passed {len(outcomes)} rule(s)"]
    lines += [f"  {name}: {line}" for name, outcome in outcomes.items() for line in outcome.checked]
    return lines
