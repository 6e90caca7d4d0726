"""Which of a host's sockets a report needs: those the server draws edges and
places nodes by. A busy host has tens of thousands of sockets, most of them
the server side of connections (their clients report the edges) and pools of
client sockets to one endpoint (one edge): sent whole, they were ~56x what
the server keeps, and with the report cut to its memory budget they went
first, every edge of the host with them. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from ._addresses import ListeningPorts, is_connected, is_listener, normal_address, protocol_family, socket_namespace
from ._models import Connection


def edge_sockets(connections: Sequence[Connection], own: int | None) -> list[Connection]:
    """``connections`` (in order) as the server reads them, without the rest:
    every listener; of the connected sockets, one per process, namespace and
    remote endpoint, and none a listener accepted; and for each process and
    namespace left with no socket, its first one (the server places a process
    in its network namespace by its sockets; the first of a process's sockets
    in another namespace places it, so the order is kept). ``own``: the
    probe's namespace."""
    listening = ListeningPorts()
    for conn in connections:
        if is_listener(conn.protocol, conn.state, conn.remote_address):
            listening.add(conn.protocol, conn.local_port, conn.local_address, socket_namespace(conn.netns, own))
    kept: list[int] = []
    endpoints: set[tuple[int | None, int | None, str, str, int]] = set()
    placed: set[tuple[int | None, int | None]] = set()
    left: list[int] = []
    for index, conn in enumerate(connections):
        netns = socket_namespace(conn.netns, own)
        if is_listener(conn.protocol, conn.state, conn.remote_address):
            kept.append(index)
        elif is_connected(conn.protocol, conn.state, conn.remote_address) and not listening.serves(
                conn.protocol, conn.local_port, conn.local_address, netns):
            endpoint = (conn.pid, netns, protocol_family(conn.protocol), normal_address(conn.remote_address),
                        conn.remote_port)
            if endpoint in endpoints:
                continue
            endpoints.add(endpoint)
            kept.append(index)
        else:
            left.append(index)
            continue
        placed.add((conn.pid, netns))
    for index in left:
        conn = connections[index]
        owner = (conn.pid, socket_namespace(conn.netns, own))
        if conn.pid is not None and owner not in placed:
            placed.add(owner)
            kept.append(index)
    return [connections[index] for index in sorted(kept)]
