"""The container engine's connection: the one place the docker SDK is loaded,
when the probe first connects to an engine (its first report cycle with
``--docker-host``, or its first container control).

The SDK (with requests and urllib3) is ~8 MB of resident memory and a good
part of the probe's start: a probe with no engine configured, or whose
engine's socket is not there, needs none of it. The modules that take a
client (``_docker``, ``_executor``, ``_follow``) import the SDK for their type
hints only, and its exception classes where a client is already in hand."""

from __future__ import annotations

import errno
import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import docker

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
"""The engine the SDK connects to without an address (``docker.from_env`` without DOCKER_HOST)."""
_SOCKET_ADDRESS = re.compile(r"unix://(/[^?#;]*)")
"""A unix socket's address with an absolute path, as the SDK takes it (a query,
fragment or parameters it refuses: left to its own parser)."""


class EngineUnreachable(Exception):
    """A client of the engine cannot be had; ``str()`` says why, in words."""


def connect(docker_host: str | None, timeout: float) -> docker.DockerClient:
    """A client of the engine at ``docker_host`` (None: the environment's, as
    the docker CLI finds it). Loads the SDK the first time, unless the
    engine's socket is not there.

    Raises:
        EngineUnreachable: the engine's unix socket does not exist (the SDK
            not loaded), or the SDK could not start a client (it asks the
            engine its API version as it starts: an engine away fails here).
    """
    absent = missing_socket(docker_host)
    if absent is not None:
        raise EngineUnreachable(absent)
    import docker  # here, not at the top: see the module's docstring
    import docker.errors

    try:
        if docker_host:
            return docker.DockerClient(base_url=docker_host, timeout=int(timeout))
        return docker.from_env(timeout=int(timeout))
    except docker.errors.DockerException as exc:
        # Its error is "Error while fetching server API version: ('Connection
        # aborted.', ...)": the reason is in its cause.
        raise EngineUnreachable(engine_problem(exc.__cause__ or exc, docker_host)) from exc


def engine_errors() -> tuple[type[Exception], ...]:
    """What a call to the engine raises when the engine fails it or cannot be
    reached: the SDK's errors (``DockerException`` first), requests' and the
    socket's. Loads the SDK."""
    import docker.errors  # see the module's docstring
    import requests.exceptions  # the SDK's own dependency, loaded with it

    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def missing_socket(docker_host: str | None) -> str | None:
    """Why the engine at ``docker_host`` (None: DOCKER_HOST, else the SDK's
    default) surely cannot be reached, without loading the SDK: its unix
    socket is not there (no engine installed, or one stopped that removed
    its socket). None if it may be (a socket that exists, a tcp:// or ssh://
    engine: only connecting tells)."""
    address = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    found = _SOCKET_ADDRESS.fullmatch(address.strip())
    if found is None or os.path.exists(found[1]):
        return None
    return f"cannot connect to socket {found[1]}: {os.strerror(errno.ENOENT)}"


def engine_problem(exc: BaseException, docker_host: str | None) -> str:
    """What failed, in words: requests wraps the socket's error in tuples
    (``('Connection aborted.', FileNotFoundError(2, ...))``), which name neither
    the socket nor the reason plainly. ``exc`` is one of ``engine_errors()``
    (the SDK is loaded)."""
    import requests.exceptions  # loaded with the SDK that raised ``exc``

    cause = _os_error(exc)
    if isinstance(exc, requests.exceptions.Timeout) or isinstance(cause, TimeoutError):
        return f"no answer in time ({type(exc).__name__})"
    where = (f"socket {docker_host.removeprefix('unix://')}" if docker_host and docker_host.startswith("unix://")
             else docker_host or "the engine of DOCKER_HOST")
    if cause is not None and cause.strerror:
        if cause.errno == errno.EACCES:
            # The socket is its group's (docker) or root's (podman's): the probe's user is neither.
            return (f"cannot connect to {where}: {cause.strerror}; the probe's user may not use it: add the user "
                    "to the socket's group (docker), or run the probe as root")
        return f"cannot connect to {where}: {cause.strerror}"
    inner = _innermost(exc)
    if isinstance(inner, ConnectionError):  # http.client's RemoteDisconnected: no errno, a tuple's repr in requests' message
        return f"{where} closed the connection without an answer ({str(inner) or type(inner).__name__})"
    return str(exc) or type(exc).__name__


def docker_host_problem(docker_host: str) -> str | None:
    """What is wrong with a ``--docker-host`` value, in one line naming the
    fix; None if the docker SDK takes it. Checked at start: the SDK refuses a
    bad one only when the first cycle connects, as "Invalid bind address
    format", which names neither the setting nor the fix. A socket's path
    without ``unix://`` (the commonest slip) is told so, with the address.
    A port that is no number (``tcp://h:x``) fails in urllib, with a
    ValueError the SDK lets through: refused alike. A unix socket's address
    with an absolute path, which the SDK always takes, is taken without
    loading it."""
    if _SOCKET_ADDRESS.fullmatch(docker_host.strip()):
        return None
    import docker.errors  # see the module's docstring
    import docker.utils

    try:
        docker.utils.parse_host(docker_host)
    except (docker.errors.DockerException, ValueError) as exc:
        if "://" not in docker_host and (docker_host.startswith(("/", ".", "~")) or docker_host.endswith(".sock")):
            path = os.path.abspath(os.path.expanduser(docker_host))
            return f"{docker_host!r} is a path, not a Docker API address: give it as unix://{path}"
        return f"{docker_host!r} is not a Docker API address ({exc}); e.g. unix:///var/run/docker.sock or tcp://host:2375"
    return None


def _innermost(exc: BaseException, depth: int = 0) -> BaseException:
    """The exception at the bottom of ``exc``'s arguments (requests wraps
    urllib3's, which wraps http.client's)."""
    inner = next((a for a in exc.args if isinstance(a, BaseException)), exc.__cause__)
    return exc if inner is None or depth > 5 else _innermost(inner, depth + 1)


def _os_error(exc: BaseException, depth: int = 0) -> OSError | None:
    """The OSError with an errno inside ``exc``'s arguments or causes, if any."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    if depth > 5:
        return None
    inner = [a for a in exc.args if isinstance(a, BaseException)] + [e for e in (exc.__cause__, exc.__context__) if e]
    return next((found for e in inner if (found := _os_error(e, depth + 1)) is not None), None)
