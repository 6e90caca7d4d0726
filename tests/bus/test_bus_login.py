"""A NATS server that refuses the replica's credentials is said to, once, as
the operator's to fix (not "cannot reach the bus"), without the password."""

from __future__ import annotations

import pytest

from tests.bus_server import NatsMissing, own_nats_server
from tests.server_process import ServerProcess
from tests.waiting import eventually


async def test_a_refused_login_is_said_once_as_such_without_the_password() -> None:
    try:
        nats = own_nats_server("--user", "ops", "--pass", "R1ghtPass")
        server = nats.__enter__()
    except NatsMissing as exc:
        pytest.skip(str(exc))
    try:
        url = server.url.replace("nats://", "nats://ops:Wr0ngPass@")
        with ServerProcess(["--bus", url, "--bus-stream", "test_login", "--local-probe", "false",
                            "--log-level", "debug"]) as replica:
            async def said_and_tried_again() -> bool:  # nats-py's attempts after it, at debug level
                _, said, after = replica.stderr().partition("refused this replica's login")
                return bool(said) and after.count("trioscope.bus._client: bus:") >= 2

            await eventually(said_and_tried_again, 60)
            log = replica.stderr()
    finally:
        nats.__exit__(None, None, None)
    assert log.count("refused this replica's login") == 1 and "cannot reach the bus" not in log
    assert "Wr0ngPass" not in log and "nats://ops:***@" in log
