"""The pure parts of `modelops conclude`: reading an analysis, and judging whether it is still
the analysis of what the env's patch file deploys (`modelops.delivery.conclude`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelops.delivery.conclude import Analysis, ConcludeError, check, read
from modelops.delivery.patches import Extra, PromoteError, Release

MAIN = Release("v1", "a" * 64, f"file:///store/m/{'a' * 64}/")
CANARY = Release("v2", "b" * 64, f"file:///store/m/{'b' * 64}/")
OTHER = Release("v3", "c" * 64, f"file:///store/m/{'c' * 64}/")
WHERE = Path("gitops/envs/production/m.yaml")


def body(**changes: object) -> dict:
    """An analysis as `modelops analyze` writes it (with fields conclude does not read)."""
    return {
        "model": "m",
        "env": "production",
        "decision": "abort",
        "canary": {"kind": "canary", "version": "v2", "hash": "b" * 64},
        "main": {"version": "v1", "hash": "a" * 64},
        "checks": [{"name": "error rate", "verdict": "fail"}],
        "rule": {"alpha": 0.05},
    } | changes


def write(tmp_path: Path, data: object, markdown: str | None = "## Canary analysis\n\nabort\n") -> Path:
    path = tmp_path / "m.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    if markdown is not None:
        path.with_suffix(".md").write_text(markdown)
    return path


def analysis(decision: str = "abort", kind: str = "canary", canary: Release = CANARY) -> Analysis:
    return Analysis(Path("a/m.json"), "m", "production", decision, kind, canary, MAIN, "report")  # type: ignore[arg-type]


def test_read_takes_what_conclude_needs_and_ignores_the_rest(tmp_path: Path) -> None:
    got = read(write(tmp_path, body()))
    assert (got.model, got.env, got.decision, got.kind) == ("m", "production", "abort", "canary")
    assert (got.canary.version, got.canary.content_hash) == ("v2", "b" * 64)
    assert (got.main.version, got.main.content_hash) == ("v1", "a" * 64)
    assert got.markdown == "## Canary analysis\n\nabort"
    assert got.judged() == f"canary v2 ({'b' * 12}) against main v1 ({'a' * 12})"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "m.json: not a readable JSON file"),
        ("[]", "m.json: expected a JSON object at the top level, got list"),
        (body(decision="finish"), "decision: Input should be 'promote', 'abort' or 'wait'"),
        (body(canary={"kind": "canary", "version": "v2"}), "canary.hash: Field required"),
        (body(canary={"kind": "blue", "version": "v2", "hash": "b"}), "canary.kind: Input should be"),
        (body(main={"version": "", "hash": "a"}), "main.version: String should have at least 1 character"),
        ({k: v for k, v in body().items() if k != "model"}, "model: Field required"),
    ],
)
def test_a_bad_analysis_is_refused_naming_the_file_and_key(
    tmp_path: Path, data: object, message: str
) -> None:
    with pytest.raises(ConcludeError, match=r"m\.json") as err:
        read(write(tmp_path, data))
    assert message in str(err.value)


def test_the_markdown_must_sit_beside_the_json_and_say_something(tmp_path: Path) -> None:
    with pytest.raises(ConcludeError, match=r"m\.md: not found: the report goes into the commit or PR"):
        read(write(tmp_path, body(), markdown=None))
    with pytest.raises(ConcludeError, match=r"m\.md: empty"):
        read(write(tmp_path, body(), markdown="\n  \n"))
    with pytest.raises(ConcludeError, match=r"missing\.json: not found \(write both with `modelops analyze"):
        read(tmp_path / "missing.json")
    with pytest.raises(ConcludeError, match=r"m\.md: expected the analysis JSON"):
        read(tmp_path / "m.md")


def test_a_refusal_is_a_promote_error_with_its_exit_code() -> None:
    assert issubclass(ConcludeError, PromoteError) and ConcludeError.exit_code == PromoteError.exit_code


@pytest.mark.parametrize("decision", ["promote", "abort"])
def test_an_analysis_of_what_runs_now_is_acted_on(decision: str) -> None:
    assert check(analysis(decision), MAIN, [Extra("canary", CANARY, 10)], WHERE) is True
    shadowed = [Extra("canary", CANARY, 10), Extra("shadow", OTHER, 0)]
    assert check(analysis(decision), MAIN, shadowed, WHERE) is True
    assert check(analysis(decision, "shadow"), MAIN, [Extra("shadow", CANARY, 0)], WHERE) is True


def test_a_decision_already_carried_out_needs_nothing() -> None:
    assert check(analysis("promote"), CANARY, [], WHERE) is False  # the finish PR was merged
    assert check(analysis("promote"), CANARY, [Extra("shadow", OTHER, 0)], WHERE) is False
    assert check(analysis("abort"), MAIN, [], WHERE) is False  # the abort landed


@pytest.mark.parametrize(
    ("decision", "main", "extras", "now"),
    [
        # another canary replaced the judged one: its analysis must not finish or abort it
        ("promote", MAIN, [Extra("canary", OTHER, 10)], "main v1 (aaaaaaaaaaaa) + canary v3 (cccccccccccc)"),
        # the same canary, but main changed under it: it was compared with something else
        (
            "promote",
            OTHER,
            [Extra("canary", CANARY, 10)],
            "main v3 (cccccccccccc) + canary v2 (bbbbbbbbbbbb)",
        ),
        # the judged version runs as a shadow, not as the canary the analysis names
        ("abort", MAIN, [Extra("shadow", CANARY, 0)], "main v1 (aaaaaaaaaaaa) + shadow v2 (bbbbbbbbbbbb)"),
        # aborted, then a new canary: not "already aborted"
        ("abort", MAIN, [Extra("canary", OTHER, 5)], "main v1 (aaaaaaaaaaaa) + canary v3 (cccccccccccc)"),
        # finished, then a new canary of the same kind: not "already finished"
        ("promote", CANARY, [Extra("canary", OTHER, 5)], "main v2 (bbbbbbbbbbbb) + canary v3 (cccccccccccc)"),
        # nothing of it left, and main is neither side
        ("promote", OTHER, [], "main v3 (cccccccccccc)"),
    ],
)
def test_a_stale_analysis_is_refused_naming_what_it_judged_and_what_runs(
    decision: str, main: Release, extras: list[Extra], now: str
) -> None:
    with pytest.raises(ConcludeError) as err:
        check(analysis(decision), main, extras, WHERE)
    message = str(err.value)
    assert message.startswith("a/m.json is stale: it judged canary v2 (bbbbbbbbbbbb) against main v1")
    assert f"but {WHERE} now deploys {now};" in message
    assert "run `modelops analyze m --env production` again" in message


def test_the_same_version_with_another_hash_is_another_canary() -> None:
    rebuilt = Release("v2", "d" * 64, "")
    with pytest.raises(ConcludeError, match="stale"):
        check(analysis("abort"), MAIN, [Extra("canary", rebuilt, 10)], WHERE)
