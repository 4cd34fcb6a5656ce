"""Stands in for CML's `cml` command (iterative/cml) in workflow tests: no GitHub API here.

Every call is recorded (see _recorder.py), with the markdown it would post and which local
images it references. Comments are kept in `<state>/cml.json` as {target: [{"body",
"watermark", "updates"}]}, target being "pr/<n>" or "commit/<sha>":
- `cml comment create FILE` appends a comment;
- `cml comment update FILE` (and the old `cml send-comment --update`) replaces the last
  comment with the same watermark, or appends one, so "one comment, updated on every push"
  is assertable.
The target is resolved as CML does: `--target pr/N|commit/SHA|pr|commit`, default the PR of
the triggering event, else the commit. Like CML, it needs REPO_TOKEN (or --token, or
GITHUB_TOKEN). `cml asset publish FILE` prints a fake URL. Anything else exits 64.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from _recorder import fail, load, read_text, record, save

IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")


def event() -> dict:
    path = os.environ.get("GITHUB_EVENT_PATH")
    return json.loads(Path(path).read_text()) if path and Path(path).exists() else {}


def resolve_target(target: str) -> str:
    """CML's target rules: explicit `pr/N`/`commit/SHA`, or the event's PR, or the commit."""
    if re.fullmatch(r"(pr|commit|issue)/\S+", target):
        return target
    pr = event().get("pull_request") or {}
    if target in ("auto", "pr") and pr.get("number"):
        return f"pr/{pr['number']}"
    if target == "pr":
        fail("cml", "PR for this commit not found")
    return f"commit/{os.environ.get('GITHUB_SHA', 'HEAD')}"


def comment(args: argparse.Namespace, update: bool) -> None:
    body = read_text(args.markdown)
    images = {src: Path(src).exists() for src in IMAGE.findall(body) if "://" not in src}
    target = resolve_target(args.target)
    record("cml", sys.argv[1:], body=body, target=target, images=images)
    if not (args.token or os.environ.get("REPO_TOKEN") or os.environ.get("GITHUB_TOKEN")):
        fail("cml", "Undefined token: set REPO_TOKEN (or --token, or GITHUB_TOKEN)")
    comments = load("cml.json", {})
    thread = comments.setdefault(target, [])
    watermark = args.watermark_title or ""
    same = [c for c in thread if c["watermark"] == watermark]
    if update and same:
        same[-1].update(body=body, updates=same[-1]["updates"] + 1)
    else:
        thread.append({"body": body, "watermark": watermark, "updates": 0})
    save("cml.json", comments)
    n = thread.index(same[-1]) if update and same else len(thread) - 1
    print(f"https://github.com/{os.environ.get('GITHUB_REPOSITORY', 'owner/repo')}/{target}#comment-{n + 1}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cml")
    sub = p.add_subparsers(dest="group", required=True)
    commands = []
    group = sub.add_parser("comment").add_subparsers(dest="cmd", required=True)
    commands += [group.add_parser("create"), group.add_parser("update")]
    legacy = sub.add_parser("send-comment")
    legacy.add_argument("--update", action="store_true")
    commands.append(legacy)
    for c in commands:
        c.add_argument("markdown")
        c.add_argument("--target", default="auto")
        c.add_argument("--pr", action="store_true")
        c.add_argument("--commit-sha", "--head-sha")
        c.add_argument("--watermark-title", default="")
        c.add_argument("--publish", action="store_true", default=True)
        c.add_argument("--no-publish", dest="publish", action="store_false")
        c.add_argument("--publish-url")
        c.add_argument("--native", action="store_true")
        c.add_argument("--rm-watermark", action="store_true")
        c.add_argument("--repo")
        c.add_argument("--token")
        c.add_argument("--driver", choices=["github", "gitlab", "bitbucket"])
    asset = sub.add_parser("asset").add_subparsers(dest="cmd", required=True)
    for c in (asset.add_parser("publish"), sub.add_parser("publish")):
        c.add_argument("asset")
        c.add_argument("--md", action="store_true")
        c.add_argument("--title", default="")
        c.add_argument("--native", action="store_true")
        c.add_argument("--repo")
        c.add_argument("--token")
    return p


def main(argv: list[str]) -> None:
    if argv in (["--version"], ["-V"]):
        record("cml", argv)
        print("0.20.6")
        return
    try:
        args = parser().parse_args(argv)
    except SystemExit:
        record("cml", argv, error="unsupported")
        fail("cml", f"unsupported command {argv!r}: extend tests/workflows/standins/bin/cml.py", 64)
    if args.group in ("asset", "publish"):
        record("cml", argv, exists=Path(args.asset).exists())
        if not Path(args.asset).exists():
            fail("cml", f"ENOENT: no such file or directory, open '{args.asset}'")
        digest = hashlib.sha256(Path(args.asset).read_bytes()).hexdigest()[:16]
        url = f"https://asset.cml.invalid/{digest}/{Path(args.asset).name}"
        print(f"![{args.title}]({url})" if args.md else url)
        return
    if args.group == "send-comment" and args.pr:
        args.target = "pr"
    if args.commit_sha:
        args.target = f"commit/{args.commit_sha}"
    legacy_update = args.group == "send-comment" and args.update
    comment(args, update=legacy_update or getattr(args, "cmd", None) == "update")


if __name__ == "__main__":
    main(sys.argv[1:])
