"""Text from the operating system in reports: bytes that are not UTF-8 (a
process's name or argv, the host name, a mount point, a cgroup, an interface)
are shown escaped and the rest reported, where one such string stopped the
probe for good; and UTF-8 names read as UTF-8 under a Latin-1 locale, not as
mojibake. The locale is the file system encoding, set here by monkeypatch."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
from collections import namedtuple
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from tests.process_end import end
from tests.probe.test_rights import NO_PTRACE, fake_proc
from trioscope.wire import Report, decode_report
from trioscope_probe import _collect, _rights
from trioscope_probe._collect import HostCollector, ReportCollector
from trioscope_probe._os_text import os_text
from trioscope_probe._transport import encode_report
from trioscope_probe._uplinks import uplinks

_Partition = namedtuple("_Partition", "device mountpoint fstype opts")
_Usage = namedtuple("_Usage", "total used free percent")
_Address = namedtuple("_Address", "family address netmask broadcast ptp")
_Counters = namedtuple("_Counters", "bytes_sent bytes_recv")


def latin1(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Latin-1 locale, as Python and psutil decode what the OS gives (``LC_ALL=en_US.ISO-8859-1``)."""
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "iso-8859-1")


def in_latin1(text: str) -> str:
    """``text`` as a Latin-1 locale decodes its UTF-8 bytes (``İİ`` -> ``Ä°Ä°``)."""
    return text.encode().decode("iso-8859-1")


def sent(report: Report) -> Report:
    """``report`` as the server reads what the probe sends."""
    body, _ = encode_report(report)
    return decode_report(orjson.loads(gzip.decompress(body)))


# ---- the one function ------------------------------------------------------------------

def test_bytes_that_are_not_utf8_are_shown_escaped_the_rest_as_it_is() -> None:
    assert os_text("py\udcffth") == "py\\xffth"  # as Python decodes b"py\xffth" on a UTF-8 system
    assert os_text(b"py\xffth") == "py\\xffth"
    assert os_text("mnt\udcff \udcc3") == "mnt\\xff \\xc3"  # a lead byte without its continuation
    assert os_text("İİ😀 plain") == "İİ😀 plain"
    assert os_text("plain") == "plain"
    assert os_text(b"\xc4\xb0") == "İ"


def test_under_a_latin1_locale_utf8_names_read_as_utf8_not_as_mojibake(monkeypatch: pytest.MonkeyPatch) -> None:
    latin1(monkeypatch)
    assert os_text(in_latin1("İİ")) == "İİ"  # was sent as Ä°Ä°
    assert os_text(in_latin1("😀")) == "😀"  # was sent as ð\x9f\x98\x80
    assert os_text("py\xffth") == "py\\xffth"  # a byte that is not UTF-8, read as Latin-1
    assert os_text("\u0130") == "İ"  # text no Latin-1 decoding made (not the OS's): as it is


def test_under_an_ascii_locale_every_non_ascii_byte_is_read_as_utf8(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")  # LC_ALL=C PYTHONUTF8=0
    assert os_text("h\udcc3\udcb6st") == "höst"


# ---- where OS text enters a report ------------------------------------------------------

def test_a_process_named_with_bytes_that_are_not_utf8_is_reported_and_the_report_sent(tmp_path: Path) -> None:
    """One such process stopped the probe at its first report (orjson's TypeError)."""
    program = os.fsencode(tmp_path) + b"/py\xffth"
    os.symlink(sys.executable, program)
    process = subprocess.Popen([program, b"-c", b"import sys; sys.stdin.read()", b"x\xff", b"--password", b"p\xffw"],
                               stdin=subprocess.PIPE)
    try:
        report = ReportCollector("probe-unit", connections=False).collect()
        found = [p for p in sent(report).processes_info.processes if p.pid == process.pid]  # type: ignore[union-attr]
    finally:
        assert process.stdin is not None
        process.stdin.close()
        end(process)
    (mine,) = found
    assert mine.name == "py\\xffth"
    assert mine.cmdline.endswith("/py\\xffth -c import sys; sys.stdin.read() x\\xff --password ***"), mine.cmdline


def test_a_host_name_that_is_not_utf8_or_in_latin1_is_reported_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_collect.socket, "gethostname", lambda: "h\udcffst")  # unshare -u; sethostname(b"h\xffst")
    assert HostCollector().collect().hostname == "h\\xffst"
    report = ReportCollector("probe-unit", processes=False, connections=False).collect()
    assert sent(report).hostname == "h\\xffst"
    latin1(monkeypatch)
    monkeypatch.setattr(_collect.socket, "gethostname", lambda: in_latin1("İİ"))
    assert _collect.hostname() == "İİ"


def test_mount_points_and_devices_that_are_not_utf8_are_reported_as_text(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    mount = os.fsencode(tmp_path) + b"/mnt\xff \xc3"  # as the reviewer's bind mount
    os.mkdir(mount)
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: [  # noqa: ARG005
        _Partition("/dev/sd\udcff", os.fsdecode(mount), "ext\udcff", "rw")])
    (disk,) = _collect._disks()  # its usage asked of the path as psutil gave it: found
    assert (disk.mount_point, disk.device, disk.fs_type) == (f"{tmp_path}/mnt\\xff \\xc3", "/dev/sd\\xff", "ext\\xff")
    latin1(monkeypatch)
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: [  # noqa: ARG005
        _Partition("/dev/sdb", in_latin1("/mnt/İ"), "ext4", "rw")])
    monkeypatch.setattr(psutil, "disk_usage", lambda path: _Usage(10, 1, 9, 10.0))  # noqa: ARG005
    assert _collect._disks()[0].mount_point == "/mnt/İ"


def test_an_interface_named_with_bytes_that_are_not_utf8_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "eth\udcff"  # as psutil decodes it
    address = _Address(socket.AF_INET, "10.0.0.2", "255.0.0.0", None, None)
    counters = _Counters(100, 200)
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: {name: [address]})
    monkeypatch.setattr(psutil, "net_io_counters", lambda pernic=False: {name: counters})  # noqa: ARG005
    (interface,) = _collect.interfaces()
    assert interface.name == "eth\\xff"


def test_a_default_route_through_an_interface_named_so_is_found(tmp_path: Path) -> None:
    """/proc/net/route was read as strict UTF-8: a host without a NIC (its rates
    from its default route) lost every network rate."""
    name = "eth\udcff"  # as psutil decodes it: /proc/net/route names it in the same bytes
    (tmp_path / "proc" / "net").mkdir(parents=True)
    (tmp_path / "proc" / "net" / "route").write_bytes(
        b"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        b"eth\xff\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")
    assert uplinks([name, "lo"], tmp_path) == {name}


def reading(monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]) -> None:
    """``_collect`` opens each of ``files`` (a /proc path) from the file it gives."""
    real = open

    def opening(path: Any, *args: Any, **kwargs: Any) -> Any:
        return real(files.get(path, path), *args, **kwargs)

    monkeypatch.setattr(_collect, "open", opening, raising=False)


def test_a_cgroup_named_with_bytes_that_are_not_utf8_loses_no_process(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """It failed the whole listing: every process of the host gone from every report."""
    cgroup = tmp_path / "cgroup"
    cgroup.write_bytes(b"8:pids:/rv\xff\xfe\n0::/\n")  # mkdir $'/sys/fs/cgroup/pids/rv\xff\xfe', a process moved in
    reading(monkeypatch, {f"/proc/{os.getpid()}/cgroup": cgroup})
    listed = _collect.processes()
    (mine,) = [p for p in listed if p.pid == os.getpid()]
    assert mine.cgroup == "8:pids:/rv\\xff\\xfe\n0::/\n" and len(listed) > 1


def test_a_cpu_model_that_is_not_utf8_is_read_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_bytes(b"processor\t: 0\nmodel name\t: Virtual \xff CPU\n")
    reading(monkeypatch, {"/proc/cpuinfo": cpuinfo})
    assert _collect._cpu_model() == "Virtual \\xff CPU"


def test_a_mount_point_or_process_name_that_is_not_utf8_in_proc_does_not_stop_the_probe(tmp_path: Path) -> None:
    """/proc/self/mountinfo and /proc/self/status were read as strict UTF-8: the
    probe stopped at start (``Sight()``) with UnicodeDecodeError."""
    root = Path(fake_proc(tmp_path, proc_options="rw,hidepid=2", capabilities=NO_PTRACE))
    (root / "self" / "mountinfo").write_bytes(
        b"21 1 0:5 / /tmp/mnt\xff\\040\xc3 rw - ext4 /dev/vda rw\n" + (root / "self" / "mountinfo").read_bytes())
    (root / "self" / "status").write_bytes(b"Name:\tpy\xffth\n" + (root / "self" / "status").read_bytes())
    sight = _rights.Sight(str(root))
    assert sight.standing.hidepid == "invisible" and not sight.standing.may_trace
