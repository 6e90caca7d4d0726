"""Fixtures of the probe's tests."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest


@pytest.fixture
def engine(docker_host: str) -> Iterator[docker.DockerClient]:
    """A client of the real engine (``docker_host``), closed after the test."""
    client = docker.DockerClient(base_url=docker_host)
    try:
        yield client
    finally:
        client.close()
