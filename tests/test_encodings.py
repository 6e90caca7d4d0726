"""Text the server meets that is not UTF-8, or printed where the terminal's
encoding is not: bytes of another encoding in a path or a user id (Python
reads them as lone surrogates, which no JSON or UTF-8 holds), and standard
output in Latin-1 or ASCII (``LANG=en_US.ISO-8859-1``, ``PYTHONIOENCODING``)."""

from __future__ import annotations

import logging
import mmap
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import orjson
import pytest

from tests.server_process import ServerProcess
from trioscope.allocator._preload import mapped_files
from trioscope.config._exceptions import InvalidValue
from trioscope.config._kinds import HostNamesKind
from trioscope.domain.principals import InvalidToken, identity_problem, read_user_token
from trioscope.wire.log_lines import JsonFormatter

SECRET = b"a-secret-of-more-than-thirty-two-bytes-for-hs256"


def _trioscope(*args: str, environ: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRIOSCOPE_")}
    return subprocess.run([sys.executable, "-m", "trioscope", *args], capture_output=True, timeout=60,
                          env={**env, **environ})


def test_printing_to_an_ascii_terminal_writes_escapes_not_a_traceback(tmp_path) -> None:
    data_dir = tmp_path / "données"
    result = _trioscope("serve", "--print-config", "--data-dir", str(data_dir),
                        environ={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr.decode()
    assert b"donn\\xe9es" in result.stdout


def test_the_server_starts_where_standard_output_is_not_utf8() -> None:
    """Its banner says "limit ≤ 500": it raised UnicodeEncodeError, and the server did not start."""
    with ServerProcess(env={"PYTHONIOENCODING": "latin-1"}) as server:
        assert httpx.get(f"{server.base_url}/health/ready", timeout=10).status_code == 200


def test_a_data_directory_named_with_bytes_that_are_not_utf8(tmp_path) -> None:
    """SQLite's -shm file, mapped, named the path in /proc/self/maps, read
    strictly at start: the server did not start; JSON logs lost the line
    that named the directory."""
    data_dir = os.fsdecode(os.fsencode(str(tmp_path)) + b"/d \xff \xc3")
    # The banner names the path: escaped, for the harness, which reads it as UTF-8.
    env = {"TRIOSCOPE_STORAGE_DATA_DIR": data_dir, "TRIOSCOPE_LOG_FORMAT": "json",
           "PYTHONIOENCODING": "utf-8:backslashreplace"}
    with ServerProcess(env=env) as server:
        assert httpx.get(f"{server.base_url}/health/ready", timeout=10).status_code == 200
    assert "Logging error" not in server.stderr()


def test_mapped_files_names_paths_of_any_bytes(tmp_path) -> None:
    path = os.fsencode(str(tmp_path)) + b"/mapped-\xff"
    with open(path, "wb") as file:
        file.write(b"x" * mmap.PAGESIZE)
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ):
        assert os.fsdecode(path) in mapped_files()


def test_a_json_log_line_writes_a_lone_surrogate_as_an_escape() -> None:
    record = logging.LogRecord("trioscope.test", logging.WARNING, __file__, 1, "store at %s", ("/tmp/d\udcff",),
                               None)
    record.path = "/tmp/d\udcff"
    line = orjson.loads(JsonFormatter().format(record))
    assert line["msg"] == "store at /tmp/d\\udcff"
    assert line["path"] == "/tmp/d\\udcff"


@pytest.mark.parametrize("value", ["j\udcffrg", "\ud800"])
def test_an_id_of_bytes_that_are_not_utf8_is_no_user_or_tenant(value: str) -> None:
    assert identity_problem(value) == "must be text (UTF-8): it holds bytes of another encoding"


def test_a_token_naming_a_user_of_a_lone_surrogate_is_refused() -> None:
    """PyJWT reads claims with the json module, which takes a \\udcff escape:
    the token made the store's and the directory's actors crash on each write."""
    now = time.time()
    token = jwt.encode({"sub": "j\udcffrg", "tenant": "acme", "role": "ADMIN", "iat": int(now),
                        "exp": int(now) + 60}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="must be text"):
        read_user_token(SECRET, token, now=now)


@pytest.mark.parametrize(("name", "sent"), [
    ("bücher.example", "xn--bcher-kva.example"),
    ("straße.de", "xn--strae-oqa.de"),  # as browsers map it (Python's IDNA 2003 codec: strasse.de)
])
def test_a_host_name_of_letters_beyond_ascii_is_told_its_idna_form(name: str, sent: str) -> None:
    with pytest.raises(InvalidValue, match=f"a browser sends this one as {sent}"):
        HostNamesKind().parse(name)


def test_a_host_name_with_a_port_is_told_no_idna_form() -> None:
    with pytest.raises(InvalidValue) as refused:
        HostNamesKind().parse("höst:8080")
    assert "no port" in str(refused.value) and "xn--" not in str(refused.value)


def test_a_data_directory_in_no_home_directory_is_refused_naming_the_flag(tmp_path, monkeypatch, caplog) -> None:
    """A container's user (HOME unset, none in the password file) had the
    default ~/.local/share/trioscope made as a directory named "~" wherever
    the server was started, the store and its secret in it."""
    import attrs

    from trioscope.config import resolve_settings
    from trioscope.server import _open_data_dir

    monkeypatch.chdir(tmp_path)
    settings = resolve_settings({}, {}, None)
    settings = attrs.evolve(settings, storage=attrs.evolve(settings.storage,
                                                             data_dir=Path("~/.local/share/trioscope")))
    with caplog.at_level(logging.ERROR):
        assert _open_data_dir(settings) is None
    assert "has no home directory" in caplog.text and "TRIOSCOPE_STORAGE_DATA_DIR" in caplog.text
    assert list(tmp_path.iterdir()) == []
