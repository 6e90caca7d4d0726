"""Mistyped arguments, refused by the command they were given to, as an operator sees it (a separate process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRIOSCOPE_")}
    return subprocess.run([sys.executable, "-m", "trioscope", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command line prints (exit 2, nothing on stdout)."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("args", [("serve", "--prot", "9090"), ("--prot", "9090"), ("serve", "--prot=9090")])
def test_a_mistyped_serve_option_is_refused_by_serve_with_the_closest_option(args):
    given = " ".join(args[1:] if args[0] == "serve" else args)
    assert one_line(run(*args)) == (  # serve's help, not the top level's
        f"trioscope serve: unrecognized arguments: {given} (did you mean --port?); see trioscope serve --help")


@pytest.mark.parametrize("args", [("-c", "x.yaml"), ("-p", "9093"), ("-max", "5"), ("-cleanup", "1m")])
def test_a_word_of_one_dash_is_no_abbreviation_of_a_one_dash_flag(args):
    """argparse matched ``-c`` as ``-cleanup-interval`` (the seed's one-dash
    flags), even with abbreviations off: ``-p 9093`` set the port."""
    line = one_line(run("serve", *args, "--print-config"))
    assert line.startswith(f"trioscope serve: unrecognized arguments: {' '.join(args)}"), line


def test_a_whole_one_dash_flag_still_works():
    result = run("serve", "-port", "9093", "--print-config")
    assert result.returncode == 0, result.stderr
    assert any(line.split()[:2] == ["server.port", "9093"] for line in result.stdout.splitlines()), result.stdout


def test_a_stray_word_is_refused_without_a_guess():
    assert one_line(run("serve", "now")) == "trioscope serve: unrecognized arguments: now; see trioscope serve --help"


def test_a_subcommand_refuses_an_option_it_does_not_have(tmp_path):
    result = run("token", "create", "--user", "a", "--tenant", "t", "--role", "ADMIN", "--data-dir", str(tmp_path),
                 "--tll", "1h")
    assert one_line(result) == ("trioscope token create: unrecognized arguments: --tll 1h (did you mean --ttl?); "
                                "see trioscope token create --help")


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "1e400", "301", "ten"])
def test_a_health_timeout_that_is_no_wait_is_refused_by_argparse(timeout):
    line = one_line(run("health", "--timeout", timeout, "--server", "http://127.0.0.1:9"))
    if timeout == "ten":
        assert line == "trioscope health: argument --timeout: 'ten' is not a number of seconds; see trioscope health --help"
    else:
        assert line == (f"trioscope health: argument --timeout: {timeout} is out of range; "
                        "give seconds more than 0 and at most 300; see trioscope health --help")


@pytest.mark.parametrize("timeout", ["0.5", "300"])
def test_a_health_timeout_in_range_is_used(timeout):
    # Nothing listens on port 9: the check runs and fails as unreachable, not as a bad argument.
    result = run("health", "--timeout", timeout, "--server", "http://127.0.0.1:9")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("trioscope health: http://127.0.0.1:9/health: ConnectError")


@pytest.mark.parametrize(("args", "line"), [
    (("serve", "--prot", "1"),
     "trioscope serve: unrecognized arguments: --prot 1 (did you mean --port?); see trioscope serve --help"),
    (("--prot", "1"),
     "trioscope serve: unrecognized arguments: --prot 1 (did you mean --port?); see trioscope serve --help"),
    (("serve", "--port"), "trioscope serve: argument --port/-port: expected one argument; see trioscope serve --help"),
    (("bogus",), "trioscope: argument COMMAND: invalid choice: 'bogus' (choose from 'serve', 'token', 'audit', "
     "'store', 'health', 'version'); see trioscope --help"),
    (("token", "create", "--user", "a"), "trioscope token create: the following arguments are required: "
     "--tenant, --role; see trioscope token create --help"),
    (("token",), "trioscope token: the following arguments are required: COMMAND; see trioscope token --help"),
    # argparse said only "the following arguments are required: --user", never the mistyped option.
    (("token", "create", "--us", "u", "--tenant", "t", "--role", "admin"),
     "trioscope token create: unrecognized arguments: --us (did you mean --user?); see trioscope token create --help"),
    (("audit", "--limit", "x"), "trioscope audit: argument --limit: invalid int value: 'x'; see trioscope audit --help"),
    (("health", "--timeout", "ten"),
     "trioscope health: argument --timeout: 'ten' is not a number of seconds; see trioscope health --help"),
    (("store", "copy", "--from"), "trioscope store copy: argument --from: expected one argument; "
     "see trioscope store copy --help"),
])
def test_every_mistake_is_one_line_naming_the_help_to_read(args, line):
    assert one_line(run(*args)) == line


def test_a_value_out_of_its_choices_is_one_line():
    assert one_line(run("serve", "--log-level", "loud", "--print-config")) == (
        'trioscope: configuration error: log.level: "loud" from flag --log-level is not allowed; '
        "use one of debug, info, warning, error")


@pytest.mark.parametrize(("flags", "env", "line"), [
    ((), {"TRIOSCOPE_SERVER_URL": "notaurl"},
     'trioscope health: --server: "notaurl" from env TRIOSCOPE_SERVER_URL is not an http:// or https:// URL'),
    (("--server", "notaurl"), {"TRIOSCOPE_SERVER_URL": "http://127.0.0.1:9"},
     'trioscope health: --server: "notaurl" from flag --server is not an http:// or https:// URL'),
])
def test_a_bad_server_url_names_where_it_came_from(flags, env, line):
    result = subprocess.run([sys.executable, "-m", "trioscope", "health", *flags], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=60)
    assert one_line(result) == line


def test_an_unusable_ca_file_from_the_environment_names_the_variable(tmp_path):
    missing = tmp_path / "missing.pem"
    result = subprocess.run([sys.executable, "-m", "trioscope", "health", "--server", "https://127.0.0.1:9"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "TRIOSCOPE_CA_FILE": str(missing)})
    assert one_line(result).startswith(f"trioscope health: --ca-file: cannot use {missing} (from env "
                                       "TRIOSCOPE_CA_FILE): ")


def test_health_of_a_server_that_is_not_trioscope_says_what_it_got_in_one_line():
    """It printed another server's HTML page whole (14 lines), or an empty
    line for an empty 404, and never the status."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>\n<body>\nnot here\n</body>\n</html>\n" if self.path == "/health" else b""
            self.send_response(404 if self.path == "/health" else 200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    serving = threading.Thread(target=other.serve_forever, daemon=True)
    serving.start()
    try:
        url = f"http://127.0.0.1:{other.server_address[1]}"
        result = run("health", "--server", url)
    finally:
        other.shutdown()
        other.server_close()
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [f"trioscope health: {url}/health: 404 Not Found (not a trioscope server's "
                                          "answer: text/html; is --server right?)"]


def test_a_negative_value_after_its_flag_is_the_values_refusal_not_a_missing_argument():
    """argparse took ``-5s`` for a flag: "expected one argument"."""
    result = run("serve", "--print-config", "--shutdown-timeout", "-5s")
    assert result.returncode == 2 and "is negative; durations must be zero or more" in result.stderr


@pytest.mark.parametrize(("args", "option"), [
    (("--role", "viewer", "--role", "admin", "--user", "u", "--tenant", "t"), "--role"),
    (("--user", "u", "--user", "v", "--tenant", "t", "--role", "admin"), "--user"),
    (("--user", "u", "--tenant", "t", "--tenant", "s", "--role", "admin"), "--tenant"),
])
def test_whom_a_token_is_for_and_its_role_are_given_once(args, option):
    """``--role viewer --role admin`` minted an ADMIN token (the last one wins)."""
    result = run("token", "create", *args)
    assert result.returncode == 2 and result.stdout == ""
    assert one_line(result) == (f"trioscope token create: argument {option}: given more than once; give it once; "
                                "see trioscope token create --help")


def test_health_asks_the_server_its_environment_configures_on_this_machine() -> None:
    """A container's HEALTHCHECK runs beside the server with its variables: with
    TRIOSCOPE_SERVER_PORT set, it asked port 8080 all the same and failed."""
    from tests.server_process import ServerProcess

    with ServerProcess() as server:
        port = server.base_url.rpartition(":")[2]
        env = {name: value for name, value in os.environ.items() if not name.startswith("TRIOSCOPE_")}
        result = subprocess.run([sys.executable, "-m", "trioscope", "health", "--ready"], capture_output=True,
                                text=True, env={**env, "TRIOSCOPE_SERVER_PORT": port}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"ready"' in result.stdout
