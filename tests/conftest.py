"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from trioscope.config import Settings

from tests import bus_server
from tests.engine import ContainerEngine, EngineUnavailable
from tests.postgres import PostgresMissing, ensure_running, scratch_schema
from tests.tools_path import tool_path


def settings_in(data_dir: Path, base: Settings | None = None) -> Settings:
    """Default settings (or ``base``) with the database and secret in ``data_dir``:
    tests never touch the user's data directory."""
    base = base or Settings.defaults()
    return attrs.evolve(base, storage=attrs.evolve(base.storage, data_dir=data_dir))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_in(tmp_path)


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """A Podman engine for the tests that need one, stopped when the session ends."""
    try:
        with ContainerEngine() as host:
            yield host
    except EngineUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def postgres() -> str:
    """The machine's PostgreSQL (started if it is installed but not running)."""
    try:
        return ensure_running()
    except PostgresMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture
def postgres_url(postgres: str) -> Iterator[str]:
    """A PostgreSQL URL of a schema of this test's own, dropped after it."""
    with scratch_schema(postgres) as url:
        yield url


@pytest.fixture(scope="session")
def jemalloc() -> str:
    """Debian's libjemalloc.so.2, installed with apt-get first if the machine
    lacks it (``tests/tools/jemalloc.sh``); skipped only where it cannot be installed."""
    return tool_path("jemalloc.sh")


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's promtool, installed with apt-get first if the machine lacks it
    (``tests/tools/promtool.sh``); skipped only where it cannot be installed."""
    return tool_path("promtool.sh")


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The machine's nats-server with JetStream (started with the issue's
    command if none runs); skipped, saying why, where it is not installed."""
    try:
        return bus_server.ensure_running()
    except bus_server.NatsMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture
def own_nats() -> Iterator[bus_server.OwnNatsServer]:
    """A nats-server of the test's own (JetStream, a store of its own) on a free
    port, for tests that stop, freeze or wipe it; skipped, saying why, where
    nats-server is not installed."""
    try:
        with bus_server.own_nats_server() as server:
            yield server
    except bus_server.NatsMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture
def stream(nats_url: str) -> Iterator[str]:
    """A JetStream stream name of the test's own, deleted afterwards."""
    name = bus_server.stream_name()
    yield name
    bus_server.delete_stream(nats_url, name)
