"""Container controls: what a command of each type does to the engine.

Each handler takes the command's parameters and a docker client and returns
the result (JSON-ready) or raises ``ControlError`` with a message for the
operator. They block (the docker SDK does), so the agent runs them in a worker
thread under the command's timeout. The SDK is loaded by the client's
connection (``_engine``), not by importing this module: the agent imports it
at start, with or without an engine.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._engine import engine_errors

if TYPE_CHECKING:
    import docker

MAX_OUTPUT = 64 * 1024
"""Bytes of logs or exec output kept in a result (the rest is cut, and said so)."""
DEFAULT_ALLOWED = ("docker.start", "docker.stop", "docker.restart", "docker.pause", "docker.unpause",
                   "docker.remove", "docker.inspect", "docker.logs")
"""What a probe runs unless ``--allow`` says otherwise: every control but
``docker.exec``, which runs any command in any container of the host for
whoever may control it (a deployment's operators, its tenant's admins, and
anyone who can pose as the server over http://): asked for by name."""
KNOWN = (*DEFAULT_ALLOWED, "docker.exec")
"""Every control a probe can run."""
CHANGES_CONTAINERS = frozenset({"docker.start", "docker.stop", "docker.restart", "docker.pause", "docker.unpause",
                                "docker.remove"})
"""Controls after which the containers differ: the probe reports at once."""


class ControlError(Exception):
    """The control cannot be done; the message says why."""


def _container(client: docker.DockerClient, parameters: dict[str, Any]) -> Any:
    target = parameters.get("container") or parameters.get("container_id")
    if not isinstance(target, str) or not target:
        raise ControlError("parameters.container (a container id or name) is required")
    import docker.errors  # loaded with ``client`` (``_engine.connect``): a lookup

    try:
        return client.containers.get(target)
    except docker.errors.NotFound:
        raise ControlError(f"no container {target!r}") from None


def _int(parameters: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = parameters.get(name, default)
    if type(value) is not int or not low <= value <= high:
        raise ControlError(f"parameters.{name} must be an integer from {low} to {high}")
    return value


def _tail(chunks: Iterable[bytes]) -> dict[str, Any]:
    """The last ``MAX_OUTPUT`` bytes of a stream, and how many there were: read
    as it comes, never all at once (``yes`` in a container would fill memory)."""
    kept = bytearray()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        kept += chunk
        if len(kept) > 2 * MAX_OUTPUT:
            del kept[:-MAX_OUTPUT]
    text = bytes(kept[-MAX_OUTPUT:]).decode("utf-8", "replace")
    return {"output": text, "truncated": total > MAX_OUTPUT, "bytes": total}


def _state(container: Any) -> dict[str, Any]:
    container.reload()
    return {"container_id": container.id, "name": container.name, "state": container.status}


def _plain(method: str) -> Callable[[docker.DockerClient, dict[str, Any]], dict[str, Any]]:
    """A control that is one call on the container with no parameters of its own."""

    def handler(client: docker.DockerClient, parameters: dict[str, Any]) -> dict[str, Any]:
        container = _container(client, parameters)
        getattr(container, method)()
        return _state(container)

    return handler


def stop(client: docker.DockerClient, parameters: dict[str, Any]) -> dict[str, Any]:
    container = _container(client, parameters)
    timeout = _int(parameters, "timeout", 10, 0, 600)
    if container.status == "paused":
        # Podman refuses to stop a paused container ("container state improper"),
        # which the server offers a stop for, as Docker takes one.
        container.unpause()
    container.stop(timeout=timeout)
    return _state(container)


def restart(client: docker.DockerClient, parameters: dict[str, Any]) -> dict[str, Any]:
    container = _container(client, parameters)
    container.restart(timeout=_int(parameters, "timeout", 10, 0, 600))
    return _state(container)


def remove(client: docker.DockerClient, parameters: dict[str, Any]) -> dict[str, Any]:
    container = _container(client, parameters)
    force = parameters.get("force", False)
    if type(force) is not bool:
        raise ControlError("parameters.force must be true or false")
    container.remove(force=force)
    return {"container_id": container.id, "name": container.name, "state": "removed"}


def inspect(client: docker.DockerClient, parameters: dict[str, Any]) -> dict[str, Any]:
    container = _container(client, parameters)
    attrs = container.attrs
    return {"container_id": container.id, "name": container.name, "state": container.status,
            "image": attrs.get("Config", {}).get("Image"), "created": attrs.get("Created"),
            "restart_count": attrs.get("RestartCount"), "exit_code": attrs.get("State", {}).get("ExitCode")}


def logs(client: docker.DockerClient, parameters: dict[str, Any]) -> dict[str, Any]:
    container = _container(client, parameters)
    tail = _int(parameters, "tail", 100, 1, 10_000)
    chunks = container.logs(tail=tail, stdout=True, stderr=True, stream=True, follow=False)
    return {"container_id": container.id, "tail": tail, **_tail(chunks)}


EXEC_TIME_LIMIT = 300
"""Seconds an exec runs at most unless its ``timeout`` says (the agent sets it to
the command's own when that is shorter)."""


MAX_EXEC_SECONDS = 7 * 86_400
"""The longest ``timeout`` an exec takes: a command's longest (the server's ``timeout_seconds``)."""


class _TimedOut(Exception):
    pass


def exec_(client: docker.DockerClient, parameters: dict[str, Any]) -> dict[str, Any]:
    """Run ``argv`` in the container, its output read until it ends or
    ``timeout`` passes. Then the stream is closed and the process killed: one
    left running (``sleep``, ``tail -f``) held an engine thread of the probe
    for ever, and its output's reading took CPU after the command had failed;
    eight of them and no command ran any more."""
    container = _container(client, parameters)
    argv = parameters.get("argv")
    if not (isinstance(argv, list) and argv and len(argv) <= 256 and all(isinstance(a, str) for a in argv)):
        raise ControlError("parameters.argv must be a non-empty list of strings (no shell is involved)")
    limit = _int(parameters, "timeout", EXEC_TIME_LIMIT, 1, MAX_EXEC_SECONDS)
    exec_id = client.api.exec_create(container.id, argv, stdout=True, stderr=True)["Id"]
    stream = client.api.exec_start(exec_id, socket=True)
    deadline = time.monotonic() + limit

    raw: Any = getattr(stream, "_sock", stream)  # the socket under the SDK's file-like wrapper

    def exactly(size: int) -> bytes | None:
        """``size`` bytes, None at the stream's end. Read here, not by the SDK's
        helpers, which wait for data with no time limit."""
        got = bytearray()
        while len(got) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _TimedOut
            raw.settimeout(left)
            try:
                chunk = raw.recv(size - len(got))
            except TimeoutError:
                raise _TimedOut from None
            if not chunk:
                return None
            got += chunk
        return bytes(got)

    def frames() -> Iterator[bytes]:
        # The engine's multiplexed stream: a header (stream, 3 zero bytes, a
        # big-endian length), then that many bytes of output.
        while (header := exactly(8)) is not None:
            payload = exactly(int.from_bytes(header[4:], "big"))
            if payload is None:
                return
            yield payload

    try:
        output = _tail(frames())
    except _TimedOut:
        stream.close()
        raise ControlError(f"timed out after {limit}s; {_end_exec(client, container, exec_id, argv)}") from None
    finally:
        stream.close()
    exit_code = client.api.exec_inspect(exec_id).get("ExitCode")
    return {"container_id": container.id, "exit_code": exit_code, **output}


def _end_exec(client: docker.DockerClient, container: Any, exec_id: str, argv: list[str]) -> str:
    """Kill an exec's process that outlived its time; what became of it, said.
    The engine can start an exec but not stop one: its process is killed by
    its pid as this host sees it, and only where that is surely the process
    this exec started: the engine on this machine (a unix socket: a remote
    engine's pids are another machine's), the pid in the container's own pid
    namespace (the container's main process's, read through ``/proc``) and
    running the exec's argv, held by a pidfd from the check to the kill (a pid
    freed meanwhile and taken again is not hit)."""
    found = client.api.exec_inspect(exec_id)
    pid = found.get("Pid")
    if not found.get("Running") or type(pid) is not int or pid <= 0:
        return "it has ended"
    runs_on = f"its process (pid {pid} on the engine's host) runs on"
    # docker-py's address for a unix socket; a tcp:// or ssh:// engine is another machine.
    main = (container.attrs.get("State") or {}).get("Pid")
    if client.api.base_url != "http+docker://localhost" or type(main) is not int or main <= 0:
        return f"{runs_on}: this probe cannot tell it is the exec's"
    try:
        held = os.pidfd_open(pid)
    except OSError:
        return f"{runs_on}: this probe cannot reach it"
    try:
        ours = os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{main}/ns/pid") and \
            Path(f"/proc/{pid}/cmdline").read_bytes() == b"\0".join(a.encode() for a in argv) + b"\0"
        if not ours:
            return f"{runs_on}: this probe cannot tell it is the exec's"
        signal.pidfd_send_signal(held, signal.SIGKILL)
    except ProcessLookupError:
        return "it has ended"
    except PermissionError:
        return f"its process (pid {pid}) runs on: this probe may not kill it"
    except OSError:
        return f"{runs_on}: this probe cannot tell it is the exec's"
    finally:
        os.close(held)
    return f"its process (pid {pid}) was killed"


HANDLERS: dict[str, Callable[[docker.DockerClient, dict[str, Any]], dict[str, Any]]] = {
    "docker.start": _plain("start"), "docker.stop": stop, "docker.restart": restart,
    "docker.pause": _plain("pause"), "docker.unpause": _plain("unpause"), "docker.remove": remove,
    "docker.inspect": inspect, "docker.logs": logs,
    "docker.exec": exec_,
}


def check(command_type: str, parameters: Any, allowed: tuple[str, ...] = DEFAULT_ALLOWED) -> None:
    """What can be refused before the engine is asked: the probe says why
    (an unknown or disallowed type), not that it has no engine.

    Raises:
        ControlError: an unknown or disallowed type, or parameters that are no object.
    """
    if command_type not in HANDLERS:
        raise ControlError(f"unknown command type {command_type!r}; this probe runs: {', '.join(sorted(HANDLERS))}")
    if command_type not in allowed:
        raise ControlError(f"command type {command_type!r} is not allowed on this probe")
    if not isinstance(parameters, dict):
        raise ControlError("parameters must be an object")


def execute(client: docker.DockerClient, command_type: str, parameters: Any,
            allowed: tuple[str, ...] = DEFAULT_ALLOWED) -> dict[str, Any]:
    """Run one control.

    Raises:
        ControlError: unknown or disallowed type, bad parameters (``check``),
            the engine refused, or it did not answer (hung, restarting, gone).
    """
    check(command_type, parameters, allowed)
    import docker.errors  # loaded with ``client`` (``_engine.connect``): a lookup

    try:
        return HANDLERS[command_type](client, parameters)
    except docker.errors.APIError as exc:
        raise ControlError(f"the engine refused: {exc.explanation or exc}") from None
    except engine_errors() as exc:
        raise ControlError(f"the engine did not answer: {type(exc).__name__}: {exc}") from None
