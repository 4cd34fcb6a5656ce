"""The pure parts of promotion: planning a mode, reading and writing the patch file's state
(`modelops.delivery.patches`, re-exported by `promote`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from modelops.delivery import patches, promote
from modelops.delivery.promote import Extra, PromoteError, Release
from modelops.workspace import PROJECT_ROOT

A = Release("v1", "a" * 64, f"file:///store/m/{'a' * 64}/", "c1", "r1", "1")
B = Release("v2", "b" * 64, f"file:///store/m/{'b' * 64}/", "c2", "r2", "2")


def test_plan_full_replaces_main_and_drops_extras() -> None:
    assert promote.plan(A, [Extra("canary", B, 10)], "full", B, None) == (B, [])


def test_plan_canary_and_shadow_sit_beside_main() -> None:
    main, extras = promote.plan(A, [], "canary", B, 30)
    assert main == A and extras == [Extra("canary", B, 30)]
    main, extras = promote.plan(A, extras, "shadow", B, None)
    assert [e.name for e in extras] == ["canary", "shadow"] and extras[1].traffic == 0


def test_plan_finish_and_abort_need_something_to_act_on() -> None:
    assert promote.plan(A, [Extra("canary", B, 10)], "finish", None, None) == (B, [])
    with pytest.raises(PromoteError, match="no canary"):
        promote.plan(A, [], "finish", None, None)
    with pytest.raises(PromoteError, match="no canary or shadow"):
        promote.plan(A, [], "abort", None, None)
    for bad in (0, 100, None):
        with pytest.raises(PromoteError, match="between 1 and 99"):
            promote.plan(A, [], "canary", B, bad)


def test_plan_finish_makes_the_shadow_main_when_there_is_no_canary() -> None:
    """A shadow's analysis can promote it too; beside a canary, the canary is what finishes."""
    assert promote.plan(A, [Extra("shadow", B, 0)], "finish", None, None) == (B, [])
    both = [Extra("canary", B, 10), Extra("shadow", A, 0)]
    assert promote.plan(A, both, "finish", None, None) == (B, [Extra("shadow", A, 0)])


def test_promoting_running_content_keeps_its_record() -> None:
    again = Release("v9", A.content_hash, A.uri, "other-commit")
    assert promote.plan(A, [], "full", again, None) == (A, [])


@pytest.mark.parametrize("value", ["v1", "123", "true", "null", "1e3", " padded", "abc123"])
def test_plain_scalars_read_back_as_the_same_string(value: str) -> None:
    assert yaml.safe_load(f"k: {patches._plain(value)}")["k"] == value


def test_state_round_trips_through_the_patch_file(tmp_path: Path) -> None:
    path = tmp_path / "credit-hgb.yaml"
    shutil.copy(PROJECT_ROOT / "gitops/envs/staging/credit-hgb.yaml", path)
    original = path.read_text()
    path.write_text(
        promote.render_state(path, "credit-hgb", A, [Extra("canary", B, 20), Extra("shadow", B, 0)])
    )
    main, extras = promote.read_state(path)
    assert main == A and extras == [Extra("canary", B, 20), Extra("shadow", B, 0)]
    ops = yaml.safe_load(path.read_text())
    assert {"op": "replace", "path": "/spec/predictors/0/traffic", "value": 80} in ops
    assert {"op": "add", "path": "/spec/predictors/2/shadow", "value": True} in ops
    unpromoted = promote.read_state(PROJECT_ROOT / "gitops/envs/staging/credit-hgb.yaml")[0]
    path.write_text(promote.render_state(path, "credit-hgb", unpromoted, []))
    assert path.read_text() == original  # back to the shipped bytes


def test_a_patch_file_that_is_not_a_list_of_operations_is_named(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("op: replace\n")
    with pytest.raises(PromoteError, match=r"m\.yaml: expected a list of JSON-patch operations"):
        promote.read_state(path)
    path.write_text("- op: test\n  path: /x\n  value: 1\n")
    with pytest.raises(PromoteError, match="no operation for /metadata/annotations"):
        promote.read_state(path)


def test_a_canary_share_beyond_the_policy_is_refused_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """params.yaml policy.canary_share bounds `--canary` (as `modelops policy check` does on a PR)."""
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(
        PROJECT_ROOT / "data", tmp_path / "data", ignore=shutil.ignore_patterns("raw.csv", "prepared")
    )
    monkeypatch.chdir(tmp_path)  # no git, no gitops/: the refusal comes first
    with pytest.raises(PromoteError, match=r"--canary 60: the promotion policy allows a canary 1% to 50%"):
        promote.promote("credit-hgb", "production", mode="canary", canary=60)


def test_promote_validates_the_env_with_its_image_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What promote renders and validates before committing includes production's digest rule."""
    shutil.copytree(PROJECT_ROOT / "gitops", tmp_path / "gitops")
    monkeypatch.chdir(tmp_path)
    kustomization = Path("gitops/envs/production/kustomization.yaml")
    kustomization.write_text(
        kustomization.read_text().replace(f"digest: sha256:{'0' * 64}", "newTag: latest")
    )
    path = patches.patch_file("production", "credit-hgb")
    edit = {path: patches.render_state(path, "credit-hgb", A, [])}
    before = path.read_text()
    with pytest.raises(PromoteError) as info:
        promote._check_rendered("production", edit)
    message = str(info.value)
    assert message.startswith("the promotion would break gitops/envs/production; nothing written")
    assert (
        "'ghcr.io/your-org/modelops-serving:latest' is a tag without a digest, and production runs" in message
    )
    assert path.read_text() == before
