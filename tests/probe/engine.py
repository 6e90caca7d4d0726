"""What the probe's tests against a real Docker-API engine share (the engine is
``tests/conftest.py``'s ``docker_host``: Podman from tests/tools/docker-engine.sh;
its client, ``tests/probe/conftest.py``'s ``engine``)."""

from __future__ import annotations

import uuid

IMAGE = "localhost/busybox:latest"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"  # the engine's store is the machine's: others' tests share it
