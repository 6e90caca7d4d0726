"""Fixtures shared by every test package."""

from __future__ import annotations

import compileall
import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import settings as hypothesis_settings
from trioscope.config import Settings

from tests import bus_server
from tests.engine import ContainerEngine, EngineNotInstallable
from tests.postgres import PostgresMissing, ensure_running, scratch_schema
from tests.tools_path import tool_path


# No deadline on any property test's example: CI shares two cores with the
# test suite's own servers, and an example held up past hypothesis's 200 ms by
# that load failed a test about results, not time (no timing assertions).
hypothesis_settings.register_profile("trioscope", deadline=None)
hypothesis_settings.load_profile("trioscope")


# Bytecode is written and read even where PYTHONDONTWRITEBYTECODE is set (as on
# the machines CI runs on): without it every test process compiled each test
# module again (~14 s of CPU per process to collect the suite, 4 s from the
# cache), and every server a test starts compiled the 200 modules of trioscope
# (0.7 s of the 2.3 s it takes to import).
sys.dont_write_bytecode = False


def pytest_configure(config: pytest.Config) -> None:
    """Once per run, before any worker starts: trioscope's own modules
    compiled, so that the servers, probes and CLIs the tests start (which
    inherit PYTHONDONTWRITEBYTECODE and so never write it) read their bytecode."""
    if not hasattr(config, "workerinput"):
        root = Path(__file__).resolve().parent.parent
        for package in ("src", "probe"):
            compileall.compile_dir(root / package, quiet=1, workers=0)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's ``--dist loadfile`` (``pyproject.toml``: a module's tests
    in one process, in order, with its fixtures), but with the modules that
    start a real engine's containers (``docker_host``) and the browser tests
    (tests/ui) in one process, one after the other: Chromium aborts its page
    loads, loopback ones included, with ERR_NETWORK_CHANGED when a network
    interface comes or goes, and spread over processes a page failed to load
    while another process's test started a container. (xdist's ``loadgroup``
    marks cannot do it with pytest 9: xdist names the items by their group
    through an attribute pytest no longer reads.)"""
    from xdist.scheduler import LoadFileScheduling

    if config.getvalue("dist") != "loadfile":
        return None
    root = config.rootpath

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "network" if _changes_network(root, module) else module

    return Scheduling(config, log)


@functools.cache
def _changes_network(root: Path, module: str) -> bool:
    if module.startswith("tests/ui/"):
        return True
    try:
        return "docker_host" in (root / module).read_text()
    except OSError:
        return False


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
    """A Podman engine for the tests that need one, stopped when the session ends
    (skipped only where Podman cannot be installed: ``EngineNotInstallable``)."""
    try:
        with ContainerEngine() as host:
            yield host
    except EngineNotInstallable as exc:
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
