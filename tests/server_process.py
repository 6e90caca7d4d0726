"""Run ``trioscope serve`` as a real process on a free port, for integration tests.

The server is started with ``--port 0`` (the kernel picks a free port) and the
address is read from its first stdout line, so tests never race for a port and
never touch 8080. Every process started here is ended by its pid.
"""

from __future__ import annotations

import hashlib
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.postgres import POSTGRES_ENV, SCHEMA_PREFIX_ENV, create_schema, drop_schema, in_schema
from trioscope.domain.principals import Role, mint_user_token
from trioscope.server import BANNER_END
from trioscope.store import DATABASE_FILE

TEST_SECRET = "test-secret-for-trioscope-integration-tests-only"
"""The user-token key of test servers (``TRIOSCOPE_AUTH_SECRET``)."""

_LISTENING = re.compile(r"^trioscope listening on (https?://\S+)$")


class ServerProcess:
    """One server process. Use as a context manager; it is always stopped."""

    def __init__(self, args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 command: Sequence[str] = ("serve",)) -> None:
        self.argv = [sys.executable, "-m", "trioscope", *command, "--host", "127.0.0.1", "--port", "0", *args]
        # Every server gets a database and token secret of its own, removed with it.
        self._data = tempfile.TemporaryDirectory(prefix="trioscope-test-")
        self.data_dir = self._data.name
        # No local probe unless a test asks: its reports would add this host to every topology.
        # A report stream on the machine's NATS of 256 MiB, not the default 8 GiB: JetStream reserves a
        # stream's max_bytes, and streams a killed run never deleted (seven) took all the server's room,
        # so every stream after them was refused ("insufficient storage resources available").
        self.env = {"TRIOSCOPE_BUS_MAX_BYTES": "256MiB", **os.environ, "TRIOSCOPE_STORAGE_DATA_DIR": self.data_dir,
                    "TRIOSCOPE_AUTH_SECRET": TEST_SECRET, "TRIOSCOPE_AGENTS_LOCAL_PROBE": "false", **(env or {})}
        self.schema: str | None = None
        """The PostgreSQL schema of this server's store, when the tests run on PostgreSQL."""
        self._own_schema = False
        self._postgres = ""
        self._use_postgres(own_data_dir=not (env and "TRIOSCOPE_STORAGE_DATA_DIR" in env))
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.banner: list[str] = []
        self._stderr = tempfile.TemporaryFile(mode="w+t")
        self._stderr_text: str | None = None  # kept once the process is gone

    def _use_postgres(self, *, own_data_dir: bool) -> None:
        """Under ``POSTGRES_ENV`` (tests/integration/conftest.py, ``database``),
        a server whose database the test does not choose gets a schema named
        after its data directory: servers restarted on one data directory find
        their store again. A schema of a data directory of its own is dropped
        with the server; the others when the module's fixture ends."""
        base, prefix = self.env.pop(POSTGRES_ENV, None), self.env.pop(SCHEMA_PREFIX_ENV, None)
        if not base or not prefix or "TRIOSCOPE_DATABASE" in self.env or "--database" in self.argv:
            return
        data_dir = self.env["TRIOSCOPE_STORAGE_DATA_DIR"]
        self.schema = prefix + hashlib.sha256(data_dir.encode()).hexdigest()[:12]
        create_schema(base, self.schema)
        self._postgres = base
        self._own_schema = own_data_dir
        self.env["TRIOSCOPE_DATABASE"] = in_schema(base, self.schema)

    def start(self, timeout: float = 90.0) -> str:
        """Start and wait for the "listening on" line; return the base URL.

        A server that did not get there in ``timeout`` (generous: CI shares
        two cores with other tests' servers) is killed before the error is
        raised: the ``with`` statement whose ``__enter__`` failed never calls
        ``__exit__``, and such a server was left running."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("this server is running already (the with statement starts it)")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, env=self.env)
        try:
            return self._listening(timeout)
        except BaseException:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            raise

    def _listening(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"server exited early ({self.proc.wait()}):\n{self.stderr()}")
                self.banner.append(line.rstrip("\n"))
                match = _LISTENING.match(line.strip())
                if match:
                    self.base_url = match.group(1)
                    return self.base_url
        raise TimeoutError(f"server did not start within {timeout}s:\n{self.stderr()}")

    def read_banner(self, timeout: float = 10.0) -> list[str]:
        """Read the rest of the banner (up to its last line: "Ready. ...", or with a bus "Serving; ...")."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while not (self.banner and self.banner[-1].endswith(BANNER_END)) and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.banner.append(line.rstrip("\n"))
        return self.banner

    @property
    def database(self) -> Path | str:
        """Where this server keeps its store (for ``StoreReader``)."""
        return self.env.get("TRIOSCOPE_DATABASE") or Path(self.data_dir) / DATABASE_FILE

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def send_signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``signum`` and wait for the exit code (kill -9 if it overruns)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.send_signal(signum)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise
        return self.proc.returncode

    def stderr(self) -> str:
        """Everything the server wrote to stderr (its log), so far."""
        if self._stderr_text is not None:
            return self._stderr_text
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
        except BaseException:
            self.__exit__(*sys.exc_info())  # its data directory and schema too: no __exit__ follows a failed __enter__
            raise
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``/health/ready`` answers 200: with a bus, a replica serves its
        views once it has read the report stream to its end (503 ``catching_up``
        until then), which takes a moment after it listens on a loaded machine."""
        import httpx  # only the suites that wait use it

        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base_url}/health/ready", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready within {timeout}s:\n{self.stderr()}")
            time.sleep(0.05)  # the next look at the condition, not a wait for it

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        finally:
            if self.proc is not None and self.proc.stdout is not None:
                self.proc.stdout.close()
            self._stderr_text = self.stderr()
            self._stderr.close()
            self._data.cleanup()
            if self._own_schema and self.schema is not None:
                drop_schema(self._postgres, self.schema)
            if exc_info[0] is not None:
                print(f"--- server log (the test failed) ---\n{self._stderr_text[-6000:]}")  # shown by pytest

    def user_token(self, user_id: str = "alice", tenant: str = "acme", role: str = "OPERATOR",
                   ttl: float = 3600.0, issued_ago: float = 0.0) -> str:
        """A token this server accepts (signed with ``TEST_SECRET``) while not expired."""
        return mint_user_token(TEST_SECRET.encode(), user_id=user_id, tenant=tenant, role=Role(role),
                               now=time.time() - issued_ago, ttl=ttl)


def run_cli(args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m trioscope ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "trioscope", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
