"""How connections are counted as they are accepted (``ConnectionCounts``),
and how often refusals and failed accepts are logged (``AcceptFailures``;
``Lull`` is tested in tests/domain/test_rates.py): plain values, no sockets,
no clock."""

from __future__ import annotations

import logging
import resource

import pytest

from trioscope.http._forwarded import TrustedProxies
from trioscope.http._connection_limits import (
    FILE_RESERVE, PER_ADDRESS, TOTAL, AcceptFailures, ConnectionCounts, Held, Refused, connection_room,
)
from trioscope.http._tcp_server import install_guarded_tcp_server
from trioscope.server import open_files_line


def test_an_address_holds_at_most_its_connections_and_gets_them_back() -> None:
    counts = ConnectionCounts(per_address=2, total=100)
    first, second = counts.admit("192.0.2.1"), counts.admit("192.0.2.1")
    assert isinstance(first, Held) and isinstance(second, Held)
    assert counts.admit("192.0.2.1") == Refused("192.0.2.1", PER_ADDRESS)
    assert isinstance(counts.admit("192.0.2.2"), Held)  # another address has its own
    counts.release(first)
    assert isinstance(counts.admit("192.0.2.1"), Held)
    assert counts.open == 3


def test_an_ipv6_address_counts_as_its_64_and_a_mapped_ipv4_as_itself() -> None:
    counts = ConnectionCounts(per_address=1, total=100)
    assert isinstance(counts.admit("2001:db8:1:2::1"), Held)
    assert counts.admit("2001:db8:1:2:ffff::7") == Refused("2001:db8:1:2::/64", PER_ADDRESS)
    assert isinstance(counts.admit("2001:db8:1:3::1"), Held)
    assert isinstance(counts.admit("192.0.2.1"), Held)
    assert counts.admit("::ffff:192.0.2.1") == Refused("192.0.2.1", PER_ADDRESS)


def test_a_trusted_proxy_is_not_capped_per_address_but_counts_in_the_total() -> None:
    counts = ConnectionCounts(per_address=1, total=3, proxies=TrustedProxies.parse(["10.0.0.0/8"], "x-forwarded-for"))
    held = [counts.admit("10.1.2.3") for _ in range(3)]
    assert all(isinstance(h, Held) and not h.per_address for h in held)
    assert counts.admit("10.1.2.3") == Refused("10.1.2.3", TOTAL)
    assert counts.by_source == {}
    for h in held:
        assert isinstance(h, Held)
        counts.release(h)
    assert counts.open == 0


def test_the_total_caps_every_address_together() -> None:
    counts = ConnectionCounts(per_address=10, total=2)
    first = counts.admit("192.0.2.1")
    assert isinstance(first, Held) and isinstance(counts.admit("192.0.2.2"), Held)
    assert counts.admit("192.0.2.3") == Refused("192.0.2.3", TOTAL)
    counts.release(first)
    assert isinstance(counts.admit("192.0.2.3"), Held)


def test_an_address_with_no_connection_left_is_forgotten() -> None:
    counts = ConnectionCounts(per_address=10, total=10)
    held = [counts.admit("192.0.2.1"), counts.admit("192.0.2.1")]
    for h in held:
        assert isinstance(h, Held)
        counts.release(h)
    assert counts.by_source == {} and counts.open == 0


def test_an_address_writes_at_most_its_unsent_bytes_but_always_one_response() -> None:
    counts = ConnectionCounts(per_address=10, total=10, unsent_per_address=10)
    one, two = counts.admit("192.0.2.1"), counts.admit("192.0.2.1")
    assert isinstance(one, Held) and isinstance(two, Held)
    first = counts.start_write(one, key=1, size=8)
    assert first is not None
    assert counts.start_write(two, key=2, size=8) is None  # 16 > 10 while 8 are being written
    shared = counts.start_write(two, key=1, size=8)  # the same bytes to another connection: counted once
    assert shared is not None and counts.unsent["192.0.2.1"] == 8
    counts.end_write(first)
    assert counts.unsent["192.0.2.1"] == 8  # still being written to the other
    counts.end_write(shared)
    assert "192.0.2.1" not in counts.unsent
    large = counts.start_write(one, key=3, size=100)  # alone, however large
    assert large is not None and counts.start_write(two, key=4, size=1) is None
    counts.end_write(large)
    assert counts.unsent == {}


def test_a_refusal_says_which_limit() -> None:
    counts = ConnectionCounts(per_address=256, total=896)
    assert "limits.connections_per_address" in counts.describe(Refused("192.0.2.1", PER_ADDRESS))
    assert "holds 896 connections" in counts.describe(Refused("192.0.2.1", TOTAL))


@pytest.mark.parametrize(("open_files", "room"), [
    (20_000, 20_000 - FILE_RESERVE), (1024, 1024 - FILE_RESERVE), (256, 192), (1, 1),
])
def test_connections_keep_files_in_reserve(open_files: int, room: int) -> None:
    assert connection_room(open_files) == room


def test_no_file_limit_leaves_connections_uncapped() -> None:
    assert connection_room(resource.RLIM_INFINITY) > 1 << 40


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _trio_accept_error(logger: logging.Logger) -> None:
    """What ``trio.serve_listeners`` logs when ``accept`` fails with EMFILE."""
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        logger.error("accept returned %s (%s); retrying in %s seconds", "EMFILE", "Too many open files", 0.1,
                     exc_info=True)


def test_failed_accepts_are_logged_once_an_interval_without_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    logger = logging.getLogger("tests.accept_failures")
    logger.addFilter(AcceptFailures(60.0, clock))
    with caplog.at_level(logging.ERROR, logger=logger.name):
        for _ in range(10):  # one second of trio trying again every 100 ms
            _trio_accept_error(logger)
        clock.now = 60.0
        _trio_accept_error(logger)
    first, second = caplog.records
    assert "EMFILE (Too many open files)" in first.getMessage() and "at most once every 60 s" in first.getMessage()
    assert "9 more" in second.getMessage()
    assert first.exc_info is None and second.exc_info is None


def test_installing_filters_trios_accept_log_once() -> None:
    accepts = logging.getLogger("trio.serve_listeners")
    before = list(accepts.filters)
    try:
        install_guarded_tcp_server()
        install_guarded_tcp_server()
        assert sum(isinstance(f, AcceptFailures) for f in accepts.filters) == 1
    finally:
        for added in [f for f in accepts.filters if f not in before]:
            accepts.removeFilter(added)


def test_the_open_file_limit_line_says_what_was_done() -> None:
    assert open_files_line(1024, 20_000, 20_000) == ("open files: at most 20000 (raised from 1024 to the hard limit); "
                                                     "client connections are held below it")
    assert "(the hard limit)" in open_files_line(20_000, 20_000, 20_000)
    assert "20000, was refused" in open_files_line(1024, 1024, 20_000)
