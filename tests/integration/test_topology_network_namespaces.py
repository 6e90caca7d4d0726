"""A process in a network namespace of its own (``unshare -n``: no address
but its own loopback) listening on the port a host server listens on, against
the real probe and a real server: the host's clients of that server, over
loopback and over the host's address, are drawn to the host server, never to
the process in the other namespace.

Skipped only where this machine does not let the tests make a namespace
(``unshare -n`` needs CAP_SYS_ADMIN)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
import trio

from tests.free_port import free_port
from tests.integration.test_probe import probe
from tests.process_end import end
from tests.server_process import ServerProcess
from tests.waiting import eventually
from trioscope_probe._collect import host_addresses

# Listens on each address given, says so, accepts one connection on each and
# holds everything until its stdin closes.
LISTENER = """\
import socket, sys
port, addresses = int(sys.argv[1]), sys.argv[2:]
listening = [socket.create_server((address, port)) for address in addresses]
print("listening", flush=True)
held = [s.accept() for s in listening] if addresses[0] != "0.0.0.0" else []
sys.stdin.read()
"""


def _unshare_works() -> str | None:
    try:
        done = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=30,  # noqa: S607
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -n cannot run here: {exc}"
    return None if done.returncode == 0 else f"unshare -n refused here: {done.stderr.strip()}"


@contextmanager
def _listening(*command: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        yield process
    finally:
        end(process)


async def _ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    with trio.fail_after(30):  # a hung child is ended by _listening, which ends the read too
        line = await trio.to_thread.run_sync(process.stdout.readline, abandon_on_cancel=True)
    assert line.strip() == "listening", line


async def test_a_process_in_another_namespace_does_not_take_the_hosts_clients() -> None:
    problem = _unshare_works()
    if problem is not None:
        pytest.skip(problem)
    address = next((a for a in host_addresses() if "." in a), None)
    if address is None:
        pytest.skip("this host has no IPv4 address but loopback")
    port = free_port(address)
    with ExitStack() as stack:
        host_server = stack.enter_context(_listening(sys.executable, "-c", LISTENER, str(port), "127.0.0.1", address))
        await _ready(host_server)
        # Listed after the host's sockets in the probe's report (another
        # namespace's are read after its own): before the server knew each
        # socket's namespace, this one's 0.0.0.0 took the host's port.
        loner = stack.enter_context(_listening("unshare", "-n", sys.executable, "-c", LISTENER, str(port), "0.0.0.0"))
        await _ready(loner)
        stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        stack.enter_context(socket.create_connection((address, port), timeout=10))
        server = stack.enter_context(ServerProcess())
        stack.enter_context(probe(server.base_url, "probe-netns-host"))
        async with httpx.AsyncClient(timeout=30) as client:

            async def reached() -> tuple[set[int], dict[str, Any]] | None:
                topology = (await client.get(f"{server.base_url}/api/v1/query/topology",
                                             params={"view": "processes"})).json()["topology"]
                pids = {n["id"]: n["metadata"].get("pid") for n in topology["nodes"].values() if n["type"] == "process"}
                if not {host_server.pid, loner.pid} <= set(pids.values()):
                    return None  # the probe's first report is not merged yet
                me = next((node for node, pid in pids.items() if pid == os.getpid()), None)
                targets = {pids.get(e["target"]) for e in topology["edges"].values() if e["source"] == me}
                found = targets & {host_server.pid, loner.pid}
                return (found, topology) if found else None

            targets, _ = await eventually(reached, deadline=60)
            assert targets == {host_server.pid}, f"the host's clients were drawn to pid {targets}"
