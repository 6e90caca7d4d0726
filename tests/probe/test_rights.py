"""What the probe cannot see of its host, found from /proc (a fake one here),
said once with what to grant, and sent in the report's ``gaps``."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from trioscope.wire import Connection, Gaps, ProcessInfo
from trioscope_probe import _rights
from trioscope_probe._rights import (
    INITIAL_PID_NAMESPACE, Sight, effective_capabilities, hides_processes, proc_mount_options, total_threads,
    unreadable_descriptors, without_process,
)

ALL = "000001ffffffffff"
NO_PTRACE = "000001fffff7ffff"


def fake_proc(root: Path, *, pid_ns: int = INITIAL_PID_NAMESPACE, net: int = 4026531840, init_net: int | None = None,
              capabilities: str = ALL, proc_options: str = "rw", threads: int = 40) -> str:
    """A /proc as the probe reads it of itself, of pid 1 and of the host."""
    (root / "self" / "ns").mkdir(parents=True)
    (root / "self" / "ns" / "pid").symlink_to(f"pid:[{pid_ns}]")
    (root / "self" / "ns" / "net").symlink_to(f"net:[{net}]")
    (root / "self" / "status").write_text(f"Name:\tprobe\nCapEff:\t{capabilities}\n")
    (root / "self" / "mountinfo").write_text(
        f"22 1 0:5 / / rw - ext4 /dev/vda rw\n23 22 0:21 / {root} rw,nosuid - proc proc {proc_options}\n")
    (root / "loadavg").write_text(f"0.10 0.20 0.30 2/{threads} 4242\n")
    if init_net is not None:
        (root / "1" / "ns").mkdir(parents=True)
        (root / "1" / "ns" / "net").symlink_to(f"net:[{init_net}]")
    return str(root)


def process(pid: int, threads: int = 1) -> ProcessInfo:
    return ProcessInfo(pid=pid, threads=threads)


def socket_of(pid: int | None, state: str = "listen", netns: int | None = None) -> Connection:
    return Connection(local_address="0.0.0.0", local_port=80, state=state, pid=pid, netns=netns)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ---- the pure parts ----------------------------------------------------------------------

def test_capabilities_namespaces_and_threads_are_read_from_their_proc_texts() -> None:
    assert effective_capabilities("CapInh:\t0\nCapEff:\t000001fffeffffff\n") == 0x1fffeffffff
    assert effective_capabilities("Name:\tx\n") == 0
    assert _rights.namespace_inode("pid:[4026531836]", "pid") == INITIAL_PID_NAMESPACE
    assert _rights.namespace_inode("net:[4026531836]", "pid") is None
    assert total_threads("2.93 3.42 3.42 5/212 8621\n") == 212 and total_threads("") is None


def test_procs_hidepid_is_read_from_the_last_mount_on_proc_in_either_form() -> None:
    mountinfo = ("22 1 0:5 / / rw - ext4 /dev/vda rw\n"
                 "23 22 0:21 / /proc rw,relatime - proc proc rw\n"
                 "24 23 0:30 / /proc rw,relatime - proc proc rw,gid=1001,hidepid=invisible\n")
    assert proc_mount_options(mountinfo) == ("invisible", 1001)
    assert proc_mount_options("23 22 0:21 / /proc rw - proc proc rw,hidepid=2\n") == ("invisible", None)
    assert proc_mount_options("23 22 0:21 / /proc rw - proc proc rw\n") == ("off", None)
    assert proc_mount_options("23 22 0:21 / /host/proc rw - proc proc rw,hidepid=2\n") == ("off", None)


@pytest.mark.parametrize(("mode", "gid", "groups", "capabilities", "hidden"), [
    ("off", None, [], 0, False),
    ("invisible", None, [1000], 0, True),
    ("noaccess", None, [1000], 0, True),
    ("invisible", 1001, [1000, 1001], 0, False),  # the group hidepid exempts
    ("ptraceable", 1001, [1001], 0, True),  # which exempts no group
    ("invisible", None, [0], 1 << _rights.CAP_SYS_PTRACE, False),  # root: may trace every process
])
def test_hidepid_hides_processes_from_a_probe_neither_in_its_group_nor_allowed_to_trace(
        mode: str, gid: int | None, groups: list[int], capabilities: int, hidden: bool) -> None:
    assert hides_processes(mode, gid, groups, capabilities) is hidden


def test_only_sockets_a_process_holds_in_the_probes_namespace_count_as_without_one() -> None:
    sockets = [socket_of(None), socket_of(None, "established"), socket_of(None, ""), socket_of(7),
               socket_of(None, "time_wait"), socket_of(None, "syn_recv"), socket_of(None, netns=4026532281)]
    assert without_process(sockets) == 3


def test_descriptors_unreadable_are_those_not_listed_or_whose_links_cannot_be_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root in a container without CAP_SYS_PTRACE lists /proc/<pid>/fd (its
    DAC_OVERRIDE) but reads none of its links."""
    for pid in (10, 11, 12):
        (tmp_path / str(pid) / "fd").mkdir(parents=True)
        (tmp_path / str(pid) / "fd" / "3").symlink_to("socket:[5]")
    scandir, readlink = os.scandir, os.readlink

    def refusing_list(path: str) -> Any:
        if path.endswith("/10/fd"):
            raise PermissionError(13, "Permission denied")
        return scandir(path)

    def refusing_link(path: str) -> str:
        if "/11/fd/" in path:
            raise PermissionError(13, "Permission denied")
        return readlink(path)

    monkeypatch.setattr(_rights.os, "scandir", refusing_list)
    monkeypatch.setattr(_rights.os, "readlink", refusing_link)
    assert unreadable_descriptors(str(tmp_path), [10, 11, 12, 13]) == [10, 11]  # 13: gone


# ---- Sight: said once, in the report ---------------------------------------------------------

def test_sockets_without_their_process_for_want_of_rights_are_said_once_and_sent(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH psutil leaves every
    other process's socket without its pid, silently: the server gave them all
    to the host and the local edges vanished."""
    sight = Sight(fake_proc(tmp_path, capabilities="0000000000000000"))
    denied = [1, 2, 3]
    monkeypatch.setattr(_rights, "unreadable_descriptors", lambda root, pids: denied)
    monkeypatch.setattr(_rights.os, "geteuid", lambda: 1000)
    sockets = [socket_of(None), socket_of(None, "established"), socket_of(os.getpid()), socket_of(None, "time_wait")]
    caplog.set_level(logging.INFO)
    for _ in range(3):
        assert sight.gaps(connections=sockets, processes=None, unreadable={}) == Gaps(unowned_sockets=2)
    (said,) = warnings_of(caplog)
    assert said.startswith("2 sockets of this probe's network namespace are reported without their process: it "
                           "may not read the file descriptors of 3 processes")
    assert "CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH" in said and "AmbientCapabilities=" in said
    assert "--cap-add SYS_PTRACE" in said
    monkeypatch.setattr(_rights.os, "geteuid", lambda: 0)  # root in a container without CAP_SYS_PTRACE
    assert _rights.what_to_grant().startswith("grant the probe CAP_SYS_PTRACE, which root in a container lacks")
    denied = []  # granted (or those processes ended): said once more, and the report is whole
    assert sight.gaps(connections=sockets, processes=None, unreadable={}) is None
    assert caplog.records[-1].getMessage().startswith("the file descriptors of this host's processes can be read")


def test_sockets_no_process_holds_as_root_are_no_gap(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel's own sockets (NFS, WireGuard) have no process for root
    either; root that may trace does not scan every process for them at each
    collection (a directory listing a process: the session review's)."""
    sight = Sight(fake_proc(tmp_path))
    scans: list[int] = []

    def none_denied(root: str, pids: Any) -> list[int]:
        scans.append(1)
        return []

    monkeypatch.setattr(_rights, "unreadable_descriptors", none_denied)
    assert sight.gaps(connections=[socket_of(None)], processes=None, unreadable={}) is None
    assert not warnings_of(caplog)
    assert scans == ([] if os.geteuid() == 0 else [1])


def test_processes_hidden_by_hidepid_are_said_once_with_the_fix_and_sent(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A probe that is not root, under /proc mounted hidepid=2 (systemd's
    ProtectProc=invisible), listed its own processes only, as if they were all."""
    root = fake_proc(tmp_path, capabilities="0000000000000000", proc_options="rw,hidepid=invisible,gid=1001",
                     threads=300)
    sight = Sight(root)
    caplog.set_level(logging.INFO)
    mine = [process(4000, threads=3), process(4001, threads=2)]
    for _ in range(2):
        assert sight.gaps(connections=None, processes=mine, unreadable={}) == Gaps(hidden_threads=295)
    (said,) = warnings_of(caplog)
    assert said.startswith("/proc is mounted hidepid=invisible: this probe sees only the processes it may trace, "
                           "295 of this host's threads are in processes hidden from it")
    assert "add its user to group 1001" in said and "ProtectProc=default" in said and "run it as root" in said


def test_hidepid_does_not_hide_from_a_probe_in_its_group(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = fake_proc(tmp_path, capabilities="0000000000000000",
                     proc_options=f"rw,hidepid=invisible,gid={os.getegid()}", threads=300)
    assert Sight(root).gaps(connections=None, processes=[process(1)], unreadable={}) is None
    assert not warnings_of(caplog)


def test_a_probe_in_a_pid_namespace_of_its_own_says_so_at_start_and_in_every_report(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """In a container without hostPID, the container's processes were reported
    as the host's, silently."""
    sight = Sight(fake_proc(tmp_path, pid_ns=4026532999))
    (said,) = warnings_of(caplog)
    assert said.startswith("this probe runs in a PID namespace of its own (a container's), not the host's")
    assert "hostPID: true" in said and "--pid=host" in said
    for _ in range(2):
        assert sight.gaps(connections=[], processes=[process(1)], unreadable={}) == Gaps(own_pid_namespace=True)
    assert len(warnings_of(caplog)) == 1


def test_a_probe_with_the_hosts_pids_in_a_network_namespace_of_its_own_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Kubernetes hostPID without hostNetwork: the pod's addresses were said
    to be the host's, and the host's namespace a foreign one."""
    sight = Sight(fake_proc(tmp_path, net=4026532500, init_net=4026531840))
    (said,) = warnings_of(caplog)
    assert said.startswith("this probe runs in a network namespace of its own, not the host's (pid 1's)")
    assert "hostNetwork: true" in said and "--network=host" in said
    assert sight.gaps(connections=[], processes=[], unreadable={}) == Gaps(own_network_namespace=True)


def test_the_hosts_namespaces_or_unreadable_ones_are_no_gap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """pid 1's namespace unreadable (not root): nothing is claimed."""
    assert Sight(fake_proc(tmp_path / "a", init_net=4026531840)).gaps(
        connections=[], processes=[], unreadable={}) is None
    assert Sight(fake_proc(tmp_path / "b", net=4026532500)).gaps(connections=[], processes=[], unreadable={}) is None
    assert not warnings_of(caplog)


def test_a_source_that_cannot_be_read_is_said_once_and_once_more_when_it_can(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sight = Sight(fake_proc(tmp_path))
    caplog.set_level(logging.INFO)
    failed = {"memory": "PermissionError: [Errno 13] Permission denied: '/proc/meminfo'"}
    for _ in range(3):
        assert sight.gaps(connections=[], processes=[], unreadable=failed) == Gaps(unreadable=["memory"])
    (said,) = warnings_of(caplog)
    assert said.startswith("cannot read this host's memory (PermissionError: [Errno 13] Permission denied: "
                           "'/proc/meminfo', from /proc/meminfo): reports go without it, the rest is sent")
    assert sight.gaps(connections=[], processes=[], unreadable={}) is None
    assert caplog.records[-1].getMessage() == "this host's memory can be read again"
    assert len(caplog.records) == 2


def test_the_real_proc_of_this_test_says_what_its_kernel_says() -> None:
    """Root on this machine: its own PID namespace is the kernel's first iff pid 2 is kthreadd."""
    standing = _rights.standing()
    try:
        with open("/proc/2/comm") as comm:
            kthreadd = comm.read().strip() == "kthreadd"
    except OSError:
        pytest.skip("pid 2 cannot be read here")
    assert standing.own_pid_namespace is not kthreadd
    assert standing.may_trace is bool(psutil.Process().uids().effective == 0)


# ---- the probe as a user without rights, for real ----------------------------------------------

SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
PROBE = ("import site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = 'trioscope-probe'; "
         "from trioscope_probe.cli import main; sys.exit(main())")


def as_nobody(*flags: str, before: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """``trioscope-probe --once`` with ``flags`` run as ``nobody`` (by
    ``before``, a command that runs the rest): its report and its log. The system's python
    of this version with this environment's packages (this one's interpreter
    may be under /root, which nobody may not read)."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser, to run the probe as nobody")
    if not SYSTEM_PYTHON.exists():
        pytest.skip(f"needs {SYSTEM_PYTHON}, which nobody may run")
    packages = sysconfig.get_paths()["purelib"]
    command = [*before, "runuser", "-u", "nobody", "--", str(SYSTEM_PYTHON), "-c", PROBE, packages,
               "--once", "--agent-id", "nobody-probe", *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout), done.stderr


def test_a_probe_that_is_not_root_says_its_sockets_lack_their_process_and_what_to_grant() -> None:
    """As the reviewer ran it: every socket of root's processes came without
    its pid and the log said nothing of it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:  # root's: nobody may not read its descriptors
        port = listener.getsockname()[1]
        report, log = as_nobody("--no-processes")
    assert [c["pid"] for c in report["network_info"]["connections"] if c["local_port"] == port] == [None]
    assert report["gaps"]["unowned_sockets"] >= 1
    (said,) = [line for line in log.splitlines() if "reported without their process" in line]
    assert "grant it CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH" in said


def test_a_probe_under_hidepid_says_processes_are_hidden_from_it() -> None:
    """/proc mounted hidepid=invisible (a new proc instance in a mount namespace
    of the test's own: the machine's /proc is untouched) left the probe its
    own processes only, as if they were the host's."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare, to mount a proc of its own")
    mount = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             'mount -t proc -o hidepid=invisible proc /proc && exec "$@"', "sh"]
    report, log = as_nobody("--no-connections", before=tuple(mount))
    assert len(report["processes_info"]["processes"]) <= 2  # its own
    assert report["gaps"]["hidden_threads"] > 0
    assert "/proc is mounted hidepid=invisible" in log and "ProtectProc=default" in log


def test_a_probe_in_a_pid_namespace_of_its_own_says_so_for_real() -> None:
    """As in a container without hostPID (a PID namespace and a /proc of its
    own: the machine's untouched), where the container's processes were
    reported as the host's."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare, to run the probe in a PID namespace of its own")
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--", sys.executable, "-m", "trioscope_probe",
                           "--once", "--agent-id", "pid-namespace-probe", "--no-connections"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["gaps"]["own_pid_namespace"] is True
    assert [p["pid"] for p in report["processes_info"]["processes"]] == [1]  # itself: the namespace's init
    assert "runs in a PID namespace of its own" in done.stderr and "--pid=host" in done.stderr
