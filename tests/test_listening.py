"""What ``trioscope serve`` listens on for its ``server.host`` (``trioscope.listening``):
each address of a name, on one port."""

from __future__ import annotations

import logging
import socket

import hypercorn
import pytest

from trioscope import listening
from trioscope.listening import close_sockets, listen, resolve, to_bind


def test_a_names_addresses_are_bound_each_once_in_the_resolvers_order() -> None:
    assert to_bind(["::1", "127.0.0.1", "::1", "127.0.0.1"], ipv6=True) == (["::1", "127.0.0.1"], [])


def test_ipv6_addresses_of_a_name_are_left_out_where_ipv6_does_not_work() -> None:
    assert to_bind(["127.0.0.1", "::1"], ipv6=False) == (["127.0.0.1"], ["::1"])


def test_a_name_of_ipv6_addresses_only_keeps_them_where_ipv6_does_not_work() -> None:
    """Binding them then says why the start fails, where leaving them out would bind nothing."""
    assert to_bind(["2001:db8::1"], ipv6=False) == (["2001:db8::1"], [])


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "localhost.", "api.localhost"])
def test_localhost_is_both_loopback_addresses_whatever_the_hosts_file_says(host: str) -> None:
    """RFC 6761: many /etc/hosts (this machine's among them) map localhost to 127.0.0.1 alone."""
    assert resolve(host) == ["127.0.0.1", "::1"]


@pytest.mark.parametrize(("host", "addresses"), [("127.0.0.1", ["127.0.0.1"]), ("::", ["::"]), ("[::1]", ["::1"])])
def test_an_address_is_bound_as_given(host: str, addresses: list[str]) -> None:
    assert resolve(host) == addresses


def _bound(sockets: hypercorn.config.Sockets) -> list[tuple[str, int]]:
    return [sock.getsockname()[:2] for sock in sockets.insecure_sockets]


def test_a_name_on_port_0_is_bound_to_each_address_on_the_one_port_the_first_got() -> None:
    if not listening.ipv6_works():
        pytest.skip("this machine has no IPv6 loopback (no IPv6 socket can be bound to ::1)")
    config = hypercorn.Config()
    config.bind = ["localhost:0"]
    sockets = listen(config)
    try:
        (_, port), _ = _bound(sockets)
        assert _bound(sockets) == [("127.0.0.1", port), ("::1", port)]
        assert config.bind == [f"127.0.0.1:{port}", f"[::1]:{port}"]
        for address in ("127.0.0.1", "::1"):
            socket.create_connection((address, port), timeout=10).close()  # each listens
    finally:
        close_sockets(sockets)


def test_where_ipv6_does_not_work_a_name_is_bound_to_its_ipv4_addresses_and_that_is_said(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(listening, "ipv6_works", lambda: False)
    config = hypercorn.Config()
    config.bind = ["localhost:0"]
    sockets = listen(config)
    try:
        ((address, port),) = _bound(sockets)
        assert address == "127.0.0.1" and config.bind == [f"127.0.0.1:{port}"]
    finally:
        close_sockets(sockets)
    (said,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert said.getMessage() == ("server.host localhost: not listening on its IPv6 address ::1, IPv6 does not work "
                                 "on this machine (no IPv6 socket can be bound to ::1); listening on 127.0.0.1")


def test_an_address_of_a_name_in_use_fails_the_start_naming_it_and_binds_nothing() -> None:
    if not listening.ipv6_works():
        pytest.skip("this machine has no IPv6 loopback (no IPv6 socket can be bound to ::1)")
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = hypercorn.Config()
        config.bind = [f"localhost:{port}"]
        with pytest.raises(OSError) as failed:
            listen(config)
    assert failed.value.strerror == f"Address already in use ([::1]:{port})"
    assert config.bind == [f"localhost:{port}"]
    with socket.socket() as free:  # the 127.0.0.1 socket bound before it was closed
        free.bind(("127.0.0.1", port))
