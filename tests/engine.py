"""A real container engine for tests and benchmarks: Podman's Docker-API service
on a socket of its own, started by tests/tools/docker-engine.sh (which installs
Podman when it is missing) and ended by its process id when the block ends."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.process_end import end

SCRIPT = Path(__file__).resolve().parent / "tools" / "docker-engine.sh"
START_TIMEOUT = 600.0
"""Seconds: a machine without Podman installs it first (apt), a minute or two."""


class EngineUnavailable(RuntimeError):
    """The engine could not be installed or started here."""


class EngineNotInstallable(EngineUnavailable):
    """Podman is missing and cannot be installed on this machine (not root, or
    no apt-get): the tests that need it skip. Any other ``EngineUnavailable``
    fails them: an install or a start that went wrong must not pass as a skip."""


class ContainerEngine:
    """``with ContainerEngine() as docker_host:`` -> ``unix:///tmp/.../podman.sock``."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="trioscope-engine-")
        self.socket = Path(self._dir.name) / "podman.sock"
        self._log = tempfile.TemporaryFile(mode="w+t")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        try:
            self.start()
        except EngineUnavailable:
            self.__exit__()
            raise
        return f"unix://{self.socket}"

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._log.close()
        self._dir.cleanup()

    def start(self) -> None:
        """Start the engine on ``socket`` (again, after ``stop``) and wait until it answers.

        Raises:
            EngineUnavailable: it exited, or did not answer within ``START_TIMEOUT``.
        """
        self.proc = subprocess.Popen(["bash", str(SCRIPT), "--exec", str(self.socket)],
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self.proc.poll() is not None:
                self._log.seek(0)
                said = self._log.read()[-500:]
                if self.proc.returncode == 2:
                    raise EngineNotInstallable(said.strip())
                raise EngineUnavailable(f"the engine exited ({self.proc.returncode}): {said}")
            if time.monotonic() > deadline:
                raise EngineUnavailable(f"the engine did not answer within {START_TIMEOUT:.0f} s")
            time.sleep(0.2)

    def stop(self) -> None:
        """End the engine by its process id, as a daemon stops (its containers run on)."""
        if self.proc is not None:
            end(self.proc, timeout=30)

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), timeout=2) as client:
                return client.get("http://d/_ping").status_code == 200
        except httpx.HTTPError:
            return False
