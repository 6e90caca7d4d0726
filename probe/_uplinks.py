"""Which network interfaces carry a host's traffic with the outside world, for
its network rates.

Counting every interface but loopback counted container traffic, often twice:
a container's packets cross its veth, the bridge (``podman0``, ``docker0``,
``cni0``) and, only when they leave the host, the NIC; an ``ifb`` device
(traffic shaping) mirrors a NIC's packets once more; VLANs, bonds, tunnels
(``flannel.1``, ``wg0``, ``tun0``) count again what their underlying NIC
carries. So, in order:

1. Interfaces backed by a device (``/sys/class/net/<if>/device``): physical
   NICs and virtual machines' NICs alike (virtio, Xen, Hyper-V, ENA all have
   one); each packet to or from the outside crosses exactly one of them, and
   container-to-container traffic none.
2. None has one (the probe in a container with a network of its own, such as
   a container-based CI runner; OpenVZ's ``venet0``): the interfaces of the
   default routes, IPv4 and IPv6, which lead outside whatever they are.
3. No default route either: every interface but loopback, bridges and the
   ports of bridges (a container's veth), as the last and best guess.

Reads a ``root`` directory tree (``/`` on a host) so that tests can give a
fake ``/sys`` and ``/proc``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_DEFAULT_V4 = "00000000"
_DEFAULT_V6 = "0" * 32
_RTF_UP = 0x1


def uplinks(names: Iterable[str], root: Path = Path("/")) -> set[str]:
    """Which of the interfaces ``names`` carry this host's outside traffic
    (the rule is in the module's docstring).

    Error handling: an unreadable ``/sys`` or ``/proc`` entry counts as absent.
    """
    names = [name for name in names if name != "lo"]
    net = root / "sys" / "class" / "net"
    backed = {name for name in names if _exists(net / name / "device")}
    if backed:
        return backed
    routed = _default_route_interfaces(root) & set(names)
    if routed:
        return routed
    return {name for name in names if not _exists(net / name / "bridge") and not _exists(net / name / "brport")}


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; False where it cannot be told: Python 3.11's
    ``Path.exists`` raises on EACCES (a /sys the probe may not search), and
    the probe stopped at start with a traceback."""
    return os.path.exists(path)


def _default_route_interfaces(root: Path) -> set[str]:
    """Interfaces of the up IPv4 and IPv6 default routes (``/proc/net/route``,
    ``/proc/net/ipv6_route``)."""
    found: set[str] = set()
    for line in _lines(root / "proc" / "net" / "route")[1:]:  # after the header
        fields = line.split()
        if len(fields) >= 8 and fields[1] == _DEFAULT_V4 and fields[7] == _DEFAULT_V4 and _up(fields[3]):
            found.add(fields[0])
    for line in _lines(root / "proc" / "net" / "ipv6_route"):
        fields = line.split()
        if len(fields) >= 10 and fields[0] == _DEFAULT_V6 and fields[1] == "00" and _up(fields[8]):
            found.add(fields[9])
    found.discard("lo")  # the kernel's unreachable default entries
    return found


def _up(flags: str) -> bool:
    try:
        return bool(int(flags, 16) & _RTF_UP)
    except ValueError:
        return False


def _lines(path: Path) -> list[str]:
    """The file's lines, decoded as Python decodes names (``os.fsdecode``): an
    interface's name in them is compared with psutil's, and may be any bytes
    (one that was not UTF-8 lost every network rate)."""
    try:
        with path.open("rb") as handle:
            # A route table of thousands of routes is a few hundred KB.
            return os.fsdecode(handle.read(1 << 20)).splitlines()
    except OSError:
        return []
