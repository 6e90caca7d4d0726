"""The bus URL (``bus.url``, ``NatsUrlKind``): NATS has no paths, queries or
fragments, and nats-py drops them without a word, so a URL with one is
refused (exit 2 at start) rather than used as if it were the server's; and
its password is never shown, for one server or several."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trioscope.config import ConfigError, format_effective, resolve_settings


def problems(url: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        resolve_settings({}, {"TRIOSCOPE_BUS": url})
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.parametrize(("url", "named"), [
    ("nats://127.0.0.1:4222/path", "a path"),
    ("nats://127.0.0.1:4222/reports/eu", "a path"),
    ("nats://127.0.0.1:4222?stream=x", "a query"),
    ("nats://127.0.0.1:4222#x", "a fragment"),
    ("nats://127.0.0.1:4222?", "a query or fragment"),
    ("nats://a:4222,nats://b:4222/x", "a path"),
])
def test_a_bus_url_with_a_path_query_or_fragment_is_refused_saying_which(url: str, named: str) -> None:
    (problem,) = problems(url)
    assert "bus.url" in problem and f"has {named}" in problem and "nats://host[:port]" in problem, problem


@pytest.mark.parametrize("url", ["nats://127.0.0.1:4222", "nats://127.0.0.1:4222/", "tls://h:4222",
                                 "nats://u:pw@a:4222,nats://u:pw@b:4222"])
def test_a_bus_url_without_a_path_is_accepted(url: str) -> None:
    assert resolve_settings({}, {"TRIOSCOPE_BUS": url}).bus.url == url


def test_every_server_password_of_a_cluster_url_is_masked() -> None:
    shown = format_effective(resolve_settings({}, {"TRIOSCOPE_BUS": "nats://u:pw1@a:4222,nats://v:pw2@b:4222"}))
    assert "pw1" not in shown and "pw2" not in shown
    assert "nats://u:***@a:4222,nats://v:***@b:4222" in shown


def test_serve_with_a_bus_url_with_a_path_exits_2_in_one_line_before_it_starts() -> None:
    result = subprocess.run([sys.executable, "-m", "trioscope", "serve", "--port", "1", "--bus",
                             "nats://127.0.0.1:4222/path"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "bus.url" in result.stderr and "has a path" in result.stderr and "Traceback" not in result.stderr


def test_a_refused_url_is_named_without_its_password() -> None:
    """A configuration problem goes to terminals and logs: a bus or database URL
    it quotes has its password masked, as ``--print-config`` masks it."""
    result = subprocess.run([sys.executable, "-m", "trioscope", "serve", "--bus", "nats://ops:S3cretPW@h:4222/x",
                             "--database", "postgresql://ops:An0ther@db/x?bad=", "--print-config"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "nats://ops:***@h:4222/x" in result.stderr
    assert "S3cretPW" not in result.stderr and "An0ther" not in result.stderr


@pytest.mark.parametrize(("setting", "url"), [
    ("TRIOSCOPE_BUS", "nats://::1:4222"), ("TRIOSCOPE_BUS", "nats://127.0.0.1:4222,nats://fd00::2:4222"),
    ("TRIOSCOPE_DATABASE", "postgresql://postgres@::1/test"),
    ("TRIOSCOPE_DATABASE", "postgresql://postgres@127.0.0.1,fd00::2:5433/test")])
def test_an_ipv6_address_without_its_brackets_is_refused_saying_so(setting: str, url: str) -> None:
    """They were refused as "not a NATS URL" and "names no host", which did not say why."""
    with pytest.raises(ConfigError) as caught:
        resolve_settings({}, {setting: url})
    (problem,) = [str(p) for p in caught.value.problems]
    assert "an IPv6 address in a URL goes in brackets" in problem, problem
    bracketed = url.replace("::1", "[::1]").replace("fd00::2", "[fd00::2]")
    resolve_settings({}, {setting: bracketed})  # accepted as written
