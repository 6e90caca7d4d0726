"""``trioscope-probe`` against a real server: this host, its processes and
connections appear in the topology; a server that is away at first is found
once it comes up, for reports and for a command agent's enrollment alike."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import orjson

from tests.free_port import free_port
from tests.process_end import end
from tests.integration.test_commands import Operator
from tests.server_process import ServerProcess
from tests.waiting import eventually


@contextmanager
def probe(server_url: str, agent_id: str, *extra: str) -> Iterator[subprocess.Popen[str]]:
    stderr = tempfile.TemporaryFile(mode="w+t")
    proc = subprocess.Popen([sys.executable, "-m", "trioscope_probe", "--server", server_url, "--interval", "1s",
                             "--agent-id", agent_id, *extra], stdout=subprocess.DEVNULL, stderr=stderr, text=True)

    def read_log() -> str:
        stderr.seek(0)
        return stderr.read()

    proc.read_log = read_log  # type: ignore[attr-defined]
    try:
        yield proc
    except BaseException:
        print(f"--- probe {agent_id} log (the test failed) ---\n{read_log()[-6000:]}")  # shown by pytest
        raise
    finally:
        end(proc)
        stderr.seek(0)
        proc.stderr_text = stderr.read()  # type: ignore[attr-defined]
        stderr.close()


async def test_the_probe_reports_this_host_with_its_processes_and_connections() -> None:
    with ServerProcess() as server, probe(server.base_url, "probe-here") as process:
        async with httpx.AsyncClient() as client:
            async def listed() -> dict[str, Any] | None:
                agents = (await client.get(f"{server.base_url}/api/v1/agents/list")).json()["agents"]
                return next((a for a in agents if a["agent_id"] == "probe-here" and a["status"] == "healthy"), None)

            await eventually(listed)
            host = f"host:{socket.gethostname()}"

            async def processes() -> dict[str, Any] | None:
                topology = (await client.get(f"{server.base_url}/api/v1/query/topology",
                                             params={"view": "processes"})).json()["topology"]
                return topology["nodes"].get(f"process:{socket.gethostname()}:{process.pid}")

            mine = await eventually(processes)
            assert mine["type"] == "process"
            latest = await client.get(f"{server.base_url}/api/v1/query/agents/probe-here/latest")
            report = latest.json()["report"]
            assert report["host_info"]["hostname"] == socket.gethostname()
            assert report["host_info"]["cpu_info"]["cores"] >= 1
            node = await client.get(f"{server.base_url}/api/v1/query/nodes/{host}")
            assert node.status_code == 200


async def test_a_probe_started_before_its_server_keeps_trying_and_then_reports() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with probe(url, "probe-early") as process:
        async def logged(text: str) -> bool:
            return text in process.read_log()  # type: ignore[attr-defined]

        await eventually(lambda: logged("unreachable"))
        with ServerProcess(["--port", str(port)]) as server:
            await eventually(lambda: logged("connected to"))
            async with httpx.AsyncClient() as client:
                agents = (await client.get(f"{server.base_url}/api/v1/agents/list")).json()["agents"]
                assert any(a["agent_id"] == "probe-early" for a in agents)
    log = process.stderr_text  # type: ignore[attr-defined]
    assert "unreachable" in log and "connected to" in log
    # One line per state change, not one per retry. (Once the server is gone again
    # the probe may rightly say so once more before its own SIGTERM.)
    assert log.split("connected to")[0].count("unreachable") == 1


async def test_a_command_agent_started_before_its_server_enrolls_once_it_comes_up(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    state = tmp_path / "probe-state"
    # The deployment outlives the first server process: the second one opens the same database.
    with ServerProcess(["--port", str(port)], env={"TRIOSCOPE_STORAGE_DATA_DIR": str(tmp_path / "data")}) as server:
        operator = Operator(server, "ops", "acme")
        async with httpx.AsyncClient(timeout=30) as client:
            deployment = await operator.create_deployment(client)
        server.stop()
        hash_ = deployment["deployment_hash"]
        with probe(url, "probe-enrolls-late", "--deployment-hash", hash_,
                   "--enrollment-token", deployment["enrollment_token"], "--state-dir", str(state)) as process:
            async def logged(text: str) -> bool:
                return text in process.read_log()  # type: ignore[attr-defined]

            await eventually(lambda: logged("unreachable"))
            assert process.poll() is None, process.read_log()  # type: ignore[attr-defined]
            server.start()
            await eventually(lambda: logged("polling for commands"))
            async with httpx.AsyncClient(timeout=30) as client:
                created = await operator.command(client, hash_, type="docker.inspect",
                                                 parameters={"container": "absent"}, timeout_seconds=30)

                async def finished() -> dict[str, Any] | None:
                    command = await operator.get(client, hash_, created["command_id"])
                    return command if command["status"] in ("completed", "failed") else None

                # No engine here: the agent received the command and says why it could not run it.
                answered = await eventually(finished)
                assert [h["status"] for h in answered["history"]][:3] == ["queued", "sent", "executing"]
        assert (state / "credentials.json").exists()
        assert "enrolled in deployment" in process.stderr_text  # type: ignore[attr-defined]


async def test_a_refused_enrollment_ends_the_probe_with_the_reason(tmp_path: Path) -> None:
    with ServerProcess() as server:
        async with httpx.AsyncClient(timeout=30) as client:
            deployment = await Operator(server, "ops", "acme").create_deployment(client)
        with probe(server.base_url, "probe-refused", "--deployment-hash", deployment["deployment_hash"],
                   "--enrollment-token", "not-the-token", "--state-dir", str(tmp_path)) as process:
            assert process.wait(timeout=30) == 2
        log = process.stderr_text  # type: ignore[attr-defined]
        # Logged (one line, in the log's format), naming the server's error code.
        assert "trioscope_probe: enrollment refused (401): invalid_enrollment_token" in log, log
        assert "Traceback" not in log, log
        assert not (tmp_path / "credentials.json").exists()


async def test_a_state_dir_that_cannot_be_written_ends_the_probe_before_the_token_is_spent(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with ServerProcess() as server:
        async with httpx.AsyncClient(timeout=30) as client:
            deployment = await Operator(server, "ops", "acme").create_deployment(client)
            with probe(server.base_url, "probe-no-state", "--deployment-hash", deployment["deployment_hash"],
                       "--enrollment-token", deployment["enrollment_token"],
                       "--state-dir", str(tmp_path / "a-file" / "state")) as process:
                assert process.wait(timeout=30) == 2
            log = process.stderr_text  # type: ignore[attr-defined]
            assert "cannot keep credentials in" in log and "Traceback" not in log, log
            # The one-time token is still good.
            response = await client.post(f"{server.base_url}/api/v1/agent/register", json={
                "deployment_hash": deployment["deployment_hash"], "enrollment_token": deployment["enrollment_token"]})
            assert response.status_code == 201, response.text


async def test_a_probe_fits_its_reports_to_what_the_server_takes() -> None:
    # This host's report is larger than 16 KiB: connections, then processes, are left out.
    with ServerProcess(["--max-body-size", "16KiB"]) as server, probe(server.base_url, "probe-small") as process:
        async with httpx.AsyncClient() as client:
            async def reported() -> dict[str, Any] | None:
                agents = (await client.get(f"{server.base_url}/api/v1/agents/list")).json()["agents"]
                return next((a for a in agents if a["agent_id"] == "probe-small" and a["reports_received"] >= 2),
                            None)

            await eventually(reported)
            latest = (await client.get(f"{server.base_url}/api/v1/query/agents/probe-small/latest")).json()["report"]
            assert latest["host_info"]["hostname"] == socket.gethostname()
        log = process.read_log()  # type: ignore[attr-defined]
        assert "the server takes reports of up to 16384 bytes" in log and "left out" in log, log


async def test_a_decommissioned_probe_says_so_once_and_a_new_enrollment_token_brings_it_back(tmp_path: Path) -> None:
    """It logged an ERROR and retried its poll every interval for ever, and a
    restart with a fresh token reused the dead credentials in --state-dir."""
    state = tmp_path / "state"
    with ServerProcess() as server:
        operator = Operator(server, "ops", "acme")
        admin = attrs.evolve(operator, role="ADMIN")
        async with httpx.AsyncClient(timeout=30) as client:
            deployment = await operator.create_deployment(client)
            hash_ = deployment["deployment_hash"]
            with probe(server.base_url, "probe-retired", "--deployment-hash", hash_,
                       "--enrollment-token", deployment["enrollment_token"], "--state-dir", str(state)) as first:
                async def logged(text: str, process: Any = first) -> bool:
                    return text in process.read_log()

                await eventually(lambda: logged("polling for commands"))
                agent_id = orjson.loads((state / "credentials.json").read_bytes())["agent_id"]
                gone = await client.post(admin.url(hash_, f"/agents/{agent_id}/decommission"), headers=admin.auth)
                assert gone.status_code == 200, gone.text
                await eventually(lambda: logged("refuses agent probe-retired (410"))
                await eventually(lambda: logged("command polling refused (410"))
                assert first.poll() is None
            log = first.stderr_text  # type: ignore[attr-defined]
            assert log.count("refuses agent") == 1 and log.count("command polling refused") == 1, log
            assert "connected to" not in log.split("refuses agent")[1], log
            fresh = await client.post(operator.url(hash_, "/enrollment"), headers=operator.auth)
            assert fresh.status_code == 201, fresh.text
            with probe(server.base_url, "probe-retired", "--deployment-hash", hash_,
                       "--enrollment-token", fresh.json()["enrollment_token"], "--state-dir", str(state)) as second:
                await eventually(lambda: logged("polling for commands", second))
                assert "enrolled in deployment" in second.read_log()  # type: ignore[attr-defined]
            assert orjson.loads((state / "credentials.json").read_bytes())["agent_id"] != agent_id
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
