"""``trioscope serve`` as a user runs it: a real process on a real port."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.server_process import ServerProcess, run_cli
from tests.waiting import eventually
from trioscope.config import KEYS


def test_health_ping_runtime_then_sigterm_exits_cleanly():
    with ServerProcess() as server:
        health = httpx.get(f"{server.base_url}/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "healthy"
        assert datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%SZ")

        ping = httpx.get(f"{server.base_url}/api/v1/ping")
        assert ping.status_code == 200 and ping.json()["message"] == "pong"

        admin = {"Authorization": f"Bearer {server.user_token(role='ADMIN')}"}
        runtime = httpx.get(f"{server.base_url}/api/v1/runtime", headers=admin)
        assert runtime.status_code == 200
        tree = runtime.json()
        assert tree["root"]["path"] == "/root" and tree["root"]["status"] == "running"
        assert tree["dead_letters"] == 0

        wrong = run_cli(["health", "--server", f"{server.base_url}/api"])  # a path too many: trioscope's 404
        assert wrong.returncode == 1 and wrong.stderr.splitlines() == [
            f"trioscope health: {server.base_url}/api/health: 404 Not Found"]  # (Hypercorn sends no phrase)

        assert server.stop(signal.SIGTERM) == 0
        log = server.stderr()
        assert "stopped cleanly" in log and "Traceback" not in log


def test_sigint_also_stops_cleanly():
    with ServerProcess() as server:
        assert httpx.get(f"{server.base_url}/health").status_code == 200
        assert server.stop(signal.SIGINT) == 0


def test_unknown_routes_and_methods_get_json_errors():
    with ServerProcess() as server:
        missing = httpx.get(f"{server.base_url}/api/v1/nothing-here")
        assert missing.status_code == 404
        assert missing.json() == {"error": {"code": "not_found", "message": "no such endpoint: GET /api/v1/nothing-here"}}
        wrong = httpx.delete(f"{server.base_url}/health")
        assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
        assert "GET" in wrong.headers["allow"]
        for path in ("/api/v1/query//topology", "/api/v1//reports"):  # no HTML redirect to merged slashes
            doubled = httpx.get(f"{server.base_url}{path}")
            assert doubled.status_code == 404 and doubled.json()["error"]["code"] == "not_found", path
        for path in ("/api/v1/query/nodes/" + "x" * 60_000, "/api/v1/" + "y" * 9000):  # not echoed whole
            long = httpx.get(f"{server.base_url}{path}")
            assert long.status_code == 414 and long.json()["error"]["code"] == "uri_too_long"
            assert len(long.content) < 200


def test_banner_lists_address_configuration_and_endpoints():
    with ServerProcess(["-max-data-age", "2h"]) as server:
        banner = "\n".join(server.read_banner())
        assert f"Health Check:          {server.base_url}/health" in banner
        assert "Max Data Age:          2h0m0s" in banner
        assert "GET    /api/v1/ping" in banner


def test_runtime_snapshot_is_for_admins_only():
    with ServerProcess() as server:
        url = f"{server.base_url}/api/v1/runtime"
        assert httpx.get(url).status_code == 401
        operator = {"Authorization": f"Bearer {server.user_token(role='OPERATOR')}"}
        refused = httpx.get(url, headers=operator)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        admin = {"Authorization": f"Bearer {server.user_token(role='ADMIN')}"}
        assert httpx.get(url, headers=admin).status_code == 200


def test_port_in_use_is_one_line_and_exit_code_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(["serve", "--host", "127.0.0.1", "--port", str(port)])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0] and "in use" in lines[0]


@pytest.mark.parametrize("damage", ["corrupt database", "damaged tables", "newer database", "foreign database",
                                    "data dir is a file", "short secret"])
def test_an_unusable_data_dir_is_one_line_naming_it_and_exit_code_1(tmp_path, damage):
    data = tmp_path / "data"
    if damage == "data dir is a file":
        data.write_text("not a directory")
        expected = f"NotADirectoryError: {data} is a file, not a directory"  # (it said "[Errno 17] File exists")
    else:
        data.mkdir()
        if damage == "corrupt database":
            (data / "trioscope.sqlite3").write_bytes(b"\x13" * 4096)
            expected = "file is not a database"
        elif damage == "damaged tables":  # its header whole, the pages of its tables not: a 150-line traceback
            from trioscope.store import open_writer
            open_writer(data / "trioscope.sqlite3").close()
            with open(data / "trioscope.sqlite3", "r+b") as database_file:
                database_file.seek(4096)
                database_file.write(b"\xff" * 4096 * 3)
            expected = "database disk image is malformed"
        elif damage == "newer database":  # written by a later trioscope: never used, never changed
            database = sqlite3.connect(data / "trioscope.sqlite3")
            database.execute("PRAGMA user_version = 999")
            database.close()
            expected = "NewerSchema: the database has schema version 999, newer than this trioscope knows"
        elif damage == "foreign database":  # another program's: it said "no such table: main.commands"
            database = sqlite3.connect(data / "trioscope.sqlite3")
            database.execute("CREATE TABLE notes (x)")
            database.close()
            expected = "ForeignDatabase: the database is not trioscope's (its tables: notes)"
        else:
            (data / "jwt-secret").write_text("\n")  # as a crash mid-write used to leave it
            expected = "fewer than 32 bytes"
    result = run_cli(["serve", "--host", "127.0.0.1", "--port", "0", "--local-probe", "false"],
                     env={"TRIOSCOPE_STORAGE_DATA_DIR": str(data), "TRIOSCOPE_AUTH_SECRET": ""})
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot use the data directory {data}" in lines[0] and expected in lines[0], lines[0]
    if damage == "short secret":  # refused before the store was made
        assert not (data / "trioscope.sqlite3").exists()
    if damage == "foreign database":  # refused before anything changed it, even its journal mode
        database = sqlite3.connect(data / "trioscope.sqlite3")
        assert database.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        database.close()


def test_a_second_server_on_the_same_data_dir_is_one_line_and_exit_code_1(tmp_path):
    """Two servers on one SQLite store each served from a directory of their
    own in memory (a deployment created on one was 404 on the other, a command
    queued through one never handed out by the other): the second is refused;
    the first serves on, and once it has stopped the directory is free again."""
    env = {"TRIOSCOPE_STORAGE_DATA_DIR": str(tmp_path / "data")}
    second = ["serve", "--host", "127.0.0.1", "--port", "0", "--local-probe", "false"]
    database = tmp_path / "data" / "trioscope.sqlite3"
    with ServerProcess(["--local-probe", "false"], env=env) as first:
        # As if the store were of a version before: the refused server must not migrate it under the first.
        with contextlib.closing(sqlite3.connect(database)) as store:
            version = store.execute("PRAGMA user_version").fetchone()[0]
            store.execute(f"PRAGMA user_version = {version - 1}")
        result = run_cli(second, env=env)
        with contextlib.closing(sqlite3.connect(database)) as store:
            assert store.execute("PRAGMA user_version").fetchone()[0] == version - 1  # it migrated it before
            store.execute(f"PRAGMA user_version = {version}")
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"cannot use the data directory {tmp_path / 'data'}: another trioscope server uses it" in lines[0]
        assert httpx.get(f"{first.base_url}/health/ready").status_code == 200
    with ServerProcess(["--local-probe", "false"], env=env) as again:
        assert httpx.get(f"{again.base_url}/health/ready").status_code == 200


def test_a_store_an_earlier_server_has_open_is_refused_unchanged_naming_its_process(tmp_path):
    """A server of a release before the store's lock takes none: the new one
    started beside it upgraded its schema under it, and both served (a
    deployment created through one was 404 on the other). Whoever has the
    store open (its connection's lock on SQLite's shared memory) refuses it."""
    data = tmp_path / "data"
    env = {"TRIOSCOPE_STORAGE_DATA_DIR": str(data)}
    with ServerProcess(["--local-probe", "false"], env=env):
        pass  # a store of this version, then one version back, as an earlier release left it
    database = data / "trioscope.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as store:
        version = store.execute("PRAGMA user_version").fetchone()[0]
        store.execute(f"PRAGMA user_version = {version - 1}")
    earlier = subprocess.Popen(  # what an earlier server is to the store: a connection, no lock
        [sys.executable, "-c", f"import sqlite3, sys; c = sqlite3.connect({str(database)!r}); "
         "c.execute('SELECT count(*) FROM commands').fetchall(); print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert earlier.stdout is not None and earlier.stdout.readline() == "open\n"
        result = run_cli(["serve", "--host", "127.0.0.1", "--port", "0", "--local-probe", "false"], env=env)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"another trioscope server uses it (process {earlier.pid} has it open" in lines[0], lines[0]
        copied = run_cli(["store", "copy", "--from", f"sqlite:{database}", "--to", f"sqlite:{tmp_path / 'copy.db'}",
                          "--upgrade-source"])
        assert copied.returncode == 1 and f"process {earlier.pid} has it open" in copied.stderr, copied.stderr
    finally:
        earlier.kill()
        earlier.wait()
    with contextlib.closing(sqlite3.connect(database)) as store:
        assert store.execute("PRAGMA user_version").fetchone()[0] == version - 1  # not migrated under it
    with ServerProcess(["--local-probe", "false"], env=env) as again:  # once it is gone, served (and migrated)
        assert httpx.get(f"{again.base_url}/health/ready").status_code == 200


def test_bad_configuration_exits_2_with_one_line_per_problem(tmp_path):
    config = tmp_path / "trioscope.yaml"
    config.write_text("server:\n  host: 127.0.0.1\nstorage:\n  cleanup_interval: soon\n")
    result = run_cli(
        ["serve", "--config", str(config), "-port", "99999"],
        env={"MAX_DATA_AGE": "1x"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert any("server.port" in l and "flag -port" in l and "0..65535" in l for l in lines)
    assert any("storage.max_data_age" in l and "env MAX_DATA_AGE" in l for l in lines)
    assert any("storage.cleanup_interval" in l and f"{config}:4" in l for l in lines)
    assert "Traceback" not in result.stderr


def test_print_config_shows_each_value_and_its_source(tmp_path):
    config = tmp_path / "t.yaml"
    config.write_text("storage:\n  cleanup_interval: 10m\n")
    result = run_cli(
        ["serve", "--print-config", "--config", str(config), "--port", "9191"],
        env={"APP_HOST": "127.0.0.2"},
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in result.stdout.splitlines()}
    assert rows["server.port"] == ["9191", "flag --port"]
    assert rows["server.host"] == ["127.0.0.2", "env APP_HOST"]
    assert rows["storage.cleanup_interval"] == ["10m0s", f"file {config}:2"]
    assert rows["storage.max_data_age"] == ["1h0m0s", "default"]


def test_print_config_refuses_what_serve_would_refuse(tmp_path):
    """--print-config validates a configuration: what serve would refuse at
    start (more than one worker on SQLite, an allocator not installed) it refuses too."""
    result = run_cli(["serve", "--print-config", "--workers", "2", "--database", f"sqlite:{tmp_path / 'x.db'}"])
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("trioscope: configuration error: ") and "SQLite" in result.stderr
    assert "Traceback" not in result.stderr


def test_seed_style_flags_without_a_command_mean_serve():
    result = run_cli(["-port", "9090", "-max-data-age", "2h", "--print-config"])
    assert result.returncode == 0, result.stderr
    assert "flag -max-data-age" in result.stdout


def test_help_explains_every_option():
    top = run_cli(["--help"])
    assert top.returncode == 0 and "serve" in top.stdout
    serve = run_cli(["serve", "--help"])
    assert serve.returncode == 0
    for key in KEYS:
        for flag in key.flags:
            assert flag in serve.stdout, f"{flag} missing from serve --help"
    assert "--print-config" in serve.stdout and "--config" in serve.stdout


def test_json_log_format_writes_one_object_per_line():
    with ServerProcess(["--log-format", "json"]) as server:
        httpx.get(f"{server.base_url}/health")
        assert server.stop() == 0
    records = [json.loads(line) for line in server.stderr().splitlines()]
    assert records and all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    started = {r["actor"] for r in records if r.get("event") == "started"}
    assert {"/root", "/root/agents", "/root/topology"} <= started


async def test_serve_starts_a_local_probe_and_ends_it_by_pid() -> None:
    with ServerProcess(env={"TRIOSCOPE_AGENTS_LOCAL_PROBE": "true"}) as server:
        async with httpx.AsyncClient() as client:

            async def this_host_reported() -> bool:
                agents = (await client.get(f"{server.base_url}/api/v1/agents/list")).json()["agents"]
                return any(a["hostname"] == socket.gethostname() for a in agents)

            await eventually(this_host_reported, deadline=30)
        assert server.stop(signal.SIGTERM) == 0
    log = server.stderr()
    started = [line for line in log.splitlines() if "local probe started (pid" in line]
    assert started and "local probe stopped" in log
    pid = int(started[0].split("(pid ")[1].split(")")[0])
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(pid).status()


def _hold_the_drain(server: ServerProcess) -> socket.socket:
    """A request whose body never comes: Hypercorn's graceful drain waits for
    it (up to half of --shutdown-timeout), so the shutdown is still under way
    when a test acts. Returned once the server has taken the request in (its
    100 Continue): a connection with no request yet is closed at once instead."""
    url = urlsplit(server.base_url)
    assert url.hostname is not None and url.port is not None
    held = socket.create_connection((url.hostname, url.port), timeout=30)
    held.sendall(b"POST /api/v1/reports HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n")
    assert held.recv(1024).startswith(b"HTTP/1.1 100 "), "the server did not take the request in"
    held.sendall(b'{"host_info": ')
    return held


async def _logged(server: ServerProcess, text: str) -> None:
    async def said() -> bool:
        return text in server.stderr()

    await eventually(said, deadline=30)


@pytest.mark.parametrize(("signum", "code", "local_probe"), [
    (signal.SIGINT, 130, "true"),  # as reported: Ctrl-C twice with the local probe (the default)
    (signal.SIGTERM, 143, "false"),
])
async def test_a_second_signal_stops_at_once_in_one_line(signum, code, local_probe):
    with ServerProcess(env={"TRIOSCOPE_AGENTS_LOCAL_PROBE": local_probe}) as server:
        with _hold_the_drain(server):
            server.send_signal(signum)
            await _logged(server, f"received {signum.name}: shutting down")
            server.send_signal(signum)
            assert server.wait() == code
    log = server.stderr()
    assert "Traceback" not in log and "crashed" not in log and "ERROR" not in log, log
    after = log.split(f"received {signum.name}: shutting down", 1)[1]
    assert "did not finish within" not in after and "stopped cleanly" not in after
    assert "http server stopped" not in after  # the drain was not waited for
    [said] = [line for line in after.splitlines() if "stopped at once" in line]
    assert f"received {signum.name} again: stopped at once" in said and f"exit code {code}" in said


async def test_a_shutdown_that_overruns_its_timeout_says_so_and_exits_1():
    budget = 4.0
    with ServerProcess(["--shutdown-timeout", f"{budget:g}s"]) as server:
        with _hold_the_drain(server):  # the drain waits for it for half the budget
            server.send_signal(signal.SIGINT)
            signalled = time.monotonic()
            await _logged(server, "received SIGINT: shutting down")
            # The process stalls (stopped) while its drain still waits, past the
            # whole budget: when it goes on, the deadline has passed. Time
            # passing is the point here, so this waits for time, nothing else.
            server.send_signal(signal.SIGSTOP)
            try:
                time.sleep(max(0.0, signalled + budget + 0.5 - time.monotonic()))
            finally:
                server.send_signal(signal.SIGCONT)
            assert server.wait() == 1
    log = server.stderr()
    assert "Traceback" not in log and "crashed" not in log, log
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "shutdown did not finish within 4s; cancelled what was left" in errors[0], log
    assert "stopped at once" not in log and "stopped cleanly" not in log
