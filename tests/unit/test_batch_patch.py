"""What a promotion writes into an env's batch patch: main's release, nothing else, byte for byte."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

from modelops.delivery import batch_patch
from modelops.delivery.patches import PromoteError, Release
from modelops.workspace import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "gitops/envs/production/batch/concrete-hgb.yaml"
A = Release("v1", "a" * 64, f"file:///store/concrete-hgb/{'a' * 64}/")
B = Release("v2", "b" * 64, f"s3://bucket/concrete-hgb/{'b' * 64}/")
UNPROMOTED = Release("unpromoted", "0" * 64, "unpromoted://concrete-hgb/")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return Path(shutil.copy(SHIPPED, tmp_path / "concrete-hgb.yaml"))


def changed_lines(before: str, after: str) -> list[str]:
    """The removed lines, then the added ones."""
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    lines = [ln for ln in diff if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    return [ln for ln in lines if ln[0] == "-"] + [ln for ln in lines if ln[0] == "+"]


def test_the_release_it_serves_rewrites_nothing(path: Path) -> None:
    assert batch_patch.read_release(path) == (UNPROMOTED.uri, "unpromoted", "0" * 64)
    assert batch_patch.render_release(path, UNPROMOTED) == SHIPPED.read_text()


def test_the_first_promotion_writes_the_release_and_starts_the_schedule(path: Path) -> None:
    original = path.read_text()
    path.write_text(batch_patch.render_release(path, A))
    assert batch_patch.read_release(path) == (A.uri, "v1", A.content_hash)
    assert changed_lines(original, path.read_text()) == [
        "-  suspend: true",
        "-                  value: unpromoted://concrete-hgb/",
        "-                  value: unpromoted",
        '-                  value: "0000000000000000000000000000000000000000000000000000000000000000"',
        "+  suspend: false",
        f"+                  value: {A.uri}",
        "+                  value: v1",
        f'+                  value: "{A.content_hash}"',
    ]
    # a return to unpromoted (what a revert of the first promotion restores) is the shipped file again
    path.write_text(batch_patch.render_release(path, UNPROMOTED))
    assert path.read_text() == original


def test_a_later_promotion_leaves_a_paused_job_paused(path: Path) -> None:
    path.write_text(batch_patch.render_release(path, A).replace("suspend: false", "suspend: true"))
    paused = path.read_text()
    path.write_text(batch_patch.render_release(path, B))
    assert changed_lines(paused, path.read_text()) == [
        f"-                  value: {A.uri}",
        "-                  value: v1",
        f'-                  value: "{A.content_hash}"',
        f"+                  value: {B.uri}",
        "+                  value: v2",
        f'+                  value: "{B.content_hash}"',
    ]


def test_an_env_without_a_batch_job_has_no_batch_file() -> None:
    root = PROJECT_ROOT / "gitops"
    assert batch_patch.batch_file("staging", "concrete-hgb", root) is None
    assert (
        batch_patch.batch_file("production", "concrete-hgb", root)
        == root / "envs/production/batch/concrete-hgb.yaml"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("- name: batch", "- name: engine"),
            r"no spec\.jobTemplate.*containers\[name=batch\]",
        ),
        (
            lambda t: t.replace("name: MODELOPS_EXPECTED_HASH", "name: HASH"),
            "env MODELOPS_EXPECTED_HASH with a",
        ),
        (lambda t: t.replace("  suspend: true\n", ""), r"no spec\.suspend to set to false"),
        (lambda t: t + "  - [unclosed\n", "not valid YAML"),
    ],
)
def test_a_patch_promote_cannot_edit_is_named(path: Path, edit, message: str) -> None:
    path.write_text(edit(path.read_text()))
    before = path.read_text()
    with pytest.raises(PromoteError, match=message) as info:
        if "unclosed" in before:
            batch_patch.read_release(path)
        batch_patch.render_release(path, A)
    assert str(path) in str(info.value)
    assert path.read_text() == before
