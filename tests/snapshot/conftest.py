"""Shared fixtures: the real snapshots captured by the project's own oracle (UML 6.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots"


@pytest.fixture
def frag128() -> Path:
    """mem=128M guest, frag over 75% of RAM keeping 1 page in 4, before compact_memory."""
    return FIXTURES / "uml-frag-128M" / "before"


@pytest.fixture
def zram128() -> Path:
    """mem=128M guest with zram swap, before compact_memory."""
    return FIXTURES / "uml-zram-128M" / "before"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
