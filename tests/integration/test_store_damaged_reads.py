"""A damaged page of the SQLite file that only reads reach (none of the
writes, nor what the server reads as it starts): each read of it was
answered 503 ``store_failing`` while ``/health/ready`` said ready (its
``SELECT 1`` touches no table, and no write met the damage), so a load
balancer kept sending the server traffic it could not serve, and writes went
on into the damaged file. The store now hears of it from the reads: writes
are refused as when a write meets it, and readiness says why."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx

from tests.server_process import ServerProcess
from tests.waiting import eventually
from trioscope.domain.commands import CommandEvent, Priority, new_command
from trioscope.domain.deployments import Deployment
from trioscope.store import DATABASE_FILE, SaveCommand, SaveDeployment, open_writer

MARKER = "damaged-page-marker"
DEPLOYMENT = "d" * 16


def _store_with_a_damaged_command_page(data: Path) -> Path:
    """A store with a deployment of alice's and 400 finished commands of two
    weeks ago, whose 200th command's page is overwritten: a page in the middle
    of the table, which neither the start's reads (its open commands, from an
    index) nor the store's writes (new rows; pruning those past the 30 days
    kept, found from an index) reach."""
    data.mkdir(mode=0o700)
    path = data / DATABASE_FILE
    created = time.time() - 14 * 86400
    writer = open_writer(path)
    try:
        deployment = Deployment(hash=DEPLOYMENT, tenant="acme", user_id="alice", created_at=created,
                                enrollment_hash=None)
        commands = [new_command(command_id=f"cmd_{i:04}", deployment_hash=DEPLOYMENT, tenant="acme", type="restart",
                                parameters={"note": (MARKER if i == 200 else "") + "x" * 300},
                                priority=Priority.NORMAL, created_by="alice", now=created + i, schedule_at=None,
                                timeout_seconds=60, requires_confirmation=False, sequence=i)
                    for i in range(400)]
        writer.commit([[SaveDeployment(deployment)],
                       [SaveCommand(c.apply(CommandEvent.CANCEL, c.created_at + 1), None) for c in commands]])
    finally:
        writer.close()  # the last connection: its log is written back into the file
    assert not Path(f"{path}-wal").exists() or not Path(f"{path}-wal").stat().st_size
    with sqlite3.connect(path) as database:
        page_size = database.execute("PRAGMA page_size").fetchone()[0]
    content = path.read_bytes()
    assert content.count(MARKER.encode()) == 1
    with open(path, "r+b") as database_file:
        database_file.seek(content.index(MARKER.encode()) // page_size * page_size)
        database_file.write(b"\xff" * page_size)
    return path


async def test_a_damaged_page_met_by_reads_makes_the_server_not_ready_and_refuses_writes(tmp_path: Path) -> None:
    path = _store_with_a_damaged_command_page(tmp_path / "data")
    with ServerProcess(["--database", f"sqlite:{path}"], env={"TRIOSCOPE_STORAGE_DATA_DIR": str(tmp_path / "data")}) \
            as server:
        admin = {"Authorization": f"Bearer {server.user_token(role='ADMIN')}"}
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            assert (await client.get("/health/ready")).status_code == 200  # nothing met the damage yet
            deployments = "/api/v1/users/alice/deployments"
            assert (await client.post(deployments, json={}, headers=admin)).status_code == 201
            for _ in range(5):
                read = await client.get(f"{deployments}/{DEPLOYMENT}/commands", params={"limit": 500},
                                        headers=admin)
                assert read.status_code == 503, read.text
                assert read.json()["error"]["code"] == "store_failing"

            async def not_ready() -> httpx.Response | None:
                ready = await client.get("/health/ready")  # the store looks every 5 s
                return ready if ready.status_code == 503 else None

            ready = await eventually(not_ready, deadline=30)
            body = ready.json()
            assert body["services"]["store"] == "unavailable", body
            assert body["reason"] == ("store: writes refused (answered 503 store_failing): DatabaseError: database "
                                      "disk image is malformed (SQLITE_CORRUPT)"), body
            written = await client.post(deployments, json={}, headers=admin)
            assert written.status_code == 503 and written.json()["error"]["code"] == "store_failing", written.text
        server.stop()
    log = server.stderr()
    assert "Traceback" not in log, log
    damaged = [line for line in log.splitlines() if "is damaged" in line]
    assert len(damaged) == 1 and str(path) in damaged[0] and ".recover" in damaged[0], log
    # Five reads met it: one line says so (then one a minute), not one a request.
    assert len([line for line in log.splitlines() if "answered 503 store_failing" in line]) == 1, log
