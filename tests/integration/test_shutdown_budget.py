"""What the server shields from cancellation holds no shutdown past its budget,
against a real server: writes to clients that read nothing end with the graceful
phase, and a store that another program keeps locked is waited for until the
budget's end (a poll caught in it answered 504 ``outcome_unknown`` at the cut,
never 500); a second signal ends either at once."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from tests.integration.test_commands import Operator, setup
from tests.integration.test_live_resets import load_hosts, open_unread
from tests.runtime_counts import processed
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from tests.waiting import eventually

EXIT_DEADLINE = 15.0
"""Seconds a stopping server is given to exit: far above its budgets here (2 s and 4 s) and
far below what held it before (``server.write_timeout``, 30 s; SQLite's ``busy_timeout``, 30 s)."""
HOSTS = 30
PROCESSES = 300
"""Each host's: a processes view of ~9,000 nodes, megabytes, which a client that reads
nothing never takes (its socket's buffers hold a few hundred KiB)."""
UNREAD = 5


async def _exit_code(server: ServerProcess) -> int:
    """The server's exit code, once it exited (``EXIT_DEADLINE`` at most)."""
    try:
        return await trio.to_thread.run_sync(server.wait, EXIT_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit within {EXIT_DEADLINE:g} s:\n{server.stderr()[-4000:]}")


async def _logged(server: ServerProcess, text: str) -> None:
    async def said() -> bool:
        return text in server.stderr()

    await eventually(said)


@pytest.mark.parametrize(("args", "second", "code"), [
    # Cut when the graceful phase ends (1 s), as Hypercorn's connections are: a clean stop.
    pytest.param(["--shutdown-timeout", "2s"], None, 0, id="at-the-drains-end"),
    # A second signal: at once, long before the graceful phase's end or the write timeout.
    pytest.param(["--shutdown-timeout", "60s", "--write-timeout", "60s"], signal.SIGINT, 130, id="second-signal"),
])
async def test_clients_that_read_nothing_hold_no_shutdown(args: list[str], second: signal.Signals | None,
                                                          code: int) -> None:
    with ServerProcess(args) as server:
        await load_hosts(server, HOSTS, PROCESSES)
        # One address each: resets held back for their address (``--ws-max-reset-bytes-per-address``)
        # are not being written, and each of these is.
        unread = [await open_unread(server, "/api/v1/ws?view=processes", f"127.0.0.{2 + i}") for i in range(UNREAD)]
        try:
            first = second or signal.SIGTERM
            server.send_signal(first)
            if second is not None:
                await _logged(server, f"received {first.name}: shutting down")
                server.send_signal(second)
            assert await _exit_code(server) == code
        finally:
            for sock in unread:
                sock.close()
    log = server.stderr()
    assert "Traceback" not in log and "crashed" not in log, log
    if second is None:
        assert f"closed {UNREAD} connection(s) still blocked writing to clients that read nothing" in log, log
        assert "stopped cleanly" in log and "read nothing for 30 s" not in log
    else:
        assert f"received {second.name} again: stopped at once" in log, log


async def _store_processed(server: ServerProcess, client: httpx.AsyncClient) -> int:
    admin = {"Authorization": f"Bearer {server.user_token('root', 'ops', 'ADMIN')}"}
    return processed((await client.get(f"{server.base_url}/api/v1/runtime", headers=admin)).json(), "/root/store")


@pytest.mark.parametrize(("second", "code"), [pytest.param(False, 1, id="at-the-budgets-end"),
                                              pytest.param(True, 143, id="second-signal")])
async def test_a_store_another_program_keeps_locked_holds_no_shutdown_past_its_budget(
        second: bool, code: int) -> None:
    # SQLite whatever the environment names: the test holds the store's write lock.
    with ServerProcess(["--shutdown-timeout", "4s"], env={"TRIOSCOPE_DATABASE": ""}) as server:
        assert isinstance(server.database, Path), server.database
        async with httpx.AsyncClient(timeout=60) as client:
            operator, agent = await setup(server, client)
            created = await operator.command(client, agent.deployment_hash)
            committed = await _store_processed(server, client)
            # Held until the server has exited, as a backup tool or an sqlite3 shell would.
            with contextlib.closing(sqlite3.connect(server.database, isolation_level=None)) as locker:
                locker.execute("BEGIN EXCLUSIVE")
                async with trio.open_nursery() as nursery:
                    polled: list[httpx.Response] = []

                    async def poll() -> None:
                        polled.append(await agent.wait(client, timeout=30))

                    nursery.start_soon(poll)

                    async def handing_out() -> bool:  # the command's hand-out is being committed
                        return await _store_processed(server, client) > committed

                    await eventually(handing_out)
                    server.send_signal(signal.SIGTERM)
                [answer] = polled
                # Cut with the other requests (1.6 s), its command maybe handed out: check, not 503 or 500.
                assert (answer.status_code, answer.json()["error"]["code"]) == (504, "outcome_unknown"), answer.text
                if second:
                    server.send_signal(signal.SIGTERM)
                assert await _exit_code(server) == code
        log = server.stderr()
        assert "Traceback" not in log, log
        if second:
            assert "received SIGTERM again: stopped at once" in log, log
        else:
            assert "shutdown did not finish within 4s; cancelled what was left" in log, log
        await _still_queued(server.data_dir, operator, agent, created["command_id"])  # before it is removed


async def _still_queued(data_dir: str, operator: Operator, agent: StatusAgent, command_id: str) -> None:
    """The command of the abandoned hand-out is queued after a restart (nothing was lost), and delivered."""
    with ServerProcess(env={"TRIOSCOPE_DATABASE": "", "TRIOSCOPE_STORAGE_DATA_DIR": data_dir}) as again:
        operator = Operator(again, operator.user_id, operator.tenant)
        agent = StatusAgent(again.base_url, agent.agent_id, agent.token, agent.deployment_hash)
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await operator.get(client, agent.deployment_hash, command_id))["status"] == "queued"
            polled = await agent.poll(client, timeout=5)
            assert polled is not None and polled.command_id == command_id
