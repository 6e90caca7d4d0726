"""A server started with ``--database postgresql://...`` keeps its store there:
the command service's whole flow (a user token from the CLI, a deployment, an
agent, commands polled and reported) is served from it, nothing is written to
the data directory's SQLite, and after ``kill -9`` every acknowledged command,
status and audit record is in PostgreSQL; a new server on it carries on."""

from __future__ import annotations

import signal
from pathlib import Path

import attrs
import httpx
import orjson
import trio

from tests.integration.test_commands import Operator, enroll
from tests.server_process import ServerProcess, run_cli
from trioscope.store import DATABASE_FILE, StoreReader


@attrs.define
class CliOperator(Operator):
    """A user whose token ``trioscope token create`` minted."""

    token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def test_commands_are_served_from_postgresql_and_kill_9_loses_nothing_acknowledged(postgres_url: str) -> None:
    args = ["--database", postgres_url, "--timeout-grace", "0s"]
    with ServerProcess(args) as server:
        minted = run_cli(["token", "create", "--user", "kim", "--tenant", "pg", "--role", "OPERATOR"], env=server.env)
        assert minted.returncode == 0, minted.stderr
        operator = CliOperator(server, "kim", "pg", token=minted.stdout.strip())
        async with httpx.AsyncClient(timeout=10) as client:
            agent = await enroll(client, server, operator)
            created = [(await operator.command(client, agent.deployment_hash, type="restart",
                                               parameters={"n": i}))["command_id"] for i in range(5)]
            polled = await agent.poll(client, timeout=5)
            assert polled is not None and polled.command_id == created[0]
            answer = await agent.report(client, polled.command_id, "success", result={"state": "running"})
            assert answer.status_code == 200, answer.text
            second = await agent.poll(client, timeout=5)
            assert second is not None and second.command_id == created[1]
        server.send_signal(signal.SIGKILL)
        server.wait()
        assert not (Path(server.data_dir) / DATABASE_FILE).exists()

        reader = StoreReader(postgres_url)
        try:
            stored = [await reader.command(c) for c in created]
            assert [c.status.value if c else None for c in stored] == [
                "completed", "sent", "queued", "queued", "queued"]
            assert stored[0] is not None and stored[0].result == {"state": "running"}
            records, _ = await reader.audit("pg", action="command.create", actor=None, since=None, until=None,
                                            limit=100, offset=0)
            assert sorted(r.entry.resource_id or "" for r in records) == sorted(created)
            [enrolled] = await reader.agents()
            assert enrolled.id == agent.agent_id
        finally:
            reader.close()
        audit = run_cli(["audit", "--database", postgres_url, "--tenant", "pg", "--action", "command.create",
                         "--json"])
        assert audit.returncode == 0, audit.stderr
        assert sorted(orjson.loads(line)["resource_id"] for line in audit.stdout.splitlines()) == sorted(created)

    with ServerProcess(args) as server:  # another server, another data directory: the same store
        async with httpx.AsyncClient(timeout=10) as client:
            operator = CliOperator(server, "kim", "pg", token=operator.token)
            agent = attrs.evolve(agent, base_url=server.base_url)
            polled = await agent.poll(client, timeout=5)
            assert polled is not None and polled.command_id == created[2]
            with trio.fail_after(10):
                assert (await operator.get(client, agent.deployment_hash, created[0]))["status"] == "completed"


def test_an_unreachable_database_stops_the_server_with_one_line_without_its_password() -> None:
    result = run_cli(["serve", "--host", "127.0.0.1", "--port", "0", "--local-probe", "false",
                      "--database", "postgresql://kim:pw-secret@127.0.0.1:1/trioscope"])
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "cannot use the database postgresql://127.0.0.1:1/trioscope: Unavailable: cannot connect" in lines[0]
    assert "pw-secret" not in result.stderr
