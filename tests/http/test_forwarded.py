"""Who the client is behind proxies: only trusted proxies' headers count."""

from __future__ import annotations

import pytest

from trioscope.http._cors import CorsPolicy
from trioscope.http._forwarded import TrustedProxies, forwarded_for, source_of

PROXY = TrustedProxies.parse(["10.0.0.0/8", "::1"], "x-forwarded-for")


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_says():
    assert TrustedProxies().client("203.0.113.9", ["198.51.100.1"]) == "203.0.113.9"


def test_a_peer_that_is_no_trusted_proxy_is_the_client_whatever_it_says():
    assert PROXY.client("203.0.113.9", ["198.51.100.1"]) == "203.0.113.9"


def test_a_trusted_proxy_names_the_client():
    assert PROXY.client("10.1.2.3", ["198.51.100.1"]) == "198.51.100.1"


def test_what_the_client_wrote_left_of_the_proxies_entries_is_ignored():
    # The client sent "X-Forwarded-For: 1.1.1.1"; our two proxies appended the client and themselves.
    assert PROXY.client("10.0.0.2", ["1.1.1.1, 198.51.100.7, 10.0.0.1"]) == "198.51.100.7"


def test_several_header_lines_are_one_list():
    assert PROXY.client("10.0.0.2", ["1.1.1.1", "198.51.100.7"]) == "198.51.100.7"


def test_an_entry_that_is_no_address_stops_the_walk_at_the_nearest_trusted_hop():
    assert PROXY.client("10.0.0.2", ["198.51.100.7, unknown, 10.0.0.1"]) == "10.0.0.1"


def test_addresses_with_ports_and_ipv6():
    assert PROXY.client("::1", ["[2001:db8::1]:4711"]) == "2001:db8::1"
    assert PROXY.client("10.0.0.1", ["198.51.100.7:5000"]) == "198.51.100.7"


def test_rfc_7239_forwarded():
    proxies = TrustedProxies.parse(["10.0.0.0/8"], "forwarded")
    header = ['for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1']
    assert forwarded_for(header) == ["1.1.1.1", '"[2001:db8:cafe::17]:4711"']
    assert proxies.client("10.0.0.1", header) == "2001:db8:cafe::17"


def _scope(peer: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {"type": "http", "client": (peer, 40000), "headers": headers}


@pytest.mark.parametrize(("header", "client"), [("x-forwarded-for", "198.51.100.7"), ("forwarded", "192.0.2.5")])
def test_the_header_the_proxies_do_not_set_is_not_read(header, client):
    # A proxy sets one of the two headers and passes the other, the client's own, on unchanged.
    proxies = TrustedProxies.parse(["10.0.0.0/8"], header)
    both = [(b"X-Forwarded-For", b"198.51.100.7"), (b"forwarded", b"for=192.0.2.5")]
    assert proxies.client_of(_scope("10.0.0.1", both)) == client


def test_a_connection_scope_from_no_trusted_proxy_is_its_own_client():
    forged = [(b"x-forwarded-for", b"198.51.100.7")]
    assert PROXY.client_of(_scope("203.0.113.9", forged)) == "203.0.113.9"
    assert TrustedProxies().client_of(_scope("10.0.0.1", forged)) == "10.0.0.1"
    assert PROXY.client_of({"type": "http", "client": None, "headers": forged}) == "unknown"


@pytest.mark.parametrize(("origin", "host", "allowed"), [
    ("http://127.0.0.1:8080", "127.0.0.1:8080", True),   # the server's own page
    ("https://ops.example.com", "ops.example.com", True),
    ("http://127.0.0.1:9999", "127.0.0.1:8080", False),
    ("https://evil.example", "ops.example.com", False),
])
def test_websocket_origins_off_by_default_allow_only_the_servers_own_pages(origin, host, allowed):
    assert CorsPolicy().allows_page(origin, host) is allowed


def test_listed_origins_are_allowed_exactly():
    policy = CorsPolicy.parse(["https://ops.example.com"], credentials=False)
    assert policy.allows("https://ops.example.com") and policy.allows_page("https://ops.example.com", "api:1")
    assert not policy.allows("https://ops.example.com.evil.example")
    assert not policy.allows("http://ops.example.com")
    headers = dict(policy.answer_headers("https://ops.example.com"))
    assert headers[b"access-control-allow-origin"] == b"https://ops.example.com" and headers[b"vary"] == b"Origin"
    assert b"access-control-allow-credentials" not in headers
    assert dict(policy.answer_headers("https://evil.example")) == {b"vary": b"Origin"}


@pytest.mark.parametrize(("address", "source"), [
    ("203.0.113.9", "203.0.113.9"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("64:ff9b::198.51.100.8", "198.51.100.8"),
    ("64:ff9b::c633:6409", "198.51.100.9"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),
    ("64:ff9b:1::c633:6401", "198.51.100.1"),
    ("2002:c633:6401:1::1", "198.51.100.1"),
    ("2002:c633:6401:ffff::1", "198.51.100.1"),
    ("fe80::1%eth0", "fe80::/64"),
    ("::1", "::/64"),
    ("unknown", "unknown"),
])
def test_an_ipv6_client_counts_as_its_slash_64_for_limits(address: str, source: str) -> None:
    """One host has a /64 of addresses to rotate through; an IPv4 client sent
    over IPv6 (mapped, NAT64, Teredo, 6to4) is that IPv4 client."""
    assert source_of(address) == source


@pytest.mark.parametrize("entry", ["fe80::1%x client=203.0.113.9 request_id=forged", "[fe80::1%\u009b31mred]:4711",
                                   "fe80::1%" + "z" * 8000])
def test_a_forwarded_ipv6_zone_id_is_left_out(entry: str) -> None:
    """``ipaddress`` takes any text after ``%``: kept, it forged fields of the
    access log, reached the operator's terminal through ``trioscope audit``
    and made audit rows of 8 KB."""
    assert PROXY.client("10.0.0.1", [entry]) == "fe80::1"


def test_an_ipv4_proxy_or_client_of_a_dual_stack_listener_is_ipv4() -> None:
    """``--host ::`` sees IPv4 peers as ``::ffff:127.0.0.1``, which is in no
    IPv4 network: a proxy listed as ``127.0.0.1/32`` was never trusted there
    (every client was the proxy for the limits and the logs, names outside
    ``--allowed-hosts`` got 421), and IPv4 clients were logged mapped."""
    local = TrustedProxies.parse(["127.0.0.1/32"], "x-forwarded-for")
    assert local.trusts_peer("::ffff:127.0.0.1")
    assert local.client_of(_scope("::ffff:127.0.0.1", [(b"x-forwarded-for", b"198.51.100.7")])) == "198.51.100.7"
    # A hop written mapped is that IPv4 proxy; a client written mapped is shown as IPv4.
    assert local.client("127.0.0.1", ["198.51.100.7, ::ffff:127.0.0.1"]) == "198.51.100.7"
    assert PROXY.client("10.0.0.1", ["::ffff:198.51.100.7"]) == "198.51.100.7"
    assert TrustedProxies().client_of(_scope("::ffff:203.0.113.9", [])) == "203.0.113.9"
    assert local.client_of(_scope("::ffff:203.0.113.9", [(b"x-forwarded-for", b"198.51.100.7")])) == "203.0.113.9"
    assert TrustedProxies().client_of(_scope("2001:db8::1", [])) == "2001:db8::1"


def test_a_trusted_network_written_ipv4_mapped_is_that_ipv4_network() -> None:
    """The way round the dual-stack listener's mapped peers before: compared
    unmapped now, such a network would have matched no peer."""
    mapped = TrustedProxies.parse(["::ffff:10.0.0.0/104"], "x-forwarded-for")
    assert mapped.trusts_peer("10.1.2.3") and mapped.trusts_peer("::ffff:10.1.2.3")
    assert mapped.client_of(_scope("::ffff:10.1.2.3", [(b"x-forwarded-for", b"198.51.100.7")])) == "198.51.100.7"
    assert not mapped.trusts_peer("11.0.0.1")
