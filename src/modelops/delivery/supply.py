"""`modelops image pin` and `modelops policy check`: the supply chain's verbs.

Two small sub-apps, so the main CLI needs one line for each; the work is in `delivery.image` and
`delivery.policy`, imported lazily like every verb's module so `modelops --help` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelops.app import ParamsOpt, errors_to_exit

image_app = typer.Typer(
    help="The serving image, pinned by digest in gitops/ through a commit.", no_args_is_help=True
)
policy_app = typer.Typer(
    help="The promotion policy pull requests to gitops/ must keep.", no_args_is_help=True
)


@image_app.command("pin")
@errors_to_exit
def pin(
    digest: Annotated[str, typer.Option("--digest", help="the image's digest, sha256:<64 hex>")],
    image: Annotated[
        str | None, typer.Option("--image", help="registry repository, no tag (default: each env's current)")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="only this env (repeatable; default all)")
    ] = None,
    source_commit: Annotated[
        str | None, typer.Option(help="the commit the image was built from (a trailer, the PR body)")
    ] = None,
    run_url: Annotated[str | None, typer.Option(help="the build's run, for the PR body")] = None,
    repo: Annotated[
        str | None, typer.Option(help="OWNER/NAME that attested the build (the PR body's verify line)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the gitops/ diff; write nothing")] = False,
    branch: Annotated[str | None, typer.Option(help="commit on this branch instead (with --open-pr)")] = None,
    open_pr: Annotated[bool, typer.Option("--open-pr", help="open or update one PR for --branch")] = False,
) -> None:
    """Pin the serving image by digest in every env's kustomization (`images:`), as one commit."""
    from modelops.delivery import gitflow
    from modelops.delivery import image as images

    if open_pr and not branch:
        raise images.PinError("--open-pr needs --branch NAME")
    start = None
    if branch and not dry_run:
        start = gitflow.preflight()
        gitflow.git("checkout", "--quiet", "-B", branch)
    try:
        pinned = images.pin(digest, image, env, source_commit, dry_run)
        if pinned.diff:
            print(pinned.diff, end="")
        print(pinned.message)
        if pinned.commit and branch:
            body = images.pr_body(pinned, source_commit, run_url, repo)
            number = gitflow.open_pr(branch, pinned.message, body) if open_pr else ""
            print(f"pull request {number or '(branch committed)'} for {branch}")
    finally:
        if start:
            gitflow.git("checkout", "--quiet", start)


@policy_app.command("check")
@errors_to_exit
def check(
    base: Annotated[str, typer.Option(help="the branch or commit the pull request merges into")] = "main",
    params_file: ParamsOpt = Path("params.yaml"),
) -> None:
    """Judge the work tree's gitops/ against --base: exit 0 passed, 22 refused, 23 cannot judge."""
    from modelops.config import load_params
    from modelops.delivery import policy

    outcomes = policy.check(base, load_params(params_file))
    for line in policy.enforce(outcomes, base):
        print(line)
