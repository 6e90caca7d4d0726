"""Which names a server answers to in ``Host`` (``http._hosts``): DNS rebinding."""

from __future__ import annotations

import pytest
from trioscope.http._hosts import HostPolicy


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "127.0.0.1", "[::1]:8080", "localhost:8080", "LOCALHOST",
                                  "localhost.", "app.localhost:3000", "10.1.2.3:80", "[2001:db8::1]"])
def test_a_loopback_server_answers_addresses_and_localhost(host: str) -> None:
    assert HostPolicy.parse((), "127.0.0.1").allows(host)


@pytest.mark.parametrize("host", ["attacker.example:8080", "attacker.example", "127.0.0.1.attacker.example",
                                  "localhost.attacker.example", "", "[not-an-address]:80"])
def test_a_loopback_server_refuses_other_names(host: str) -> None:
    assert not HostPolicy.parse((), "::1").allows(host)


def test_a_server_listening_elsewhere_answers_any_name_unless_names_are_listed() -> None:
    assert HostPolicy.parse((), "0.0.0.0").allows("monitor.corp:8080")
    listed = HostPolicy.parse(("ops.example.com", ".corp.example"), "0.0.0.0")
    assert listed.allows("ops.example.com:443") and listed.allows("OPS.example.com")
    assert listed.allows("corp.example") and listed.allows("a.b.corp.example:8080")
    assert not listed.allows("evilcorp.example") and not listed.allows("monitor.other:8080")
    assert listed.allows("192.0.2.7:8080") and listed.allows("localhost")


def test_star_answers_any_name_even_on_loopback() -> None:
    assert HostPolicy.parse(("*",), "127.0.0.1").allows("attacker.example")
