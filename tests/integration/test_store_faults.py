"""The SQLite store's disk failing under a running server, faults injected
into its system calls by ``strace`` (as the reviewer did): a quota is a full
disk (507); an I/O error refuses writes (503 ``store_failing``) and readiness
with them, until the disk works again; a failed fsync at the commit is 504
``outcome_unknown``. The process never exits for it, and says it in lines,
not tracebacks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest

from tests.integration.test_commands import Operator, enroll
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from tests.tools_path import tool_path
from tests.waiting import eventually



@pytest.fixture(scope="module")
def strace() -> str:
    """Debian's strace, installed first where it is missing (``tests/tools/strace.sh``):
    it injects the faults; skipped only where it cannot be installed."""
    return tool_path("strace.sh")


EDQUOT = ("trace=pwrite64", "inject=pwrite64:error=EDQUOT")
EIO = ("trace=pwrite64", "inject=pwrite64:error=EIO")
FSYNC_ENOSPC = ("trace=fdatasync,fsync", "inject=fdatasync,fsync:error=ENOSPC")


def traced(pid: int) -> bool:
    """Whether every thread of ``pid`` has a tracer."""
    tasks = list(Path(f"/proc/{pid}/task").iterdir())
    return all(_tracer(task) != 0 for task in tasks)


def _tracer(task: Path) -> int:
    with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
        for line in (task / "status").read_text().splitlines():
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 1


@contextlib.asynccontextmanager
async def injected(pid: int, faults: tuple[str, ...], executable: str) -> AsyncIterator[None]:
    """``faults`` (``strace -e`` expressions) injected into the server's
    system calls while inside, by the strace at ``executable``."""
    expressions = [arg for fault in faults for arg in ("-e", fault)]
    strace = subprocess.Popen([executable, "-f", "-qq", "-p", str(pid), *expressions, "-o", os.devnull],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        async def attached() -> bool:
            assert strace.poll() is None, f"strace cannot trace the server: {strace.stderr.read()}"  # type: ignore[union-attr]
            return traced(pid)

        await eventually(attached)
        yield
    finally:
        strace.send_signal(signal.SIGINT)  # detaches
        strace.wait(timeout=30)

    async def detached() -> bool:
        return not any(_tracer(task) for task in Path(f"/proc/{pid}/task").iterdir())

    await eventually(detached)


async def test_disk_faults_refuse_writes_and_the_server_stays_up(tmp_path: Path, strace: str) -> None:
    with ServerProcess(env={"TRIOSCOPE_STORAGE_DATA_DIR": str(tmp_path)}) as server:
        async with httpx.AsyncClient(timeout=20) as client:
            operator = Operator(server, "kim", "faults")
            agent = await enroll(client, server, operator)
            commands = operator.url(agent.deployment_hash, "/commands")

            async def create() -> httpx.Response:
                return await client.post(commands, json={"type": "restart"}, headers=operator.auth)

            async def ready() -> httpx.Response:
                return await client.get(f"{server.base_url}/health/ready")

            assert (await create()).status_code == 202

            # Over a quota: SQLite says "disk I/O error"; a full disk to an operator.
            async with injected(server.pid, EDQUOT, strace):
                refused = await create()
                assert refused.status_code == 507, refused.text
                assert refused.json()["error"]["code"] == "insufficient_storage"
            assert (await create()).status_code == 202

            # A failing disk: refused, readiness with it; reads and liveness go on.
            async with injected(server.pid, EIO, strace):
                refused = await create()
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "store_failing" and refused.headers["Retry-After"]
                not_ready = await ready()
                assert not_ready.status_code == 503 and "store_failing" in not_ready.json()["reason"]
                assert (await client.get(f"{server.base_url}/health")).status_code == 200
                listed = await client.get(commands, headers=operator.auth)
                assert listed.status_code == 200 and listed.json()["total"] == 2
                assert (await create()).status_code == 503  # still, and still up

            async def taken() -> bool:
                return (await create()).status_code == 202 and (await ready()).status_code == 200

            await eventually(taken)

            # The log's fsync failing at the commit: the commit record may be in the log.
            async with injected(server.pid, FSYNC_ENOSPC, strace):
                unknown = await create()
                assert unknown.status_code == 504, unknown.text
                assert unknown.json()["error"]["code"] == "outcome_unknown"
            await eventually(taken)
        assert server.proc is not None and server.proc.poll() is None
    log = server.stderr()
    assert "Traceback" not in log and "gave up" not in log
    assert log.count("writes are refused (503 store_failing)") <= 2  # once a minute, and each fault once at most


async def test_a_data_directory_deleted_under_the_server_refuses_writes(tmp_path: Path) -> None:
    """Writes were acknowledged into the deleted file (lost for good), and
    readiness said 200."""
    data = tmp_path / "data"
    with ServerProcess(env={"TRIOSCOPE_STORAGE_DATA_DIR": str(data)}) as server:
        async with httpx.AsyncClient(timeout=20) as client:
            operator = Operator(server, "kim", "deleted")
            agent = await enroll(client, server, operator)
            commands = operator.url(agent.deployment_hash, "/commands")
            shutil.rmtree(data)

            async def not_ready() -> bool:  # no write needed: the store looks at its file every few seconds
                response = await client.get(f"{server.base_url}/health/ready")
                return response.status_code == 503 and "was deleted" in response.json()["reason"]

            await eventually(not_ready)
            refused = await client.post(commands, json={"type": "restart"}, headers=operator.auth)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_failing"
            assert (await client.get(f"{server.base_url}/health")).status_code == 200
    log = server.stderr()
    assert log.count("was deleted") == 1 and "restarted" in log and "Traceback" not in log


async def _delivered(client: httpx.AsyncClient, agent: StatusAgent) -> list[str]:
    """What the agent is handed, each reported done, until a poll finds nothing."""
    ids: list[str] = []
    while (polled := await agent.poll(client, timeout=1)) is not None:
        ids.append(polled.command_id)
        done = await agent.report(client, polled.command_id, "success", result={"type": "restart", "status": "ok"})
        assert done.status_code == 200, done.text
    return ids


async def _queued(client: httpx.AsyncClient, operator: Operator, deployment_hash: str) -> set[str]:
    listed = await client.get(operator.url(deployment_hash, "/commands?status=queued"), headers=operator.auth)
    assert listed.status_code == 200, listed.text
    return {c["command_id"] for c in listed.json()["commands"]}


@pytest.mark.parametrize("after", ["running", "killed"])
async def test_a_command_whose_commit_failed_at_its_fsync_is_delivered_if_and_only_if_it_is_stored(
        tmp_path: Path, strace: str, after: str) -> None:
    """504 ``outcome_unknown`` says the command may be stored: whatever the
    store holds as queued afterwards, the agent is handed, nothing else. The
    failed transaction's record is left beyond the log's end: the running
    server never reads it (its next commit writes over it), a server killed
    before that replays it at its next start (seen: 2 queued then), and its
    queue then holds it as every stored command. Checked in both."""
    with ServerProcess(env={"TRIOSCOPE_STORAGE_DATA_DIR": str(tmp_path)}) as server:
        async with httpx.AsyncClient(timeout=20) as client:
            operator = Operator(server, "kim", "faults")
            agent = await enroll(client, server, operator)
            commands = operator.url(agent.deployment_hash, "/commands")
            assert (await client.post(commands, json={"type": "restart"}, headers=operator.auth)).status_code == 202
            async with injected(server.pid, FSYNC_ENOSPC, strace):
                unknown = await client.post(commands, json={"type": "restart"}, headers=operator.auth)
                assert unknown.status_code == 504, unknown.text
            if after == "killed":
                server.stop(signal.SIGKILL)
                server.start()
                agent = attrs.evolve(agent, base_url=server.base_url)

            async def ready() -> bool:  # the store opened again (running), or started
                return (await client.get(f"{server.base_url}/health/ready")).status_code == 200

            await eventually(ready)
            queued = await _queued(client, operator, agent.deployment_hash)
            assert queued and set(await _delivered(client, agent)) == queued
            assert not await _queued(client, operator, agent.deployment_hash)
    assert "Traceback" not in server.stderr()
