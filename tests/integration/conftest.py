"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import POSTGRES_ENV, SCHEMA_PREFIX_ENV, drop_schemas, schema_name


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a module's tests once per store backend: on ``postgresql``, every
    ``ServerProcess`` the module starts (and that names no database itself)
    keeps its store in a PostgreSQL schema of its own, all dropped at the end.
    A module's server fixtures depend on this one, so each backend gets its
    own servers."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    base: str = request.getfixturevalue("postgres")
    prefix = f"{schema_name('it')}_"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(POSTGRES_ENV, base)
        patch.setenv(SCHEMA_PREFIX_ENV, prefix)
        try:
            yield "postgresql"
        finally:
            drop_schemas(base, prefix)
