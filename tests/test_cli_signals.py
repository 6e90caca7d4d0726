"""Ctrl-C and SIGTERM where no command handles them (while the command line's
modules are imported, or ``serve`` imports the server): one line, exit 130 or
143, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from trioscope import cli

# What arrives while ``trioscope.cli`` is being imported: the import raises it (Ctrl-C)
# or the signal is sent then (SIGTERM); a real signal at that moment is a matter of timing.
DURING_IMPORT = """
import os, signal, sys, time
import trioscope.entry_point

class Arrives:
    def find_spec(self, name, path=None, target=None):
        if name == "trioscope.cli":
            {arrival}
        return None

sys.meta_path.insert(0, Arrives())
sys.argv = ["trioscope", "version"]
trioscope.entry_point.main()
"""


@pytest.mark.parametrize(("arrival", "code", "line"), [
    ("raise KeyboardInterrupt", 130, "trioscope: interrupted"),
    ("os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)", 143, "trioscope: received SIGTERM; stopped"),
])
def test_a_signal_while_the_command_starts_is_one_line(arrival: str, code: int, line: str) -> None:
    script = textwrap.dedent(DURING_IMPORT).replace("{arrival}", arrival)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (code, line + "\n")


def test_ctrl_c_before_a_command_handles_it_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """As while ``serve`` imports the server, before its own handling of SIGINT."""
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_settings", interrupted)
    assert _exit_code(lambda: cli.main(["serve", "--print-config"])) == 130
    assert capsys.readouterr().err == "trioscope: interrupted\n"


def _exit_code(run: Callable[[], None]) -> object:
    """The exit code ``run`` ends with (a KeyboardInterrupt is no exit: a traceback)."""
    try:
        run()
    except SystemExit as exc:
        return exc.code
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C was a traceback")
    pytest.fail("it did not exit")
