"""Hostile probe configuration files and values: too long a number, too deep a
nesting, bytes that are not UTF-8, too large a file. Each is one line naming the
file (and line) and the bound, exit status 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trioscope_probe._config import MAX_DEPTH, MAX_FILE_BYTES, MAX_NUMBER, ConfigFileError, load_file

MANY_DIGITS = "9" * 5000
"""More digits than Python's int() converts (4,300)."""


def _probe(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIOSCOPE_PROBE")}
    return subprocess.run([sys.executable, "-m", "trioscope_probe", *argv], capture_output=True, text=True,
                          timeout=60, env={**clean, **(env or {})})


def _problems(config: Path) -> list[str]:
    with pytest.raises(ConfigFileError) as error:
        load_file(str(config))
    assert all("\n" not in problem for problem in error.value.problems)
    return error.value.problems


def _alias_chain(levels: int) -> str:
    """Unknown keys each anchoring a list of the one before: composed, every node is
    shallow; built, ``agent_id`` is ``levels`` lists deep."""
    lines = ["z0: &a0 [x]", *(f"z{i}: &a{i} [*a{i - 1}]" for i in range(1, levels)), f"agent_id: *a{levels - 1}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text", [
    f"buffer: {MANY_DIGITS}\n",  # int() refuses it
    f"allow: [{MANY_DIGITS}]\n",
    f"buffer: {MANY_DIGITS}:30\n",  # YAML 1.1's base 60
    f"agent_id: 0x{'f' * 5000}\n",  # int() reads it, its message could not print it
    f"interval: 1{'0' * 400}\n",  # seconds no float holds
])
def test_a_number_too_long_is_one_problem_naming_the_line_and_the_bound(tmp_path: Path, text: str) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("server: http://a:1\n" + text)
    problems = _problems(config)
    assert len(problems) == 1 and problems[0].startswith(f"{config}:2: "), problems
    assert f"more than {MAX_NUMBER} characters" in problems[0], problems


def test_a_number_is_read_up_to_the_bound(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(f"buffer: {'1' * MAX_NUMBER}\n")
    assert load_file(str(config))["buffer"] == int("1" * MAX_NUMBER)
    config.write_text(f"buffer: {'1' * (MAX_NUMBER + 1)}\n")
    assert _problems(config) == [f"{config}:1: buffer: cannot be read: a number of more than {MAX_NUMBER} characters"]


def test_a_date_that_is_no_date_is_one_problem(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("agent_id: 2023-02-30\n")
    problems = _problems(config)  # what is wrong with it, in words that vary with the Python version
    assert len(problems) == 1 and problems[0].startswith(f"{config}:1: agent_id: cannot be read: "), problems


def test_nesting_deeper_than_the_bound_is_one_problem(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("server: http://a:1\nagent_id: " + "[" * 5000 + "]" * 5000 + "\n")
    problems = _problems(config)
    assert len(problems) == 1 and problems[0].startswith(f"{config}:2: invalid YAML: "), problems
    assert f"nested too deep (more than {MAX_DEPTH} levels)" in problems[0], problems
    levels = MAX_DEPTH - 1  # the document, a mapping, is the first level
    config.write_text("agent_id: " + "[" * levels + "]" * levels + "\n")
    assert _problems(config) == [f"{config}:1: agent_id: expected text, got a list"]


def test_aliases_nesting_deeper_than_the_bound_are_one_problem(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(_alias_chain(3000))
    problems = _problems(config)
    assert len(problems) == 1 and f"nested too deep (more than {MAX_DEPTH} levels)" in problems[0], problems


def test_a_file_that_is_not_utf8_is_one_problem(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_bytes(b"server: http://a:1\n\xff\xfe\x00buffer: 5\n")
    assert _problems(config) == [f"{config}: not UTF-8 text (byte 19)"]


def test_a_file_larger_than_the_bound_is_refused_unread(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("# " + "x" * (MAX_FILE_BYTES - 3) + "\n" + "buffer: 5\n")
    assert _problems(config) == [f"{config}: larger than {MAX_FILE_BYTES // 1024 // 1024} MiB, the most read"]
    at_the_bound = tmp_path / "full.yaml"
    at_the_bound.write_text("buffer: 5\n" + "#" * (MAX_FILE_BYTES - 11) + "\n")
    assert load_file(str(at_the_bound))["buffer"] == 5


@pytest.mark.parametrize(("name", "content"), [
    ("long.yaml", f"buffer: {MANY_DIGITS}\n".encode()),
    ("deep.yaml", ("agent_id: " + "[" * 5000 + "]" * 5000 + "\n").encode()),
    ("aliases.yaml", _alias_chain(3000).encode()),
    ("bytes.yaml", b"\xff\xfe\x00s\x00e\x00r\x00v\x00e\x00r\x00"),
])
def test_the_probe_exits_2_with_one_line_for_a_hostile_file(tmp_path: Path, name: str, content: bytes) -> None:
    config = tmp_path / name
    config.write_bytes(content)
    result = _probe("--config", str(config), "--once")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr[-2000:]
    assert result.stderr.startswith(f"trioscope-probe: configuration error: {config}"), result.stderr[:300]


@pytest.mark.parametrize(("argv", "env", "says"), [
    (["--buffer", MANY_DIGITS], {}, "trioscope-probe: --buffer: must be between 1 and 10000\n"),
    (["--buffer", f"-{MANY_DIGITS}"], {}, "trioscope-probe: --buffer: must be between 1 and 10000\n"),
    ([], {"TRIOSCOPE_PROBE_BUFFER": MANY_DIGITS},
     "trioscope-probe: --buffer (from env TRIOSCOPE_PROBE_BUFFER): must be between 1 and 10000\n"),
])
def test_a_flag_or_variable_of_many_digits_is_out_of_range_not_no_number(
        argv: list[str], env: dict[str, str], says: str) -> None:
    """int() refuses more than 4,300 digits as it refuses letters: such a number is
    whole, and only too large."""
    result = _probe(*argv, "--once", env=env)
    assert result.returncode == 2 and result.stderr == says


def test_the_plain_http_warning_names_the_flag_the_probe_has(tmp_path: Path) -> None:
    """It named ``--tls``, which the probe does not have; ``--ca-file`` trusts a private authority."""
    result = _probe("--server", "http://192.0.2.1:9", "--deployment-hash", "d1", "--state-dir", str(tmp_path),
                    "--exit-with-parent")
    assert "plain http://" in result.stderr and "--ca-file" in result.stderr, result.stderr
    assert "--tls" not in result.stderr
