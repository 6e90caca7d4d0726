"""The probe's settings: defaults < YAML file < environment < flags; bad values exit 2."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import trio

from tests.process_end import end
from trioscope.wire import shown_url
from trioscope_probe import cli
from trioscope_probe.cli import _private_path, build_parser
from trioscope_probe._config import ConfigFileError, load_file, unknown_environment
from trioscope_probe._duration import parse_duration

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "probe.example.yaml"


def test_the_example_file_yields_the_defaults() -> None:
    from_file = build_parser(load_file(str(EXAMPLE))).parse_args([])
    defaults = build_parser().parse_args([])
    for name in ("server", "interval", "buffer", "env_values", "no_processes", "no_connections", "state_dir",
                 "allow", "log_level", "log_format"):
        assert str(getattr(from_file, name)) == str(getattr(defaults, name)), name


def test_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("server: http://file:1\ninterval: 30\nbuffer: 7\nprocesses: false\n")
    values = load_file(str(config))
    args = build_parser(values).parse_args([])
    assert (args.server, args.interval, args.buffer, args.no_processes) == ("http://file:1", "30s", 7, True)
    monkeypatch.setenv("TRIOSCOPE_PROBE_SERVER", "http://env:2")
    assert build_parser(values).parse_args([]).server == "http://env:2"
    assert build_parser(values).parse_args(["--server", "http://flag:3"]).server == "http://flag:3"


def test_unknown_keys_and_wrong_types_are_named(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("servr: x\nbuffer: '5'\nprocesses: 1\n")
    with pytest.raises(ConfigFileError) as error:
        load_file(str(config))
    assert len(error.value.problems) == 3 and "servr" in error.value.problems[0]


def test_bad_settings_exit_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("log_level: loud\n")
    for argv in (["--config", str(config), "--once"], ["--interval", "0s", "--once"], ["--buffer", "x", "--once"]):
        result = subprocess.run([sys.executable, "-m", "trioscope_probe", *argv], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2, argv
        assert result.stderr.strip() and "Traceback" not in result.stderr


def test_once_prints_a_report() -> None:
    result = subprocess.run([sys.executable, "-m", "trioscope_probe", "--once", "--no-processes", "--agent-id", "p1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and orjson.loads(result.stdout)["agent_id"] == "p1"


@pytest.mark.parametrize("locale", [{}, {"LC_ALL": "C", "PYTHONUTF8": "0"}])
def test_once_prints_a_report_with_a_process_whose_name_and_argv_are_not_utf8(tmp_path: Path,
                                                                              locale: dict[str, str]) -> None:
    """The reviewer's repro: such a process stopped the probe (orjson's TypeError)
    at its first report, --once as the publisher; under LC_ALL=C (Python's
    file system encoding ASCII) any byte past ASCII did, and --once could not
    write an İ to its output."""
    program = os.fsencode(tmp_path) + b"/py\xffth"
    os.symlink(sys.executable, program)
    process = subprocess.Popen([program, b"-c", b"import sys; sys.stdin.read()", b"x\xff", "İ😀".encode()],
                               stdin=subprocess.PIPE)
    try:
        result = subprocess.run([sys.executable, "-m", "trioscope_probe", "--once", "--no-connections", "--agent-id",
                                 "p1"], capture_output=True, timeout=60, env={**os.environ, **locale})
    finally:
        assert process.stdin is not None
        process.stdin.close()
        end(process)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    (found,) = [p for p in orjson.loads(result.stdout)["processes_info"]["processes"] if p["pid"] == process.pid]
    assert found["name"] == "py\\xffth"
    assert found["cmdline"].endswith("py\\xffth -c import sys; sys.stdin.read() x\\xff İ😀"), found["cmdline"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("15s", 15.0), ("1m", 60.0), ("1m30s", 90.0), ("1.5m", 90.0), ("1h", 3600.0), ("500ms", 0.5), (".5s", 0.5),
    ("90", 90.0), ("0.5", 0.5), ("2.5", 2.5),  # a bare number is seconds, as the example file says
])
def test_an_interval_reads_as_go_spells_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "says"), [
    ("", "not a duration"), ("15 s", "not a duration"), ("1d", "not a duration"),
    ("s", "not a duration"), ("-5s", "not a duration"), ("15sec", "not a duration"),
])
def test_an_interval_without_a_unit_or_with_another_says_what_is_allowed(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_duration(text)


def test_a_bad_value_is_named_by_where_it_came_from(tmp_path: Path) -> None:
    """The flag, or the environment variable or file key that set it: an operator
    who never typed ``--interval`` is told which setting to mend."""
    config = tmp_path / "probe.yaml"
    config.write_text("log_level: loud\n")
    cases = [
        ({}, ["--interval", "0s"], "trioscope-probe: --interval: must be between 1s and 1h"),
        ({"TRIOSCOPE_PROBE_INTERVAL": "abc"}, [],
         "trioscope-probe: --interval (from env TRIOSCOPE_PROBE_INTERVAL): 'abc' is not a duration"),
        ({}, ["--config", str(config)], f"trioscope-probe: --log-level (from log_level in {config}:1): must be debug"),
        ({"TRIOSCOPE_PROBE_BUFFER": "abc"}, [],
         "trioscope-probe: --buffer (from env TRIOSCOPE_PROBE_BUFFER): 'abc' is not a whole number"),
        ({"TRIOSCOPE_PROBE_SERVER": "ftp://x"}, [],
         "trioscope-probe: --server (from env TRIOSCOPE_PROBE_SERVER): must be an http:// or https:// URL"),
    ]
    for env, argv, says in cases:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIOSCOPE_PROBE")}
        result = subprocess.run([sys.executable, "-m", "trioscope_probe", *argv, "--once"], capture_output=True,
                                text=True, timeout=60, env={**clean, **env})
        assert result.returncode == 2, (env, argv)
        assert result.stderr.startswith(says), result.stderr


def _probe(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIOSCOPE_PROBE")}
    return subprocess.run([sys.executable, "-m", "trioscope_probe", *argv], capture_output=True, text=True,
                          timeout=60, env={**clean, **(env or {})})


def test_a_bare_number_is_seconds_on_the_command_line_in_the_environment_and_in_the_file(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("interval: 0.5\n")
    assert load_file(str(config))["interval"] == "0.5s"
    # Within the limits it is taken; below the minimum it is refused as such, not as a missing unit.
    taken = _probe("--interval", "5", "--once", "--no-processes", "--no-connections",
                   env={"TRIOSCOPE_PROBE_INTERVAL": "5"})
    assert taken.returncode == 0, taken.stderr
    for argv, env, says in [(["--interval", "0.5"], {}, "--interval: must be between 1s and 1h"),
                            ([], {"TRIOSCOPE_PROBE_INTERVAL": "0.5"}, "TRIOSCOPE_PROBE_INTERVAL): must be between"),
                            (["--config", str(config)], {}, f"{config}:1): must be between 1s and 1h")]:
        refused = _probe(*argv, "--once", env=env)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr


def test_an_unknown_probe_environment_variable_is_refused_with_a_suggestion() -> None:
    assert unknown_environment({"TRIOSCOPE_PROBE_INTERVL": "5", "TRIOSCOPE_PROBE_SERVER": "x", "TRIOSCOPE_SERVER_PORT": "1",
                                "TRIOSCOPE_PROBE_CONFIG": "f", "TRIOSCOPE_PROBE_LOG_FORMAT": "json"}) == [
        "unknown environment variable TRIOSCOPE_PROBE_INTERVL (did you mean TRIOSCOPE_PROBE_INTERVAL?)"]
    result = _probe("--once", env={"TRIOSCOPE_PROBE_BUFER": "5"})
    assert result.returncode == 2 and result.stderr == (
        "trioscope-probe: configuration error: unknown environment variable TRIOSCOPE_PROBE_BUFER "
        "(did you mean TRIOSCOPE_PROBE_BUFFER?)\n")


@pytest.mark.parametrize(("text", "problem"), [
    ("buffer: 5\nserver: http://a:1\nbuffer: 7\n", "{path}:3: buffer set again; first set on line 1"),
    ("server: http://a:1\nbuffer: '5'\n", "{path}:2: buffer: expected a whole number, got the text '5'"),
    ("processes: 1\n", "{path}:1: processes: expected true or false, got the number 1"),
    ("interval: true\n", "{path}:1: interval: expected a duration (15s, 1m) or a number of seconds, got the boolean true"),
    ("enrollment_token: 12345\n", "{path}:1: enrollment_token: expected text, got a number"),
    ("servr: http://a:1\n", "{path}:1: unknown key 'servr' (did you mean server?)"),
    ("server:\n  port: 8080\nstorage:\n  data_dir: /x\n",
     "{path}:1: server: expected the server's base URL, got a mapping (is this trioscope serve's configuration?"),
    ("server: [unclosed\nbuffer: 5\n", "{path}:2: invalid YAML: expected ',' or ']', but got ':'"),
])
def test_file_problems_name_the_line_and_what_was_expected(tmp_path: Path, text: str, problem: str) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(text)
    with pytest.raises(ConfigFileError) as error:
        load_file(str(config))
    assert error.value.problems[0].startswith(problem.format(path=config)), error.value.problems
    assert all("\n" not in p for p in error.value.problems)


def test_help_names_each_settings_environment_variable_and_default() -> None:
    text = " ".join(build_parser().format_help().split())
    for env in ("TRIOSCOPE_PROBE_STATE_DIR", "TRIOSCOPE_PROBE_ALLOW", "TRIOSCOPE_PROBE_LOG_LEVEL",
                "TRIOSCOPE_PROBE_LOG_FORMAT"):
        assert env in text, env
    assert "TRIOSCOPE_PROBE_LOG_LEVEL; default info)" in text


def test_a_mistyped_flag_is_one_line_with_a_suggestion() -> None:
    result = _probe("--intervl", "5", "--once")
    assert result.returncode == 2 and result.stderr == (
        "trioscope-probe: unrecognized arguments: --intervl 5 (did you mean --interval?); see --help\n")


@pytest.mark.parametrize(("server", "private"), [
    ("https://scope.example", True), ("http://127.0.0.1:8080", True), ("http://localhost:8080", True),
    ("http://[::1]:8080", True), ("http://10.0.0.5:8080", False), ("http://scope.example", False),
])
def test_an_enrolled_probe_is_warned_of_plain_http_to_another_host(server: str, private: bool) -> None:
    """Its tokens and commands travel unencrypted, and anyone on the path can pose as the server."""
    assert _private_path(server) is private


@pytest.mark.parametrize(("url", "says"), [
    ("http://127.0.0.1:notaport", "is not a URL: Port could not be cast"), ("http://[::1", "Invalid IPv6 URL"),
    ("http://h:99999", "Port out of range"), ("http://h:8080/?x=1", "must not have a query"),
    ("https://", "names no host"), ("http://::1:8080", "an IPv6 address in a URL goes in brackets")])
def test_a_server_url_that_is_no_url_is_refused_in_one_line_by_the_probe_and_trioscope_health(
        url: str, says: str) -> None:
    """Both raised httpx.InvalidURL: a 40-line traceback (a reviewer's)."""
    probe = _probe("--server", url, "--once")
    assert probe.returncode == 2 and probe.stderr.startswith("trioscope-probe: --server: ")
    assert says in probe.stderr and "Traceback" not in probe.stderr and len(probe.stderr.splitlines()) == 1
    health = subprocess.run([sys.executable, "-m", "trioscope", "health", "--server", url], capture_output=True,
                            text=True, timeout=60)
    assert health.returncode == 2 and says in health.stderr and "Traceback" not in health.stderr


def test_a_server_url_with_a_line_end_is_refused_in_one_line() -> None:
    probe = _probe("--once", env={"TRIOSCOPE_PROBE_SERVER": "http://127.0.0.1:8080\n"})
    assert probe.returncode == 2 and "control characters" in probe.stderr and "Traceback" not in probe.stderr


def test_the_log_level_and_format_are_read_in_any_case_as_the_servers_are() -> None:
    """``--log-level INFO`` was refused by the probe, taken by the server."""
    result = _probe("--log-level", "INFO", "--log-format", "JSON", "--buffer", "abc", "--once")
    assert result.returncode == 2 and result.stderr.startswith("trioscope-probe: --buffer"), result.stderr


@pytest.mark.parametrize("value", ["x y", "a/b", "x" * 65])
def test_a_deployment_hash_that_is_none_is_refused_by_the_probe(value: str) -> None:
    """The server answered "invalid_enrollment_token" for 'x y' (a reviewer's)."""
    result = _probe("--deployment-hash", value, "--enrollment-token", "t", "--once")
    assert result.returncode == 2 and result.stderr.startswith("trioscope-probe: --deployment-hash: 1-64 letters")


def test_a_config_flag_without_its_file_is_one_line() -> None:
    """It printed a usage naming only --config, then the error (a reviewer's)."""
    result = _probe("--config")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["trioscope-probe: argument --config: expected one argument; see --help"]


def test_a_negative_interval_after_its_flag_is_the_values_refusal() -> None:
    result = _probe("--interval", "-5s", "--once")
    assert result.returncode == 2 and result.stderr.startswith("trioscope-probe: --interval:"), result.stderr


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
async def test_a_hang_up_stops_the_probe_as_sigterm_does_said_in_its_log(signum: signal.Signals) -> None:
    """SIGHUP ended the probe silently with status 129 (a reviewer's)."""
    with socket.socket() as s:  # a port nothing listens on: the probe says the server is unreachable
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trioscope_probe", "--server", f"http://127.0.0.1:{port}", "--interval", "1",
         "--no-processes", "--no-connections"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    said = b""
    try:
        assert process.stderr is not None
        with trio.fail_after(30):
            while b"unreachable" not in said:  # logged once its signal handling is set up
                said += await process.stderr.receive_some(4096) or b""
            process.send_signal(signum)
            while chunk := await process.stderr.receive_some(4096):
                said += chunk
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert f"received {signum.name}: stopping".encode() in said, said


async def test_a_password_in_the_server_url_is_never_logged_by_the_probe_nor_said_by_trioscope_health() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = f"http://u:pw55-secret@127.0.0.1:{port}"
    health = subprocess.run([sys.executable, "-m", "trioscope", "health", "--server", server], capture_output=True,
                            text=True, timeout=60)
    assert health.returncode == 1
    assert health.stderr.startswith(f"trioscope health: http://u:***@127.0.0.1:{port}/health: ConnectError")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trioscope_probe", "--server", server, "--interval", "1", "--no-processes",
         "--no-connections"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    said = b""
    try:
        assert process.stderr is not None
        with trio.fail_after(30):
            while b"unreachable" not in said:
                said += await process.stderr.receive_some(4096) or b""
    finally:
        process.terminate()
        await process.wait()
    assert f"reporting to http://u:***@127.0.0.1:{port} ".encode() in said
    assert f"server http://u:***@127.0.0.1:{port} unreachable".encode() in said
    assert b"pw55-secret" not in said


@pytest.mark.parametrize(("url", "shown"), [
    ("http://u:pw@h:1/x", "http://u:***@h:1/x"), ("https://u@h", "https://u@h"), ("http://h/p@x:y", "http://h/p@x:y"),
    ("http://u:p@w@h", "http://u:***@h"),
])
def test_shown_url_hides_only_the_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_a_file_that_is_no_configuration_is_not_echoed(tmp_path: Path) -> None:
    """``--config /etc/shadow`` printed each of its lines as an unknown key, password hashes included."""
    config = tmp_path / "shadow"
    config.write_text("root:$6$salt$hash:20593:0:99999:7:::\n")
    result = _probe("--config", str(config), "--once")
    assert result.returncode == 2 and "$6$salt$hash" not in result.stderr
    assert result.stderr == (f"trioscope-probe: configuration error: {config}:1: not a key of the probe's "
                             "configuration (is it a probe configuration file?)\n")


AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
"""An agent id the probe and the server take (``main``'s check)."""


def agent_id_of(monkeypatch: pytest.MonkeyPatch, hostname: str) -> str:
    """The default agent id of a host named ``hostname`` (as Python decodes it)."""
    monkeypatch.setattr(cli.socket, "gethostname", lambda: hostname)
    return cli.default_agent_id()


@pytest.mark.parametrize(("hostname", "agent_id"), [
    ("web-1", "web-1"), ("web-1.example.com", "web-1.example.com"), ("Web_1:x@y", "Web_1:x@y"), ("my host", "my-host"),
    ("_x", "x"), ("", "host"), ("-.-", "host"), ("a/b", "a-b"), ("a" * 200, "a" * 128),
])
def test_an_ascii_host_names_agent_id_is_as_it_always_was(monkeypatch: pytest.MonkeyPatch, hostname: str,
                                                          agent_id: str) -> None:
    assert agent_id_of(monkeypatch, hostname) == agent_id


def test_host_names_that_are_not_ascii_give_distinct_agent_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each character outside an id's was a ``-``: ``сервер`` and ``база`` were
    both ``host``, ``höst`` and ``hëst`` both ``h-st``, and the topology
    flipped between them."""
    names = ["сервер", "база", "höst", "hëst", "Höst", "😀", "😁", "h\udcffst", "h\udcfest", "höst.example.com",
             "höst.example.org", "é." * 21 + "a", "é." * 21 + "b", "ü" * 64, "ü" * 63 + "ö"]
    ids = [agent_id_of(monkeypatch, name) for name in names]
    assert len(set(ids)) == len(names) and all(AGENT_ID.fullmatch(i) for i in ids), ids
    assert [agent_id_of(monkeypatch, name) for name in ("höst", "сервер.example", "😀")] == [
        "xn--hst-sna", "xn--b1afb6bcb.example", "xn--e28h"]  # as DNS writes them


def test_a_host_names_agent_id_is_the_same_whatever_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "iso-8859-1")
    assert agent_id_of(monkeypatch, "höst".encode().decode("iso-8859-1")) == "xn--hst-sna"
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    assert agent_id_of(monkeypatch, "höst".encode().decode("ascii", "surrogateescape")) == "xn--hst-sna"


def test_kubernetes_service_links_of_a_service_named_trioscope_probe_are_no_unknown_variables() -> None:
    """A Service named trioscope-probe: the probe refused its variables (exit 2), crashing in a loop."""
    links = {"TRIOSCOPE_PROBE_SERVICE_HOST": "10.96.0.11", "TRIOSCOPE_PROBE_SERVICE_PORT": "80",
             "TRIOSCOPE_PROBE_PORT": "tcp://10.96.0.11:80", "TRIOSCOPE_PROBE_PORT_80_TCP_ADDR": "10.96.0.11"}
    assert unknown_environment(links) == []
    assert unknown_environment({**links, "TRIOSCOPE_PROBE_PORTT": "1"}) != []  # no Service of that name
