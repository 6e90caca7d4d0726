"""Configuration problems as an operator meets them: `serve` and `token create` run
as separate processes, exit 2 with one line per problem and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(*args: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Only what Python needs, so the tester's own TRIOSCOPE_* variables cannot leak in.
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRIOSCOPE_")}
    env.update(environ or {})
    return subprocess.run([sys.executable, "-m", "trioscope", *args], capture_output=True, text=True, env=env,
                          timeout=60)


TOKEN_CREATE = ("token", "create", "--user", "alice", "--tenant", "acme", "--role", "VIEWER")


@pytest.mark.parametrize("command", [("serve", "--print-config"), TOKEN_CREATE])
def test_a_config_file_nested_too_deep_is_one_line_and_exit_2(tmp_path, command):
    config = tmp_path / "deep.yaml"
    config.write_text("server:\n  port: " + "[" * 1000 + "]" * 1000 + "\n")
    result = run(*command, "--config", str(config), "--data-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == (f"trioscope: configuration error: {config}:2: invalid YAML: "
                             "nested too deep (more than 32 levels)\n")


@pytest.mark.parametrize("command", [("serve", "--print-config"), TOKEN_CREATE])
def test_a_misspelt_environment_variable_is_refused_with_the_name_meant(tmp_path, command):
    result = run(*command, "--data-dir", str(tmp_path), environ={"TRIOSCOPE_AUTH_PROTECT_READ": "true"})
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == ("trioscope: configuration error: TRIOSCOPE_AUTH_PROTECT_READ: unknown environment "
                             "variable (did you mean TRIOSCOPE_AUTH_PROTECT_READS?)\n")


def test_an_empty_environment_variable_is_refused_as_an_empty_flag_is():
    by_env = run("serve", "--print-config", environ={"TRIOSCOPE_SERVER_HOST": ""})
    by_flag = run("serve", "--print-config", "--host", "")
    assert (by_env.returncode, by_flag.returncode) == (2, 2)
    assert by_env.stderr == ('trioscope: configuration error: server.host: "" from env TRIOSCOPE_SERVER_HOST is '
                             "empty; expected a host name or IP address\n")
    assert by_flag.stderr == by_env.stderr.replace("env TRIOSCOPE_SERVER_HOST", "flag --host")


def test_variables_of_the_probe_and_of_other_commands_are_no_problem(tmp_path):
    environ = {"TRIOSCOPE_PROBE_SERVER": "http://127.0.0.1:9", "TRIOSCOPE_PROBE_INTERVAL": "15s",
               "TRIOSCOPE_SERVER_URL": "http://127.0.0.1:9", "TRIOSCOPE_CA_FILE": str(tmp_path / "ca.pem"),
               "TRIOSCOPE_CONFIG": ""}
    result = run("serve", "--print-config", environ=environ)
    assert result.returncode == 0, result.stderr
    assert "protect_reads" in result.stdout


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://u:pw-secret@h:99999/db", "has a bad port (1-65535)"),
    ("postgresql://u:pw-secret@h:abc/db", "has a bad port (1-65535)"),
    ("postgresql://u:pw-secret@/db", "names no host"),
    ("postgresql://u:pw-secret@h/", "names no database"),
    ("postgresql://u:pw-secret@h/db#frag", "has a fragment"),
])
def test_a_malformed_database_url_is_a_usage_error_naming_the_option(url: str, problem: str) -> None:
    """They were taken, and failed at start with exit 1 (``invalid port number: "99999"``)."""
    result = run("serve", "--print-config", "--database", url)
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("trioscope: configuration error: store.database: postgresql://u:***@") and problem in line
    assert "from flag --database" in line and "pw-secret" not in line


@pytest.mark.parametrize("url", [
    "postgresql://u:p@h:5432/db", "postgres://u@h1:5432,h2:5433/db?sslmode=require", "postgresql://u@[::1]:5432/db",
    "postgresql:///db?host=/run/postgresql", "postgresql://h?dbname=x", "postgresql://u:p#w@h/db",
])
def test_database_urls_libpq_takes_are_taken(url: str) -> None:
    assert run("serve", "--print-config", "--database", url).returncode == 0
