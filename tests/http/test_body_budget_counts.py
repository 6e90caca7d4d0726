"""How request bodies being received are counted against their client
address's and the server's budgets (``ConnectionCounts.charge_body``), and
what is said at start when the per-address cap of connections caps nothing
(``shared_room_warning``): plain values, no sockets."""

from __future__ import annotations

from trioscope.http._connection_limits import (
    BODY_PER_ADDRESS, BODY_TOTAL, BodyRead, ConnectionCounts, connection_room, shared_room_warning,
)
from trioscope.http._forwarded import TrustedProxies


def _counts(per_address: int = 100, total: int = 250, proxies: tuple[str, ...] = ()) -> ConnectionCounts:
    return ConnectionCounts(per_address=10, total=10, body_per_address=per_address, body_total=total,
                            proxies=TrustedProxies.parse(proxies, "x-forwarded-for"))


def test_an_address_receives_at_most_its_budget_and_gets_it_back() -> None:
    counts = _counts()
    first, second = BodyRead(counts.holder("192.0.2.1")), BodyRead(counts.holder("192.0.2.1"))
    assert counts.charge_body(first, 60) is None and counts.charge_body(second, 40) is None
    assert counts.charge_body(second, 1) == BODY_PER_ADDRESS  # nothing counted for it
    assert (counts.receiving["192.0.2.1"], counts.receiving_total, second.size) == (100, 100, 40)
    other = BodyRead(counts.holder("192.0.2.2"))
    assert counts.charge_body(other, 100) is None  # another address has its own
    counts.end_body(first)
    assert counts.charge_body(second, 60) is None
    counts.end_body(second)
    counts.end_body(other)
    assert (counts.receiving, counts.receiving_total) == ({}, 0)


def test_what_a_request_says_is_still_to_come_must_fit_but_is_not_counted() -> None:
    counts = _counts()
    held = BodyRead(counts.holder("192.0.2.1"))
    assert counts.charge_body(held, 70) is None
    assert counts.charge_body(BodyRead(counts.holder("192.0.2.1")), 0, ahead=31) == BODY_PER_ADDRESS
    declared = BodyRead(counts.holder("192.0.2.1"))
    assert counts.charge_body(declared, 0, ahead=30) is None
    assert (declared.size, counts.receiving_total) == (0, 70)


def test_the_total_holds_every_address_and_a_trusted_proxy_is_held_only_by_it() -> None:
    counts = _counts(proxies=("10.0.0.0/8",))
    proxy = BodyRead(counts.holder("10.1.2.3"))
    assert counts.charge_body(proxy, 200) is None  # twice an address's budget
    assert counts.receiving == {}
    client = BodyRead(counts.holder("192.0.2.1"))
    assert counts.charge_body(client, 50) is None
    assert counts.charge_body(client, 1) == BODY_TOTAL
    assert counts.charge_body(proxy, 1) == BODY_TOTAL
    counts.end_body(proxy)
    counts.end_body(client)
    assert (counts.receiving, counts.receiving_total) == ({}, 0)


def test_an_ipv6_client_counts_as_its_64() -> None:
    counts = _counts()
    assert counts.charge_body(BodyRead(counts.holder("2001:db8:1:2::1")), 100) is None
    assert counts.charge_body(BodyRead(counts.holder("2001:db8:1:2:ffff::7")), 1) == BODY_PER_ADDRESS


def test_a_per_address_cap_at_or_above_the_room_of_the_open_file_limit_is_said() -> None:
    room = connection_room(1024)
    warning = shared_room_warning(room, 1024)
    assert warning is not None
    assert f"({room})" in warning and f"{room} client connections" in warning and "(1024)" in warning
    assert "limits.connections_per_address" in warning and "--max-connections-per-address" in warning
    assert shared_room_warning(room - 1, 1024) is None
    assert shared_room_warning(3000, 20_000) is None  # the default, at this machine's limit
    assert shared_room_warning(3000, -1) is None  # no limit
