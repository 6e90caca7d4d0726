"""What this probe may see of its host, and what it cannot: the rights it
lacks (other processes' file descriptors, processes /proc hides from it) and
the host's namespaces it does not run in. Without them the probe still
reports, but less than the host holds, and nothing said so: every socket of
its namespace went to the host (no process: local edges gone), a ``hidepid``
/proc left its own processes only, a container without ``hostPID`` reported
its own processes as the host's.

Each condition is found from a few /proc files (under ``proc_root``, so that
tests give a fake one), judged by pure functions, said once in the log with
what to grant (and once when it ends, never per cycle), and sent in the
report's ``gaps`` (``Sight``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

import attrs

from trioscope.wire import Connection, Gaps, ProcessInfo

from ._os_text import os_text

log = logging.getLogger("trioscope_probe")

CAP_DAC_READ_SEARCH = 2
CAP_SYS_PTRACE = 19
INITIAL_PID_NAMESPACE = 0xEFFFFFFC
"""The inode of the kernel's first PID namespace (``PROC_PID_INIT_INO``, fixed
since Linux 3.8): a probe whose own is another runs in a container's. Read
from /proc/self/ns/pid, which a process may always read; pid 2 being
``kthreadd`` tells it too, but ``hidepid`` hides pid 2 from a probe that is not root."""

GRANT = ("run the probe as root, or grant it CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (systemd: "
         "AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH; docker or podman: --cap-add SYS_PTRACE "
         "--cap-add DAC_READ_SEARCH; Kubernetes: securityContext.capabilities.add)")
"""What lets a probe read other processes' file descriptors and namespaces:
/proc/<pid>/fd is its owner's only (DAC_READ_SEARCH), and each link in it is
read only by who may trace the process (SYS_PTRACE; root in a container
lacks it by default)."""
ROOT_GRANT = ("grant the probe CAP_SYS_PTRACE, which root in a container lacks by default (docker or podman: "
              "--cap-add SYS_PTRACE; Kubernetes: securityContext.capabilities.add: [SYS_PTRACE])")
"""``GRANT`` for a probe that is root already."""


def what_to_grant() -> str:
    """``GRANT``, or ``ROOT_GRANT`` to a probe that is root (told to run as root, it is)."""
    return ROOT_GRANT if os.geteuid() == 0 else GRANT

HELD_STATES = frozenset({"listen", "established", "syn_sent", "close_wait", "close", ""})
"""States (as reported: psutil's names lowercased, "" for UDP) of a socket
some file descriptor holds. The others (``time_wait``, ``syn_recv``,
``fin_wait2``...) may be the kernel's alone after a close, and have no
process however many rights the probe has."""

_HIDEPID = {"0": "off", "1": "noaccess", "2": "invisible", "4": "ptraceable"}
"""hidepid= as numbers (kernels before 5.8 show them so) -> the names newer ones show."""


def effective_capabilities(status: str) -> int:
    """The ``CapEff`` bits of a /proc/<pid>/status text; 0 when it has none."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            try:
                return int(line.split(":", 1)[1].strip(), 16)
            except ValueError:
                return 0
    return 0


def namespace_inode(link: str, kind: str) -> int | None:
    """``pid:[4026531836]`` (a /proc/<pid>/ns/<kind> link) -> 4026531836; None for another form."""
    prefix = f"{kind}:["
    number = link[len(prefix):-1]
    return int(number) if link.startswith(prefix) and link.endswith("]") and number.isdigit() else None


def proc_mount_options(mountinfo: str, mount_point: str = "/proc") -> tuple[str, int | None]:
    """How the proc file system at ``mount_point`` hides processes, from a
    /proc/self/mountinfo text: its ``hidepid`` (``off``, ``noaccess``,
    ``invisible``, ``ptraceable``) and its ``gid=`` (None: none). The last
    mount there is the one seen (mounts stack)."""
    mode, gid = "off", None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[4] != mount_point or " - " not in line:
            continue
        after = line.split(" - ", 1)[1].split()
        if not after or after[0] != "proc":
            continue
        mode, gid = "off", None
        for option in (after[2] if len(after) > 2 else "").split(","):
            key, _, value = option.partition("=")
            if key == "hidepid":
                mode = _HIDEPID.get(value, value)
            elif key == "gid" and value.isdigit():
                gid = int(value)
    return mode, gid


def hides_processes(mode: str, gid: int | None, groups: Iterable[int], capabilities: int) -> bool:
    """Whether /proc mounted ``hidepid=mode,gid=gid`` hides other users'
    processes from a probe in ``groups`` with effective ``capabilities`` (the
    kernel's ``has_pid_permissions``: the group exempts, but from
    ``ptraceable``; then whoever may trace them sees them)."""
    if mode == "off":
        return False
    if mode != "ptraceable" and gid is not None and gid in set(groups):
        return False
    return not capabilities & (1 << CAP_SYS_PTRACE)


def total_threads(loadavg: str) -> int | None:
    """The host's threads, the kernel's count: /proc/loadavg's fourth field
    (``running/total``); None if it is not of that form."""
    fields = loadavg.split()
    total = fields[3].partition("/")[2] if len(fields) > 3 else ""
    return int(total) if total.isdigit() else None


def without_process(connections: Iterable[Connection]) -> int:
    """Sockets of the probe's own network namespace (no ``netns``) whose
    process was not found, among those a process holds (``HELD_STATES``)."""
    return sum(1 for c in connections if c.pid is None and c.netns is None and c.state in HELD_STATES)


def unreadable_descriptors(proc_root: str, pids: Iterable[int]) -> list[int]:
    """Those of ``pids`` whose file descriptors this probe may not read: their
    /proc/<pid>/fd cannot be listed, or (root without CAP_SYS_PTRACE) its
    links cannot be read. A process gone meanwhile is not one of them."""
    denied = []
    for pid in pids:
        directory = f"{proc_root}/{pid}/fd"
        try:
            with os.scandir(directory) as entries:  # not every entry: a big proxy holds a million
                first = next(entries, None)
            if first is not None:  # one link says whether any can be read
                os.readlink(first.path)
        except PermissionError:
            denied.append(pid)
        except OSError:
            continue  # gone, or its descriptor closed meanwhile
    return denied


def _read(path: str) -> str | None:
    """A /proc file's text (``os_text``: a mount point or a process's name in
    it may be any bytes, and one that was not UTF-8 stopped the probe at start)."""
    try:
        with open(path, "rb") as handle:
            return os_text(handle.read(1 << 20))
    except OSError:
        return None


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


@attrs.frozen
class Standing:
    """What this probe is, as far as the host lets it see, found once at start
    (it does not change while the probe runs)."""

    own_pid_namespace: bool
    own_network_namespace: bool
    hidepid: str
    """/proc's hidepid as it applies to this probe: ``off`` if it sees every process."""
    hidepid_gid: int | None
    may_trace: bool
    """CAP_SYS_PTRACE: other processes' file descriptors and namespaces can be read."""


def standing(proc_root: str = "/proc") -> Standing:
    """This probe's ``Standing``, from /proc/self and /proc/1. Whatever cannot
    be read counts as the host's view (nothing is claimed that is not seen)."""
    capabilities = effective_capabilities(_read(f"{proc_root}/self/status") or "")
    pid_ns = namespace_inode(_link(f"{proc_root}/self/ns/pid") or "", "pid")
    own_pid = pid_ns is not None and pid_ns != INITIAL_PID_NAMESPACE
    own_net = False
    if not own_pid:
        # /proc/1 is the host's init here: its namespace is the host's (readable as root with CAP_SYS_PTRACE).
        mine = _link(f"{proc_root}/self/ns/net")
        host = _link(f"{proc_root}/1/ns/net")
        own_net = mine is not None and host is not None and mine != host
    mode, gid = proc_mount_options(_read(f"{proc_root}/self/mountinfo") or "", proc_root)
    groups = {os.getegid(), *os.getgroups()}
    return Standing(own_pid_namespace=own_pid, own_network_namespace=own_net,
                    hidepid=mode if hides_processes(mode, gid, groups, capabilities) else "off", hidepid_gid=gid,
                    may_trace=bool(capabilities & (1 << CAP_SYS_PTRACE)))


SOURCES = {
    "cpu": "/proc/stat", "memory": "/proc/meminfo", "load": "/proc/loadavg", "uptime": "/proc/stat",
    "disks": "/proc/self/mounts", "disk_io": "/proc/diskstats", "network_io": "/proc/net/dev and /sys/class/net",
    "interfaces": "the network interfaces", "processes": "/proc", "connections": "/proc/net/tcp, udp and their 6",
}
"""What the report reads, by the name ``Gaps.unreadable`` gives it -> where from (said in the log)."""


class Sight:
    """What this probe cannot see of its host, each cycle (``gaps``), each
    condition said once when it begins, with what to grant, and once when
    it ends.

    Error handling: nothing here raises; what cannot be read is taken as seen."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self.standing = standing(proc_root)
        self._said: set[str] = set()
        if self.standing.own_pid_namespace:
            log.warning("this probe runs in a PID namespace of its own (a container's), not the host's: the "
                        "processes it reports are that container's, and the sockets of the host's come without "
                        "their process; run it in the "
                        "host's (Kubernetes: hostPID: true; docker or podman: --pid=host)")
        if self.standing.own_network_namespace:
            log.warning("this probe runs in a network namespace of its own, not the host's (pid 1's): the "
                        "addresses it reports for the host are its own namespace's, and the host's sockets are "
                        "reported as another namespace's; run it in the host's (Kubernetes: hostNetwork: true; "
                        "docker or podman: --network=host)")

    def gaps(self, *, connections: list[Connection] | None, processes: list[ProcessInfo] | None,
             unreadable: Mapping[str, str], unmeasured: Iterable[str] = ()) -> Gaps | None:
        """What this cycle's report lacks, and said as it changes.

        Args:
            connections: the sockets found (before any were left out), if collected.
            processes: the processes read, if collected.
            unreadable: source (``SOURCES``) -> why it could not be read this cycle.
            unmeasured: sources read this cycle whose rates are left out all
                the same (it was not read the cycle before): sent with the
                unreadable ones, so that the server shows no value rather
                than 0, but not said (nothing is wrong with them).

        Returns:
            None when the probe saw all of its host.
        """
        unowned = self._unowned(connections) if connections is not None else 0
        hidden = self._hidden(processes) if processes is not None else 0
        for source in sorted(set(SOURCES) | set(unreadable)):
            self._say(f"source:{source}", unreadable.get(source),
                      "cannot read this host's %s (%s, from %s): reports go without it, the rest is sent; check "
                      "what keeps the probe from reading it (its user, a container's or a security profile's "
                      "view of /proc and /sys); said again once it can be read", source, unreadable.get(source),
                      SOURCES.get(source, "?"), ended=f"this host's {source} can be read again")
        gaps = Gaps(unowned_sockets=unowned, hidden_threads=hidden,
                    own_pid_namespace=self.standing.own_pid_namespace,
                    own_network_namespace=self.standing.own_network_namespace,
                    unreadable=sorted({*unreadable, *unmeasured})[:32])
        return None if gaps == Gaps() else gaps

    def _unowned(self, connections: list[Connection]) -> int:
        """Sockets of this namespace without their process because the probe
        may not read other processes' descriptors, or /proc hides them (and
        not the kernel's own sockets, NFS's or WireGuard's, which no process
        holds: no rights would find theirs)."""
        count = without_process(connections)
        # Root that may trace reads every process's descriptors: those sockets
        # are the kernel's own (NFS, WireGuard), and no scan of every process
        # need say so at each collection.
        reads_all = self.standing.may_trace and os.geteuid() == 0
        denied = unreadable_descriptors(self.proc_root, _pids(self.proc_root)) if count and not reads_all else []
        self._say("descriptors", bool(denied),
                  "%d sockets of this probe's network namespace are reported without their process: it may not "
                  "read the file descriptors of %d processes, so the server gives those sockets to the host and "
                  "the edges of local processes are missing; %s; said again once they can be read", count, len(denied),
                  what_to_grant(),
                  ended="the file descriptors of this host's processes can be read again: sockets come with "
                        "their processes")
        hidden = self.standing.hidepid != "off"  # their processes are not even listed: said as hidden threads
        return count if denied or hidden else 0

    def _hidden(self, processes: list[ProcessInfo]) -> int:
        """Threads of the host in processes /proc hides from the probe (the
        kernel's count less those of the processes read)."""
        mode = self.standing.hidepid
        if mode == "off" or self.standing.own_pid_namespace:
            return 0  # a container's processes are another matter (said at start)
        total = total_threads(_read(f"{self.proc_root}/loadavg") or "")
        hidden = max(0, total - sum(p.threads for p in processes)) if total is not None else 0
        gid = self.standing.hidepid_gid
        exempt = (f"add its user to group {gid} (hidepid's gid=)" if gid is not None
                  else "mount /proc with gid= a group of the probe's user")
        self._say("hidepid", hidden > 0,
                  "/proc is mounted hidepid=%s: this probe sees only the processes it may trace, %d of this host's "
                  "threads are in processes hidden from it, and their sockets are reported without their process; run it as root, %s, or grant it CAP_SYS_PTRACE (under "
                  "systemd's ProtectProc=invisible: ProtectProc=default); said again once it sees them", mode,
                  hidden, exempt, ended="the processes /proc hid from this probe are seen again")
        return hidden

    def _say(self, condition: str, on: object, message: str, *args: object, ended: str) -> None:
        """``message`` once when ``condition`` begins (``on`` true), ``ended``
        once when it ends."""
        if on and condition not in self._said:
            self._said.add(condition)
            log.warning(message, *args)
        elif not on and condition in self._said:
            self._said.discard(condition)
            log.info("%s", ended)


def _pids(proc_root: str) -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(proc_root) if name.isdigit())
    except OSError:
        return []
