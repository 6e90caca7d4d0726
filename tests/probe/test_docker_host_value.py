"""A ``--docker-host`` the docker SDK cannot use is refused at start (exit 2,
one line with the fix): a socket's path without ``unix://`` was taken, and
every cycle then logged "Invalid bind address format"."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from trioscope_probe._engine import docker_host_problem


def _probe(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIOSCOPE_PROBE") and k != "DOCKER_HOST"}
    return subprocess.run([sys.executable, "-m", "trioscope_probe", *argv, "--once", "--no-processes",
                           "--no-connections"], capture_output=True, text=True, timeout=60, env={**clean, **(env or {})})


@pytest.mark.parametrize(("argv", "env", "says"), [
    (["--docker-host", "/tmp/x.sock"], {},  # noqa: S108 - a path as users type it, never opened
     "trioscope-probe: --docker-host: '/tmp/x.sock' is a path, not a Docker API address: give it as "
     "unix:///tmp/x.sock\n"),
    ([], {"DOCKER_HOST": "/run/podman/podman.sock"},
     "trioscope-probe: --docker-host (from env DOCKER_HOST): '/run/podman/podman.sock' is a path, not a Docker API "
     "address: give it as unix:///run/podman/podman.sock\n"),
    (["--docker-host", "tcp://engine"], {},
     "trioscope-probe: --docker-host: 'tcp://engine' is not a Docker API address (Invalid bind address format: port "
     "is required: tcp://engine); e.g. unix:///var/run/docker.sock or tcp://host:2375\n"),
    (["--docker-host", "tcp://engine:x"], {},  # urllib's ValueError, not the SDK's error: was a traceback
     "trioscope-probe: --docker-host: 'tcp://engine:x' is not a Docker API address (Port could not be cast to "
     "integer value as 'x'); e.g. unix:///var/run/docker.sock or tcp://host:2375\n"),
])
def test_an_address_the_sdk_refuses_stops_the_probe_with_the_fix(argv: list[str], env: dict[str, str],
                                                                 says: str) -> None:
    result = _probe(*argv, env=env)
    assert (result.returncode, result.stderr) == (2, says)


def test_a_relative_path_is_suggested_as_an_absolute_socket_address() -> None:
    assert docker_host_problem("docker.sock") == (
        f"'docker.sock' is a path, not a Docker API address: give it as unix://{os.path.abspath('docker.sock')}")


@pytest.mark.parametrize("address", ["unix:///var/run/docker.sock", "unix://", "tcp://10.0.0.5:2375",
                                     "http://engine:2375", "https://engine:2376", "ssh://admin@engine"])
def test_addresses_the_sdk_takes_are_taken(address: str) -> None:
    assert docker_host_problem(address) is None
