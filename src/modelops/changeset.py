"""File changes that land together or not at all, and round-trip edits of params.yaml.

`modelops new` touches many files (params, a declaration, manifests, CODEOWNERS). A half-written
scaffold would leave a repository that neither renders nor validates, so every change is planned
in memory, checked, and only then written: all files or none.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from modelops.errors import ModelopsError

Content = str | bytes


class ScaffoldError(ModelopsError):
    """`modelops new` refused: bad name, unknown dataset, misfit estimator, name taken, bad CSV.
    Nothing was written."""

    exit_code = 19


def round_trip(sequence: int = 4, offset: int = 2) -> YAML:
    """ruamel set up like the repository's YAML: comments, quotes and layout survive a rewrite.

    params.yaml indents lists under their key (the default); JSON6902 patches and declarations
    start them at the key's column (`sequence=2, offset=0`)."""
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=sequence, offset=offset)
    return rt


def dump(rt: YAML, data: Any) -> str:
    buf = io.StringIO()
    rt.dump(data, buf)
    return buf.getvalue()


def _commented(value: Any) -> Any:
    """Plain dicts and lists as ruamel containers, so comments can be attached to them."""
    if isinstance(value, Mapping):
        out = CommentedMap()
        for key, item in value.items():
            out[key] = _commented(item)
        if not value:
            out.fa.set_flow_style()  # `{}`, not an empty block
        return out
    if isinstance(value, list):
        return CommentedSeq(_commented(v) for v in value)
    return value


def _tail(node: Any) -> tuple[CommentedMap, Any] | None:
    """The innermost last (mapping, key) of a block: where ruamel keeps a block's trailing comment."""
    found = None
    while isinstance(node, CommentedMap) and len(node):
        key = list(node)[-1]
        found = (node, key)
        node = node[key]
    return found


def add_entry(text: str, section: str, name: str, value: Mapping[str, Any], source: str) -> str:
    """`text` (a YAML mapping) with `section.name: value` appended, comments and layout kept.

    The blank line and comments that followed the section's last entry (ruamel attaches them to its
    innermost last key) move to the new last entry, so they still sit before the next section.
    """
    rt = round_trip()
    data = rt.load(text)
    if not isinstance(data, CommentedMap) or not isinstance(data.get(section), CommentedMap):
        raise ScaffoldError(f"{source}: no '{section}:' mapping to add {name!r} to")
    block = data[section]
    if name in block:
        raise ScaffoldError(f"{source}: {section}.{name} already exists")
    old = _tail(block)
    block[name] = _commented(dict(value))
    new = _tail(block[name])
    if old is not None and new is not None:
        _move_trailing(*old, *new)
    return dump(rt, data)


def _move_trailing(old_map: CommentedMap, old_key: Any, new_map: CommentedMap, new_key: Any) -> None:
    """Move the lines after the old last key to the new one; its end-of-line comment stays put.

    ruamel keeps both in one token: `# why\n\n# next section\n` (or `\n\n# next section\n`).
    """
    slot = old_map.ca.items.get(old_key)
    token = slot[2] if slot and len(slot) > 2 else None
    if token is None:
        return
    end = token.value.find("\n") + 1
    eol, rest = token.value[:end], token.value[end:]
    if not rest:
        return
    moved = copy.copy(token)
    moved.value = "\n" + rest
    new_map.ca.items[new_key] = [None, None, moved, None]
    if eol.lstrip().startswith("#"):
        token.value = eol
    else:
        slot[2] = None


def write_all(changes: Mapping[Path, Content]) -> list[Path]:
    """Write every file or none: stage each beside its target, then swap them in; undo on failure."""
    staged: list[tuple[Path, Path]] = []
    made_dirs: list[Path] = []
    originals: dict[Path, bytes | None] = {}
    try:
        for path, content in changes.items():
            missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
            for folder in reversed(missing):
                folder.mkdir()
                made_dirs.append(folder)
            tmp = path.with_name(f".{path.name}.modelops-new")
            tmp.write_bytes(content.encode() if isinstance(content, str) else content)
            staged.append((tmp, path))
        for tmp, path in staged:
            originals[path] = path.read_bytes() if path.exists() else None
            os.replace(tmp, path)
    except BaseException:
        for path, before in originals.items():
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(before)
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for folder in reversed(made_dirs):
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return [path for _, path in staged]
