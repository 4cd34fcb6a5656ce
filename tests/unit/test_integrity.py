"""tree_hash: names and bytes only, so a copy anywhere hashes the same and any edit is seen."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from modelops_serving.integrity import file_sha256, tree_hash

FILES = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x05pickle", "sub/conda.yaml": b"name: x\n"}


def make_tree(root: Path, files: dict[str, bytes] = FILES) -> Path:
    """Write `files` (relative path -> bytes) under root, in the given order."""
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "model")


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = os.urandom((1 << 20) + 17)  # more than one read chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_hash_ignores_mtime_and_creation_order(tree: Path, tmp_path: Path) -> None:
    reversed_tree = make_tree(tmp_path / "other", dict(reversed(FILES.items())))
    os.utime(reversed_tree / "model.pkl", (0, 0))
    assert tree_hash(reversed_tree) == tree_hash(tree)
    assert len(tree_hash(tree)) == 64


def test_a_copy_hashes_the_same(tree: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tree, tmp_path / "copy")
    assert tree_hash(copy) == tree_hash(tree)


def test_empty_subdirectories_do_not_count(tree: Path) -> None:
    before = tree_hash(tree)
    (tree / "empty").mkdir()
    assert tree_hash(tree) == before


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: (t / "model.pkl").write_bytes(b"\x80\x05pickle!"),
        lambda t: (t / "model.pkl").rename(t / "model2.pkl"),
        lambda t: (t / "sub/conda.yaml").rename(t / "conda.yaml"),
        lambda t: (t / "extra.txt").write_bytes(b""),
        lambda t: (t / "MLmodel").unlink(),
    ],
    ids=["content", "rename", "move", "added-empty-file", "removed"],
)
def test_any_change_changes_the_hash(tree: Path, edit) -> None:
    before = tree_hash(tree)
    edit(tree)
    assert tree_hash(tree) != before


def test_swapping_contents_between_names_changes_the_hash(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", {"x": b"1", "y": b"2"})
    b = make_tree(tmp_path / "b", {"x": b"2", "y": b"1"})
    assert tree_hash(a) != tree_hash(b)


def test_missing_empty_and_file_roots_are_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        tree_hash(tmp_path / "missing")
    (tmp_path / "empty" / "nested").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="empty directory"):
        tree_hash(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        tree_hash(tmp_path / "file")
