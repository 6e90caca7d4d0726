"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from trioscope.config import Settings


def settings_in(data_dir: Path, base: Settings | None = None) -> Settings:
    """Default settings (or ``base``) with the database and secret in ``data_dir``:
    tests never touch the user's data directory."""
    base = base or Settings.defaults()
    return attrs.evolve(base, storage=attrs.evolve(base.storage, data_dir=data_dir))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_in(tmp_path)
