"""Sockets of the network namespaces other than the probe's own.

``psutil.net_connections`` reads /proc/net/{tcp,udp}{,6}: the tables of the
probe's own network namespace only. Two containers on a bridge network talk in
their own namespaces, so without this neither side of their connection is
reported. A namespace's tables can be read through any process in it
(/proc/<pid>/net/tcp is the table of <pid>'s namespace), and a socket belongs
to the process whose /proc/<pid>/fd holds a link ``socket:[<inode>]`` to it.
Weave Scope's probe does the same (procspy).

The entries are decoded as psutil decodes its own (state names, addresses,
an endpoint without a port left out), so the report carries them in one form.
"""

from __future__ import annotations

import logging
import mmap
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from itertools import islice

import attrs
import psutil

from ._rights import namespace_inode, standing, what_to_grant

log = logging.getLogger("trioscope_probe")

MAX_NAMESPACES = 10_000
"""Namespaces read per cycle: the wire's limit on a report's containers (each
container has at most one namespace of its own)."""
MAX_CONNECTIONS = 200_000
"""The wire's limit on a report's connections (``Connections``): the other
namespaces get what the probe's own leave of it, counted in table entries read."""

_TABLES = (("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp"))
"""(file under /proc/<pid>/net, protocol as the report names it: its family is not kept, as psutil's is not)."""

_TCP_STATES = {
    "01": psutil.CONN_ESTABLISHED, "02": psutil.CONN_SYN_SENT, "03": psutil.CONN_SYN_RECV,
    "04": psutil.CONN_FIN_WAIT1, "05": psutil.CONN_FIN_WAIT2, "06": psutil.CONN_TIME_WAIT,
    "07": psutil.CONN_CLOSE, "08": psutil.CONN_CLOSE_WAIT, "09": psutil.CONN_LAST_ACK,
    "0A": psutil.CONN_LISTEN, "0B": psutil.CONN_CLOSING,
}
"""The kernel's TCP states (include/net/tcp_states.h) -> psutil's names."""


@attrs.frozen
class Entry:
    """One socket of a /proc/<pid>/net/{tcp,udp}{,6} table."""

    protocol: str
    """``tcp`` or ``udp``."""
    local: tuple[str, int] | None
    """(address, port); None without a port, as psutil leaves it out."""
    remote: tuple[str, int] | None
    """(address, port); None for a listening or unconnected socket."""
    status: str
    """psutil's name (``ESTABLISHED``, ``LISTEN``, ...); ``NONE`` for UDP, as psutil says."""
    inode: int
    """The socket's inode, 0 for one no file holds (TIME_WAIT)."""


def _endpoint(text: str) -> tuple[str, int] | None:
    """``0100007F:1F90`` -> ("127.0.0.1", 8080). The kernel prints each 32-bit
    word of the address as the integer it is in memory, so the address's bytes
    are those integers packed in this machine's byte order."""
    address, _, port = text.partition(":")
    number = int(port, 16)
    if len(address) not in (8, 32):
        raise ValueError(f"not an address: {text!r}")
    if not number:
        return None
    words = [int(address[i:i + 8], 16) for i in range(0, len(address), 8)]
    family = socket.AF_INET if len(words) == 1 else socket.AF_INET6
    # An IPv4-mapped IPv6 address stays "::ffff:10.0.0.1", as psutil has it.
    return socket.inet_ntop(family, struct.pack(f"={len(words)}I", *words)), number


def parse_table(lines: Iterable[str], protocol: str) -> Iterator[Entry]:
    """The entries of a /proc/net/{tcp,udp}{,6} table's lines (its header and
    any line it cannot read are skipped)."""
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or not fields[0].endswith(":"):
            continue  # the header
        try:
            local, remote, inode = _endpoint(fields[1]), _endpoint(fields[2]), int(fields[9])
        except ValueError:
            continue
        status = _TCP_STATES.get(fields[3].upper(), psutil.CONN_NONE) if protocol == "tcp" else psutil.CONN_NONE
        yield Entry(protocol=protocol, local=local, remote=remote, status=status, inode=inode)


_LAST_READ = mmap.PAGESIZE - 1024
"""A read of a table returning at most this many bytes returned its end. The
kernel answers a read of /proc/net/tcp one buffer (a page) of whole lines at a
time, and each line is under 300 bytes: a read with room left for another
line ended because the table did. Each further read (the one that would say
end-of-file) walks the kernel's whole socket hash table again (half a
millisecond on a machine with 24 GB), in every namespace however few its sockets."""
_IN_USE = {"TCP": "tcp", "TCP6": "tcp6", "UDP": "udp", "UDP6": "udp6"}
"""/proc/<pid>/net/sockstat{,6} lines -> the table their ``inuse`` counts the sockets of."""


def read_table(path: str, limit: int) -> list[str]:
    """The lines of a /proc/<pid>/net table: its header and at least ``limit``
    more where it has them (reading stops soon after)."""
    chunks: list[bytes] = []
    lines = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while lines <= limit:
            chunk = os.read(fd, 65536)
            chunks.append(chunk)
            lines += chunk.count(b"\n")
            if len(chunk) <= _LAST_READ:
                break
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("ascii", "replace")
    return text[:text.rfind("\n") + 1].splitlines()  # whole lines (a file that is not the kernel's may cut one)


def sockets_in_use(directory: str) -> dict[str, int]:
    """How many sockets each table of a namespace's /proc/<pid>/net holds
    (from sockstat and sockstat6: counters, cheap to read); a table missing here
    may hold any. Sockets no file holds (TIME_WAIT, SYN_RECV) are not counted:
    they have no process, so they are not reported anyway."""
    counts: dict[str, int] = {}
    for name in ("sockstat", "sockstat6"):
        try:
            with open(f"{directory}/{name}", "rb") as handle:
                text = handle.read().decode("ascii", "replace")  # the kernel's words and numbers
        except FileNotFoundError:
            continue  # a kernel without IPv6 (or the process is gone: its tables will say)
        for line in text.splitlines():
            label, _, fields = line.partition(":")
            values = fields.split()
            if label in _IN_USE and len(values) >= 2 and values[0] == "inuse" and values[1].isdigit():
                counts[_IN_USE[label]] = int(values[1])
    return counts


def _namespace(proc_root: str, pid: str) -> str:
    """``net:[4026532281]``: the link names the namespace (its inode)."""
    return os.readlink(f"{proc_root}/{pid}/ns/net")


def inode(namespace: str) -> int | None:
    """``net:[4026532281]`` -> 4026532281 (the report's ``netns``); None for a link of another form."""
    return namespace_inode(namespace, "net")


def own_namespace(proc_root: str = "/proc") -> int | None:
    """This probe's network namespace's inode: the one its host addresses and
    its own socket tables (psutil's) are in; None if it cannot be read."""
    try:
        return inode(_namespace(proc_root, "self"))
    except OSError:
        return None


def namespaces(proc_root: str = "/proc") -> tuple[dict[str, list[int]], list[int]]:
    """The processes of each network namespace, ascending, and the processes
    whose namespace this probe may not read (another user's, when it is not
    root; as root, a sandbox's such as gVisor's pid 1), ascending."""
    found: dict[str, list[int]] = {}
    denied: list[int] = []
    for name in os.listdir(proc_root):
        if not name.isdigit():
            continue
        try:
            found.setdefault(_namespace(proc_root, name), []).append(int(name))
        except PermissionError:
            denied.append(int(name))
        except OSError:
            continue  # gone since the listing
    for pids in found.values():
        pids.sort()
    denied.sort()
    return found, denied


def socket_owners(proc_root: str, pids: Iterable[int], inodes: set[int]) -> tuple[dict[int, int], int]:
    """The process of each socket of ``inodes`` among ``pids`` (the lowest pid
    holding it, as psutil's walk in pid order finds it), and how many of them
    had file descriptors this probe may not read."""
    owners: dict[int, int] = {}
    denied = 0
    for pid in pids:
        if len(owners) == len(inodes):
            break
        directory = f"{proc_root}/{pid}/fd"
        try:
            fds = os.listdir(directory)
        except PermissionError:
            denied += 1
            continue
        except OSError:
            continue  # gone
        for fd in fds:
            try:
                link = os.readlink(f"{directory}/{fd}")
            except PermissionError:  # listed (root's DAC_OVERRIDE) but not traceable: root without CAP_SYS_PTRACE
                denied += 1
                break
            except OSError:
                continue  # closed since the listing
            if link.startswith("socket:[") and link[8:-1].isdigit():
                inode = int(link[8:-1])
                if inode in inodes:
                    owners.setdefault(inode, pid)
    return owners, denied


def _some_pids(pids: list[int], shown: int = 5) -> str:
    """``pids 1, 2, 3 and 4 more``: a few, so one line stays one line on a busy host."""
    text = ", ".join(map(str, pids[:shown]))
    more = f" and {len(pids) - shown} more" if len(pids) > shown else ""
    return f"pid{'s' if len(pids) > 1 else ''} {text}{more}"


class NamespaceSockets:
    """``collect(budget)`` answers the sockets of every network namespace but the
    probe's own, each with its process.

    A socket whose process is not found is left out: the report can only place a
    socket by its pid, and the server takes a socket without one for the host's
    (a container's listener on 0.0.0.0 would become the host's).

    Error handling: a namespace whose tables no process of it lets read (all
    gone, or permission denied) is skipped, logged once while it exists; the
    caps are logged once each; nothing here raises."""

    def __init__(self, proc_root: str = "/proc", *, max_namespaces: int = MAX_NAMESPACES) -> None:
        self.proc_root = proc_root
        self.max_namespaces = max_namespaces
        self._logged: set[str] = set()
        """Namespaces whose failure was logged; kept only while they exist."""
        self._noted: set[str] = set()
        """Conditions of the whole host already logged (each once)."""
        self.others: dict[int, int] = {}
        """Pid -> the inode of its network namespace, for the processes in
        another than this probe's, as the last ``collect`` listed them."""

    def collect(self, budget: int = MAX_CONNECTIONS) -> list[tuple[Entry, int, int]]:
        """Args:
            budget: table entries to read at most, across all namespaces.

        Returns:
            (entry, pid, namespace inode) for each socket whose process was found.
        """
        try:
            own = _namespace(self.proc_root, "self")
            found, denied = namespaces(self.proc_root)
        except OSError as exc:
            self._note("proc", "network namespaces unreadable (%s): only this probe's own connections are reported",
                       exc)
            self.others = {}
            return []
        if denied and "denied" not in self._noted:
            # Named, so that the operator can tell which they are; the hint only
            # where it helps: as root the refusal is a sandbox's, not ours to lift.
            hint = "" if standing(self.proc_root).may_trace else f"; {what_to_grant()}"
            self._note("denied", "network namespaces unreadable (permission denied%s) of %d process(es), %s: "
                       "their connections, unless in this probe's namespace, are not reported", hint, len(denied),
                       _some_pids(denied))
        others = sorted(((ns, pids) for ns, pids in found.items() if ns != own), key=lambda item: item[1][0])
        self.others = {pid: number for ns, pids in others if (number := inode(ns)) for pid in pids}
        self._logged.intersection_update(found)
        if len(others) > self.max_namespaces:
            self._note("namespaces", "%d network namespaces, the connections of the first %d are reported",
                       len(others), self.max_namespaces)
            others = others[:self.max_namespaces]
        result: list[tuple[Entry, int, int]] = []
        for ns, pids in others:
            if budget <= 0:
                break
            number = inode(ns)
            if number is None:
                continue  # not the kernel's form: its sockets, said without a namespace, would be taken for the host's
            entries = self._tables(ns, pids, budget)
            if entries is None:
                continue
            budget -= len(entries)
            held = {e.inode for e in entries if e.inode}
            if not held:
                continue
            owners, unreadable = socket_owners(self.proc_root, pids, held)
            if unreadable and ns not in self._logged:
                self._logged.add(ns)
                log.info("network namespace %s: file descriptors of %d of its %d processes unreadable: their "
                         "sockets are not reported", ns, unreadable, len(pids))
            result += [(e, owners[e.inode], number) for e in entries if e.inode in owners]
        if budget <= 0:
            self._note("entries", "the sockets of other network namespaces exceed what this probe's own leave "
                       "of the %d connections a report holds: the rest are not reported", MAX_CONNECTIONS)
        return result

    def _tables(self, ns: str, pids: list[int], budget: int) -> list[Entry] | None:
        """The namespace's four tables, through the first of its processes that
        lets them be read (the others may be gone); at most ``budget`` entries."""
        error: OSError | None = None
        for pid in pids:
            directory = f"{self.proc_root}/{pid}/net"
            entries: list[Entry] = []
            try:
                in_use = sockets_in_use(directory)
                for name, protocol in _TABLES:
                    if in_use.get(name) == 0 or len(entries) >= budget:
                        continue  # empty (reading it would still walk the kernel's hash table), or no room left
                    try:
                        lines = read_table(f"{directory}/{name}", budget - len(entries))
                    except FileNotFoundError:
                        if name.endswith("6") and os.path.isdir(directory):
                            continue  # a kernel without IPv6
                        raise
                    entries += islice(parse_table(lines, protocol), budget - len(entries))
            except (FileNotFoundError, ProcessLookupError):
                continue  # the process exited since the listing: another of the namespace may be read
            except OSError as exc:
                error = exc
                continue
            return entries
        if error is None:
            return None  # its processes all exited mid-read: the namespace is gone, nothing was refused
        if ns not in self._logged:
            self._logged.add(ns)
            log.info("network namespace %s: tables unreadable through its %d processes (%s): its connections are "
                     "not reported", ns, len(pids), error)
        return None

    def _note(self, condition: str, message: str, *args: object) -> None:
        if condition not in self._noted:
            self._noted.add(condition)
            log.warning(message, *args)
