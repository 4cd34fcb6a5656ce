"""Workflow tests: each test that asks gets a forge holding the project's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops.runtime.forge import Forge


@pytest.fixture
def forge(tmp_path: Path) -> Forge:
    """A bare origin plus a clone of the project's working-tree files, on main."""
    return Forge.from_project(tmp_path)
