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


@pytest.mark.parametrize("args", [("serve", "--prot", "9090"), ("--prot", "9090"), ("serve", "--prot=9090")])
def test_a_mistyped_serve_option_is_refused_by_serve_with_the_closest_option(args):
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: trioscope serve ")  # serve's usage, not the top level's
    assert f"trioscope serve: error: unrecognized arguments: {' '.join(args[1:] if args[0] == 'serve' else args)}" \
        " (did you mean --port?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stray_word_is_refused_without_a_guess():
    result = run("serve", "now")
    assert result.returncode == 2
    assert result.stderr.rstrip().endswith("trioscope serve: error: unrecognized arguments: now")


def test_a_subcommand_refuses_an_option_it_does_not_have(tmp_path):
    result = run("token", "create", "--user", "a", "--tenant", "t", "--role", "ADMIN", "--data-dir", str(tmp_path),
                 "--tll", "1h")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: trioscope token create ")
    assert "unrecognized arguments: --tll 1h (did you mean --ttl?)" in result.stderr


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "1e400", "301", "ten"])
def test_a_health_timeout_that_is_no_wait_is_refused_by_argparse(timeout):
    result = run("health", "--timeout", timeout, "--server", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: trioscope health ")
    last = result.stderr.rstrip().splitlines()[-1]
    if timeout == "ten":
        assert last == "trioscope health: error: argument --timeout: 'ten' is not a number of seconds"
    else:
        assert last == (f"trioscope health: error: argument --timeout: {timeout} is out of range; "
                        "give seconds more than 0 and at most 300")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("timeout", ["0.5", "300"])
def test_a_health_timeout_in_range_is_used(timeout):
    # Nothing listens on port 9: the check runs and fails as unreachable, not as a bad argument.
    result = run("health", "--timeout", timeout, "--server", "http://127.0.0.1:9")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("trioscope health: http://127.0.0.1:9/health: ConnectError")
