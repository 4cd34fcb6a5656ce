"""Workflow tests: make `harness` importable (pytest runs with --import-mode=importlib) and
give each test a forge holding the project's files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Forge


@pytest.fixture
def forge(tmp_path: Path) -> Forge:
    """A bare origin plus a clone of the project's working-tree files, on main."""
    return Forge.from_project(tmp_path)
