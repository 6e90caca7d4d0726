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
