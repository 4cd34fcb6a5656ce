"""Stands in for the GitHub CLI (`gh`) in workflow tests: GitHub's API is unreachable here.

Every call is recorded (see _recorder.py). The `pr` commands act on `<state>/gh.json`:
{"repository": "acme/modelops", "next_number": 1, "prs": [{number, title, body, state,
headRefName, baseRefName, headRefOid, isCrossRepository, labels, comments, url}], "api": {}}
so "open a PR, or update the one already open" logic can be tested; `gh api` answers from
"api" ("METHOD /path" -> JSON) or with `{}`. Like the real gh in Actions, every command needs
GH_TOKEN or GITHUB_TOKEN in the environment. Unsupported commands fail loudly (exit 64):
extend this file rather than let a workflow call something untested.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from typing import Any

from _recorder import fail, load, read_text, record, save

PR_FIELDS = {
    "number", "title", "body", "state", "url", "headRefName", "baseRefName", "headRefOid",
    "isCrossRepository", "isDraft", "labels", "comments", "author", "mergedAt",
}  # fmt: skip


def state() -> dict[str, Any]:
    empty = {"repository": os.environ.get("GITHUB_REPOSITORY", ""), "next_number": 1, "prs": []}
    return load("gh.json", empty)


def current_branch() -> str:
    out = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip()


def emit(data: Any, fields: str | None, jq: str | None) -> None:
    """Print like `gh --json FIELDS [--jq EXPR]` (jq output is raw, as gh prints it)."""
    if fields is None:
        rows = data if isinstance(data, list) else [data]
        for pr in rows:
            print(f"{pr['number']}\t{pr['title']}\t{pr['headRefName']}\t{pr['state']}")
        return
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    if unknown := set(wanted) - PR_FIELDS:
        fail("gh", f"Unknown JSON field: {sorted(unknown)[0]!r}")

    def pick(pr: dict) -> dict:
        return {f: pr.get(f) for f in wanted}

    out = json.dumps([pick(p) for p in data] if isinstance(data, list) else pick(data))
    if jq:
        if not shutil.which("jq"):
            fail("gh", "--jq needs jq on PATH", 64)
        sys.stdout.write(subprocess.run(["jq", "-r", jq], input=out, capture_output=True, text=True).stdout)
    else:
        print(out)


def find(st: dict, selector: str | None) -> dict:
    """A PR by number, URL or head branch (default: the current branch), as `gh pr view` does."""
    selector = selector or current_branch()
    for pr in reversed(st["prs"]):
        if selector in (str(pr["number"]), pr["url"], f"#{pr['number']}") or (
            pr["headRefName"] == selector and pr["state"] == "OPEN"
        ):
            return pr
    fail("gh", f'no pull requests found for branch "{selector}"')
    raise AssertionError  # unreachable


def body_of(args: argparse.Namespace) -> str | None:
    return read_text(args.body_file) if args.body_file else args.body


def labels(values: list[str]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gh")
    p.add_argument("-R", "--repo")
    sub = p.add_subparsers(dest="group", required=True)
    pr = sub.add_parser("pr").add_subparsers(dest="cmd", required=True)
    for name in ("list", "view"):
        c = pr.add_parser(name)
        if name == "view":
            c.add_argument("selector", nargs="?")
        c.add_argument("-R", "--repo")
        c.add_argument("-H", "--head")
        c.add_argument("-B", "--base")
        c.add_argument("-s", "--state", default="open", choices=["open", "closed", "merged", "all"])
        c.add_argument("-l", "--label", action="append", default=[])
        c.add_argument("-L", "--limit", type=int, default=30)
        c.add_argument("--json")
        c.add_argument("-q", "--jq")
    c = pr.add_parser("create")
    c.add_argument("-R", "--repo")
    c.add_argument("-t", "--title", default="")
    c.add_argument("-b", "--body", default="")
    c.add_argument("-F", "--body-file")
    c.add_argument("-H", "--head")
    c.add_argument("-B", "--base", default="main")
    c.add_argument("-l", "--label", action="append", default=[])
    c.add_argument("-d", "--draft", action="store_true")
    for name in ("edit", "comment", "merge", "close"):
        c = pr.add_parser(name)
        c.add_argument("selector", nargs="?")
        c.add_argument("-R", "--repo")
        c.add_argument("-b", "--body")
        c.add_argument("-F", "--body-file")
        if name == "edit":
            c.add_argument("-t", "--title")
            c.add_argument("-B", "--base")
            c.add_argument("--add-label", action="append", default=[])
            c.add_argument("--remove-label", action="append", default=[])
        if name == "comment":
            c.add_argument("--edit-last", action="store_true")
        if name == "merge":
            for flag in ("--merge", "--squash", "--rebase", "--auto", "--admin", "--delete-branch"):
                c.add_argument(flag, action="store_true")
        if name == "close":
            c.add_argument("-c", "--comment")
            c.add_argument("-d", "--delete-branch", action="store_true")
    api = sub.add_parser("api")
    api.add_argument("endpoint")
    api.add_argument("-X", "--method", default=None)
    api.add_argument("-f", "--raw-field", action="append", default=[])
    api.add_argument("-F", "--field", action="append", default=[])
    api.add_argument("-H", "--header", action="append", default=[])
    api.add_argument("--input")
    api.add_argument("-q", "--jq")
    api.add_argument("--paginate", action="store_true")
    auth = sub.add_parser("auth").add_subparsers(dest="cmd", required=True)
    auth.add_parser("status")
    return p


def main(argv: list[str]) -> None:
    if argv in (["--version"], ["version"]):
        record("gh", argv)
        print("gh version 2.83.0 (modelops stand-in)")
        return
    try:
        args = parser().parse_args(argv)
    except SystemExit:
        record("gh", argv, error="unsupported")
        fail("gh", f"unsupported command {argv!r}: extend tests/workflows/standins/bin/gh.py", 64)
    body = body_of(args) if hasattr(args, "body_file") else None
    record("gh", argv, body=body)
    if not (os.environ.get("GH_TOKEN") or os.environ.get("GITHUB_TOKEN")):
        fail(
            "gh",
            "To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment variable. "
            "Example:\n  env:\n    GH_TOKEN: ${{ github.token }}",
            4,
        )
    st = state()
    if args.group == "auth":
        print(f"github.com: logged in to github.com (stand-in) as {st['repository'].split('/')[0]}")
    elif args.group == "api":
        method = args.method or ("POST" if args.raw_field or args.field or args.input else "GET")
        answer = st.get("api", {}).get(f"{method} {args.endpoint}", st.get("api", {}).get(args.endpoint, {}))
        out = json.dumps(answer)
        if args.jq:
            out = subprocess.run(["jq", "-r", args.jq], input=out, capture_output=True, text=True).stdout
        print(out.rstrip("\n"))
    elif args.cmd == "list":
        prs = [
            pr
            for pr in st["prs"]
            if (args.state == "all" or pr["state"] == args.state.upper())
            and args.head in (None, pr["headRefName"])
            and args.base in (None, pr["baseRefName"])
            and set(labels(args.label)) <= {lb["name"] for lb in pr["labels"]}
        ]
        emit(list(reversed(prs))[: args.limit], args.json, args.jq)
    elif args.cmd == "view":
        emit(find(st, args.selector), args.json, args.jq)
    elif args.cmd == "create":
        head = args.head or current_branch()
        for pr in st["prs"]:
            if pr["state"] == "OPEN" and (pr["headRefName"], pr["baseRefName"]) == (head, args.base):
                exists = f'a pull request for branch "{head}" into branch "{args.base}" already exists'
                fail("gh", f"{exists}:\n{pr['url']}")
        number = st["next_number"]
        pr = new_pr(st["repository"], number, args.title, body or "", head, args.base, labels(args.label))
        pr["isDraft"] = args.draft
        st["prs"].append(pr)
        st["next_number"] = number + 1
        save("gh.json", st)
        print(pr["url"])
    else:
        pr = find(st, args.selector)
        if args.cmd == "edit":
            pr["title"] = args.title if args.title is not None else pr["title"]
            pr["body"] = body if body is not None else pr["body"]
            pr["baseRefName"] = args.base or pr["baseRefName"]
            drop = set(labels(args.remove_label))
            names = [lb["name"] for lb in pr["labels"] if lb["name"] not in drop]
            pr["labels"] = [{"name": n} for n in dict.fromkeys(names + labels(args.add_label))]
        elif args.cmd == "comment":
            if args.edit_last and pr["comments"]:
                pr["comments"][-1]["body"] = body or ""
            else:
                pr["comments"].append({"body": body or ""})
        elif args.cmd == "merge":
            pr["state"] = "MERGED"
        elif args.cmd == "close":
            pr["state"] = "CLOSED"
        save("gh.json", st)
        print(pr["url"])


def new_pr(repo: str, number: int, title: str, body: str, head: str, base: str, names: list[str]) -> dict:
    """A PR record with gh's JSON field names (the harness's Forge.open_pr uses the same shape)."""
    return {
        "number": number,
        "title": title,
        "body": body,
        "state": "OPEN",
        "url": f"https://github.com/{repo}/pull/{number}",
        "headRefName": head,
        "baseRefName": base,
        "headRefOid": "",
        "isCrossRepository": False,
        "isDraft": False,
        "labels": [{"name": n} for n in names],
        "comments": [],
        "author": {"login": "modelops-bot"},
        "mergedAt": None,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
