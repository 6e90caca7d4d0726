"""The sockets of other network namespaces: /proc/<pid>/net tables decoded as
psutil decodes its own, each socket given the process holding it, read
through a fake /proc tree (and once against this machine's kernel)."""

from __future__ import annotations

import logging
import os
import socket
import sys
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest

from trioscope_probe._collect import connections
from trioscope_probe._netns import (
    Entry, NamespaceSockets, namespaces, own_namespace, parse_table, read_table, socket_owners, sockets_in_use,
)

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="the fixtures are as a little-endian kernel writes them")

# The listener container's namespace (10.88.0.9) as Linux 6.x writes it: a
# listener on 0.0.0.0:9000, a client's connection to it from 10.88.0.10:47230,
# and a closed one in TIME_WAIT (no inode: no file holds it).
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41873 1 0000000071f6a0e5 100 0 0 10 0
   1: 0900580A:2328 0A00580A:B87E 01 00000000:00000000 00:00000000 00000000     0        0 41902 1 00000000a1c3e7b2 20 4 30 10 -1
   2: 0900580A:2328 0A00580A:B880 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 00000000c3d2f1a0
"""
# A dual-stack listener on :::9000, the IPv4 client it accepted (IPv4-mapped),
# and a connection over IPv6 proper from 2001:db8::5:8080 to 2001:db8::9:54321.
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41874 1 00000000e2f1c0d3 100 0 0 10 0
   1: 0000000000000000FFFF00000900580A:2328 0000000000000000FFFF00000A00580A:B882 01 00000000:00000000 00:00000000 00000000     0        0 41905 1 000000005b7c9e10 20 4 31 10 -1
   2: B80D0120000000000000000005000000:1F90 B80D0120000000000000000009000000:D431 01 00000000:00000000 00:00000000 00000000  1000        0 41990 1 0000000012ab34cd 20 4 29 10 -1
"""
# A DNS server's unconnected socket on 0.0.0.0:53 and a connected client socket.
UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  273: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 42001 2 00000000d1e2f3a4 0
  811: 0A00580A:A1B2 0900580A:0035 01 00000000:00000000 00:00000000 00000000     0        0 42002 2 00000000e5f6a7b8 0
"""
UDP6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
EMPTY_TCP = TCP.splitlines(keepends=True)[0]


@little_endian
def test_a_tcp_table_decodes_addresses_ports_states_and_inodes() -> None:
    assert list(parse_table(TCP.splitlines(), "tcp")) == [
        Entry("tcp", ("0.0.0.0", 9000), None, "LISTEN", 41873),
        Entry("tcp", ("10.88.0.9", 9000), ("10.88.0.10", 47230), "ESTABLISHED", 41902),
        Entry("tcp", ("10.88.0.9", 9000), ("10.88.0.10", 47232), "TIME_WAIT", 0),
    ]


@little_endian
def test_a_tcp6_table_keeps_ipv4_mapped_addresses_as_psutil_does() -> None:
    assert list(parse_table(TCP6.splitlines(), "tcp")) == [
        Entry("tcp", ("::", 9000), None, "LISTEN", 41874),
        Entry("tcp", ("::ffff:10.88.0.9", 9000), ("::ffff:10.88.0.10", 47234), "ESTABLISHED", 41905),
        Entry("tcp", ("2001:db8::5", 8080), ("2001:db8::9", 54321), "ESTABLISHED", 41990),
    ]


@little_endian
def test_udp_sockets_have_no_state_and_an_unconnected_one_no_remote_end() -> None:
    assert list(parse_table(UDP.splitlines(), "udp")) == [
        Entry("udp", ("0.0.0.0", 53), None, "NONE", 42001),
        Entry("udp", ("10.88.0.10", 41394), ("10.88.0.9", 53), "NONE", 42002),
    ]


def test_lines_that_are_not_sockets_are_skipped() -> None:
    lines = [EMPTY_TCP, "", "   0: 0100007F:ZZZZ 00000000:0000 0A 0 0 0 0 0 1", "   1: 7F:0050 00000000:0000 0A 0 0 0 0 0 2",
             "   2: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 3 1 0"]
    assert [e.inode for e in parse_table(lines, "tcp")] == [3]


def test_the_kernels_own_table_decodes_as_psutil_reads_it() -> None:
    # This machine's kernel writes the table (its byte order, its format, a page
    # of lines per read): listeners enough for several pages and a connection,
    # over IPv4 and (where there is IPv6) IPv6.
    families = [(socket.AF_INET, "127.0.0.1", "tcp")] + (
        [(socket.AF_INET6, "::1", "tcp6")] if socket.has_ipv6 and os.path.exists("/proc/self/net/tcp6") else [])
    for family, address, table in families:
        with ExitStack() as stack:
            listeners = [stack.enter_context(socket.socket(family)) for _ in range(60)]
            for listener in listeners:
                listener.bind((address, 0))
                listener.listen()
            client = stack.enter_context(socket.socket(family))
            client.connect(listeners[-1].getsockname()[:2])
            # Others' sockets on this machine may have these ports on other
            # addresses, and another connection may have the client's port (to
            # another end): only ends that are all ours.
            mine = {(address, s.getsockname()[1]) for s in [*listeners, client]}
            ours = {(e.local, e.remote, e.status) for e in parse_table(read_table(f"/proc/self/net/{table}", 10**6), "tcp")
                    if e.local in mine and (e.remote is None or e.remote in mine)}
            theirs = {(tuple(c.laddr), tuple(c.raddr) or None, c.status) for c in psutil.net_connections("tcp")
                      if c.family == family and c.laddr and tuple(c.laddr) in mine
                      and (not c.raddr or tuple(c.raddr) in mine)}
            assert ours == theirs and len(ours) == 62  # the listeners, both ends of the connection


def test_a_table_is_read_to_its_end_or_a_little_past_the_limit(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    line = TCP.splitlines(keepends=True)[1]
    table.write_text(EMPTY_TCP + line * 2000)  # 300 kB: several reads
    assert len(read_table(str(table), 10**6)) == 2001
    assert 10 < len(read_table(str(table), 10)) < 2001


# ---- a fake /proc -------------------------------------------------------------------------

def _process(root: Path, pid: int, namespace: int, sockets: dict[int, int] | None = None,
             tables: dict[str, str] | None = None) -> None:
    """/proc/<pid> with its namespace link, its file descriptors (fd -> socket
    inode; fd 0 is a file) and, given ``tables``, /proc/<pid>/net/<name>."""
    directory = root / str(pid)
    (directory / "ns").mkdir(parents=True)
    (directory / "ns" / "net").symlink_to(f"net:[{namespace}]")
    (directory / "fd").mkdir()
    (directory / "fd" / "0").symlink_to("/dev/null")
    for fd, inode in (sockets or {}).items():
        (directory / "fd" / str(fd)).symlink_to(f"socket:[{inode}]")
    if tables is not None:
        (directory / "net").mkdir()
        for name, text in tables.items():
            (directory / "net" / name).write_text(text)


HOST, LISTENER, CLIENT, GONE = 4026531840, 4026532281, 4026532350, 4026532400
ALL_TABLES = {"tcp": TCP, "tcp6": TCP6, "udp": UDP, "udp6": UDP6}


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """The host's namespace (the probe's own) with an init whose table must not
    be read again; the listener's container (a shell, the listener, its worker
    sharing the accepted socket); a client container whose first process is
    gone (no tables through it) and a namespace with nothing left to read."""
    (tmp_path / "self" / "ns").mkdir(parents=True)
    (tmp_path / "self" / "ns" / "net").symlink_to(f"net:[{HOST}]")
    _process(tmp_path, 1, HOST, {3: 41873}, ALL_TABLES)  # would report the listener's sockets as init's
    _process(tmp_path, 700, LISTENER, {}, ALL_TABLES)
    _process(tmp_path, 712, LISTENER, {3: 41873, 4: 41874, 5: 41990, 6: 42001}, ALL_TABLES)
    _process(tmp_path, 713, LISTENER, {4: 41902, 5: 41905}, ALL_TABLES)
    _process(tmp_path, 812, LISTENER, {4: 41902}, ALL_TABLES)  # a later holder of the same socket
    _process(tmp_path, 800, CLIENT)  # exited: its /proc/<pid>/net is gone
    client_tcp = EMPTY_TCP + "   0: 0A00580A:B87E 0900580A:2328 01 00000000:00000000 00:00000000 00000000 0 0 51000 1 0 20 4 30 10 -1\n"
    _process(tmp_path, 801, CLIENT, {3: 51000}, {"tcp": client_tcp, "udp": UDP.splitlines(keepends=True)[0]})
    _process(tmp_path, 900, GONE)
    (tmp_path / "sys").mkdir()  # not a process
    return tmp_path


def test_processes_are_grouped_by_network_namespace(proc: Path) -> None:
    groups, denied = namespaces(str(proc))
    assert groups == {f"net:[{HOST}]": [1], f"net:[{LISTENER}]": [700, 712, 713, 812],
                      f"net:[{CLIENT}]": [800, 801], f"net:[{GONE}]": [900]} and denied == []


@pytest.mark.parametrize("capabilities", ["000001ffffffffff", "000001fffff7ffff", "0000000000000000"],
                         ids=["root", "root without CAP_SYS_PTRACE", "not root"])
def test_unreadable_namespaces_are_named_by_their_pids(proc: Path, caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch, capabilities: str) -> None:
    """With CAP_SYS_PTRACE the refusal is a sandbox's (its pid 1): a hint would
    mislead. Without it (not root, or root in a container without
    ``--cap-add SYS_PTRACE``), what to grant."""
    from trioscope_probe import _netns
    readlink = _netns._namespace

    def refusing(proc_root: str, pid: str) -> str:
        if pid in ("1", "800"):
            raise PermissionError(13, "Permission denied")
        return readlink(proc_root, pid)

    monkeypatch.setattr(_netns, "_namespace", refusing)
    (proc / "self" / "status").write_text(f"Name:\tprobe\nCapEff:\t{capabilities}\n")
    caplog.set_level(logging.WARNING)
    assert namespaces(str(proc))[1] == [1, 800]
    NamespaceSockets(str(proc)).collect()
    (message,) = [r.getMessage() for r in caplog.records]
    assert "network namespaces unreadable (permission denied" in message and "of 2 process(es), pids 1, 800:" in message
    assert ("CAP_SYS_PTRACE" in message) == (capabilities != "000001ffffffffff"), message


def test_a_socket_belongs_to_the_lowest_pid_holding_it(proc: Path) -> None:
    owners, denied = socket_owners(str(proc), [700, 712, 713, 812], {41873, 41902, 41905, 99999})
    assert owners == {41873: 712, 41902: 713, 41905: 713} and denied == 0


def test_descriptors_listed_but_whose_links_are_refused_are_counted_as_unreadable(
        proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root in a container without CAP_SYS_PTRACE lists /proc/<pid>/fd but may
    read none of its links: those sockets went unreported as if closed."""
    from trioscope_probe import _netns
    readlink = os.readlink

    def refusing(path: str) -> str:
        if "/713/fd/" in path:
            raise PermissionError(13, "Permission denied")
        return readlink(path)

    monkeypatch.setattr(_netns.os, "readlink", refusing)
    owners, denied = socket_owners(str(proc), [700, 712, 713, 812], {41873, 41902, 41905})
    assert owners == {41873: 712, 41902: 812} and denied == 1


@little_endian
def test_other_namespaces_sockets_come_with_their_processes(proc: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    found = {(e.protocol, e.local, e.remote, e.status, pid, netns)
             for e, pid, netns in NamespaceSockets(str(proc)).collect()}
    assert found == {
        ("tcp", ("0.0.0.0", 9000), None, "LISTEN", 712, LISTENER),
        ("tcp", ("10.88.0.9", 9000), ("10.88.0.10", 47230), "ESTABLISHED", 713, LISTENER),
        ("tcp", ("::", 9000), None, "LISTEN", 712, LISTENER),
        ("tcp", ("::ffff:10.88.0.9", 9000), ("::ffff:10.88.0.10", 47234), "ESTABLISHED", 713, LISTENER),
        ("tcp", ("2001:db8::5", 8080), ("2001:db8::9", 54321), "ESTABLISHED", 712, LISTENER),
        ("udp", ("0.0.0.0", 53), None, "NONE", 712, LISTENER),
        # The client's namespace, read through its second process (tcp6 and udp6 absent: no IPv6).
        ("tcp", ("10.88.0.10", 47230), ("10.88.0.9", 9000), "ESTABLISHED", 801, CLIENT),
    }  # left out: the TIME_WAIT socket and the connected UDP one (no process holds them), init's table
    # GONE's process exited mid-read (its tables are gone): an exit, not a refusal, and said as none.
    assert not caplog.records


def refusing_tables(monkeypatch: pytest.MonkeyPatch, pid: int) -> None:
    """/proc/<pid>/net refused, as a process of another user's is to a probe that is not root."""
    from trioscope_probe import _netns
    counted = _netns.sockets_in_use

    def refusing(directory: str) -> dict[str, int]:
        if directory.endswith(f"/{pid}/net"):
            raise PermissionError(13, "Permission denied")
        return counted(directory)

    monkeypatch.setattr(_netns, "sockets_in_use", refusing)


@little_endian
def test_a_namespace_that_cannot_be_read_is_logged_once_while_it_exists(
        proc: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO)
    refusing_tables(monkeypatch, 900)
    sockets = NamespaceSockets(str(proc))
    for _ in range(3):
        sockets.collect()
    assert len(caplog.records) == 1
    (proc / "900" / "ns" / "net").unlink()  # the namespace ends; a new one later
    (proc / "900" / "ns" / "net").symlink_to("net:[4026532999]")
    sockets.collect()
    sockets.collect()
    assert len(caplog.records) == 2 and "net:[4026532999]" in caplog.records[1].getMessage()


@little_endian
def test_entries_and_namespaces_read_per_cycle_are_capped(proc: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    # Three entries: the listener's namespace (the oldest, read first) gives its
    # table's first three, the client's namespace is not read.
    assert {(e.local, pid) for e, pid, _ in NamespaceSockets(str(proc)).collect(budget=3)} == {
        (("0.0.0.0", 9000), 712), (("10.88.0.9", 9000), 713)}
    one = NamespaceSockets(str(proc), max_namespaces=1)
    for _ in range(2):
        assert {pid for _, pid, _ in one.collect()} == {712, 713}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "the rest are not reported" in messages[0]
    assert messages[1] == "3 network namespaces, the connections of the first 1 are reported"


SOCKSTAT = """\
sockets: used 2
TCP: inuse 0 orphan 0 tw 0 alloc 37 mem 0
UDP: inuse 1 mem 0
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
"""
SOCKSTAT6 = """\
TCP6: inuse 2
UDP6: inuse 0
UDPLITE6: inuse 0
RAW6: inuse 0
FRAG6: inuse 0 memory 0
"""


def test_the_namespaces_counters_say_which_tables_hold_sockets(tmp_path: Path) -> None:
    (tmp_path / "sockstat").write_text(SOCKSTAT)
    assert sockets_in_use(str(tmp_path)) == {"tcp": 0, "udp": 1}  # no sockstat6: no IPv6, or it is gone
    (tmp_path / "sockstat6").write_text(SOCKSTAT6)
    assert sockets_in_use(str(tmp_path)) == {"tcp": 0, "udp": 1, "tcp6": 2, "udp6": 0}


@little_endian
def test_a_table_the_counters_say_is_empty_is_not_read(proc: Path) -> None:
    # (Reading it would cost a walk of the kernel's whole socket hash table.)
    (proc / "801" / "net" / "sockstat").write_text(SOCKSTAT)  # TCP: inuse 0, but its table (made up) has one
    assert 801 not in {pid for _, pid, _ in NamespaceSockets(str(proc)).collect()}
    (proc / "801" / "net" / "sockstat").write_text(SOCKSTAT.replace("TCP: inuse 0", "TCP: inuse 1"))
    assert 801 in {pid for _, pid, _ in NamespaceSockets(str(proc)).collect()}


def test_without_proc_there_is_nothing_to_add(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert NamespaceSockets(str(tmp_path / "none")).collect() == []
    assert "only this probe's own connections are reported" in caplog.text


@little_endian
def test_the_report_carries_them_as_it_carries_psutils(proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "net_connections", lambda kind: [])  # this machine's own sockets: not the point
    found = connections(NamespaceSockets(str(proc)))
    assert len(found) == 7
    listener = next(c for c in found if (c.local_address, c.local_port) == ("0.0.0.0", 9000))
    dns = next(c for c in found if c.local_port == 53)
    client = next(c for c in found if c.pid == 801)
    assert (listener.protocol, listener.state, listener.remote_address, listener.remote_port) == ("tcp", "listen", "", 0)
    assert (dns.protocol, dns.state, dns.pid) == ("udp", "", 712)
    assert (client.local_address, client.remote_address, client.remote_port, client.state) == (
        "10.88.0.10", "10.88.0.9", 9000, "established")
    # Each in its namespace: the listener's 127.0.0.1 or 0.0.0.0 is not the host's.
    assert (listener.netns, dns.netns, client.netns) == (LISTENER, LISTENER, CLIENT)


def test_the_processes_of_other_namespaces_are_listed_with_theirs(proc: Path) -> None:
    sockets = NamespaceSockets(str(proc))
    sockets.collect()
    assert sockets.others == {700: LISTENER, 712: LISTENER, 713: LISTENER, 812: LISTENER, 800: CLIENT, 801: CLIENT,
                              900: GONE}  # not init, in the probe's own


def test_the_probes_own_namespace_is_read_as_its_inode(proc: Path, tmp_path: Path) -> None:
    assert own_namespace(str(proc)) == HOST
    assert own_namespace(str(tmp_path / "none")) is None
    from trioscope_probe._netns import inode as number

    assert number("net:[4026531840]") == 4026531840 and number("mnt:[4026531840]") is None and number("net:[x]") is None
