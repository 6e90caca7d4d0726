"""At start, one WARNING when ``limits.connections_per_address`` caps nothing:
at or above the client connections the open-file limit allows, one address
could take every connection (the default 3,000 under a hard limit of 256)."""

from __future__ import annotations

from tests.server_process import ServerProcess

WARNING = "limits.connections_per_address ("


def _started_under_256_files(flags: list[str]) -> list[str]:
    server = ServerProcess(flags)
    server.argv = ["prlimit", "--nofile=128:256", *server.argv]
    with server:
        pass
    return [line for line in server.stderr().splitlines() if WARNING in line]


def test_a_cap_the_open_file_limit_makes_void_is_said_once_with_both_figures() -> None:
    lines = _started_under_256_files([])
    assert len(lines) == 1, lines
    assert " WARNING " in lines[0], lines
    assert "(3000)" in lines[0] and "192 client connections" in lines[0] and "(256)" in lines[0], lines
    assert "--max-connections-per-address" in lines[0]


def test_a_cap_below_the_room_is_not_said() -> None:
    assert _started_under_256_files(["--max-connections-per-address", "191"]) == []
