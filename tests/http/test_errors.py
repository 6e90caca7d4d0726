"""Errors leave the server as JSON with the right status, never as a traceback.

A request that meets the database away or refusing statements for now is
answered 503 ``database_unavailable`` with Retry-After, whichever way it met
it (the store's refusal, the driver's error, an actor that crashed on it);
any other database error is a 500 with an incident, never hidden as 503."""

from __future__ import annotations

import logging
import sqlite3

import psycopg
import pytest
from quart.testing import WebsocketResponseError

from trioscope.actors.refusals import DatabaseUnavailable, StoreFailing
from trioscope.http import create_app
from trioscope.runtime import ActorFailed, ActorStopped, AskTimeout, MailboxFull, open_actor_system
from trioscope.store import Unavailable
from trioscope.system import supervision_tree

LOST = "consuming input failed: server closed the connection unexpectedly"
RAISED = {
    "bug": lambda: KeyError("secret internal detail"),
    "full": lambda: MailboxFull("/root/topology", 10),
    "slow": lambda: AskTimeout("/root/topology", 5),
    "overran": lambda: AskTimeout("/root/topology", 5, taken=True),
    "stopped": lambda: ActorStopped("/root/topology"),
    # The database.
    "refused": lambda: DatabaseUnavailable("lost the connection"),
    "unreachable": lambda: Unavailable("cannot connect to postgresql://db:5432/trioscope"),
    "lost": lambda: psycopg.OperationalError(LOST),
    "actor-lost": lambda: ActorFailed("/root/queues/q", psycopg.OperationalError(LOST)),
    "start-lost": lambda: ActorStopped("/root/queues/q", psycopg.OperationalError(LOST)),  # its start met it
    "statement-timeout": lambda: psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
    "too-complex": lambda: psycopg.errors.StatementTooComplex("stack depth limit exceeded"),
    "actor-bug": lambda: ActorFailed("/root/queues/q", KeyError("secret internal detail")),
    # The SQLite file or its disk.
    "store-failing": lambda: StoreFailing("OperationalError: disk I/O error (SQLITE_IOERR_FSYNC)"),
    "malformed": lambda: sqlite_error("database disk image is malformed", 11),  # a read met a damaged page
    "actor-io": lambda: ActorFailed("/root/queues/q", sqlite_error("disk I/O error", 266)),
}


def sqlite_error(message: str, code: int) -> sqlite3.DatabaseError:
    error = sqlite3.DatabaseError(message)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]  # as SQLite sets it
    return error


@pytest.fixture
async def client(settings):
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)

        @app.get("/test/raise/<kind>")
        async def raising(kind: str):
            raise RAISED[kind]()

        @app.websocket("/test/ws/raise")
        async def raising_socket():
            raise KeyError("secret internal detail")

        async with app.test_app() as test_app:
            yield test_app.test_client()


async def test_an_unexpected_exception_is_a_500_with_an_incident_id_and_no_details(client, caplog):
    response = await client.get("/test/raise/bug")
    assert response.status_code == 500
    body = await response.get_json()
    assert body["error"]["code"] == "internal_error"
    incident = body["error"]["details"]["incident"]
    text = await response.get_data(as_text=True)
    assert "secret internal detail" not in text and "Traceback" not in text
    logged = [r for r in caplog.records if getattr(r, "incident", None) == incident]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log instead


async def test_one_traceback_a_minute_of_each_cause_every_incident_one_line(client, caplog):
    """A fault every request meets (a damaged database) wrote a traceback a
    request: ~45 lines each, 5,512 for ~120 requests."""
    incidents = []
    for _ in range(5):
        response = await client.get("/test/raise/bug")
        incidents.append((await response.get_json())["error"]["details"]["incident"])
    other = (await (await client.get("/test/raise/actor-bug")).get_json())["error"]["details"]["incident"]
    logged = {r.incident: r for r in caplog.records if getattr(r, "incident", None) in (*incidents, other)}
    assert set(logged) == {*incidents, other}  # every incident has its line, to be found by its id
    assert logged[incidents[0]].exc_info is not None and logged[other].exc_info is not None  # a cause each
    for incident in incidents[1:]:
        record = logged[incident]
        assert record.exc_info is None and "the same cause" in record.getMessage()
        assert "KeyError" in record.getMessage()


@pytest.mark.parametrize(("kind", "code"), [("full", "overloaded"), ("slow", "timeout"), ("stopped", "unavailable")])
async def test_overload_and_unavailability_answer_503_with_retry_after(client, kind, code):
    response = await client.get(f"/test/raise/{kind}")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert (await response.get_json())["error"]["code"] == code


async def test_a_timeout_while_the_work_was_under_way_is_a_504_saying_so(client):
    response = await client.get("/test/raise/overran")
    assert response.status_code == 504 and "Retry-After" not in response.headers
    assert (await response.get_json())["error"]["code"] == "outcome_unknown"


async def test_health_is_503_once_the_tree_is_gone(settings):
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            assert (await client.get("/health")).status_code == 200
            await system.stop()
            response = await client.get("/health")
            assert response.status_code == 503
            assert (await response.get_json())["status"] == "unhealthy"


async def test_a_websocket_handler_that_raises_is_logged_under_an_incident(client, caplog):
    # The handlers once read the HTTP request, which a WebSocket has not: they failed in turn.
    refused: list[WebsocketResponseError] = []
    try:
        async with client.websocket("/test/ws/raise") as socket:
            await socket.receive()
    except* WebsocketResponseError as group:
        refused.extend(group.exceptions)  # type: ignore[arg-type]
    assert [r.response.status_code for r in refused] == [500]
    logged = [r for r in caplog.records if getattr(r, "incident", None)]
    assert logged and "WEBSOCKET /test/ws/raise" in logged[0].getMessage()
    assert not [r for r in caplog.records if "request context" in r.getMessage()]


@pytest.mark.parametrize("kind", ["refused", "unreachable", "lost", "actor-lost", "start-lost", "statement-timeout"])
async def test_the_database_away_or_busy_is_a_503_with_retry_after(client, kind: str) -> None:
    response = await client.get(f"/test/raise/{kind}")
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    assert (await response.get_json())["error"]["code"] == "database_unavailable"


@pytest.mark.parametrize("kind", ["store-failing", "malformed", "actor-io"])
async def test_the_sqlite_file_failing_is_a_503_store_failing_said_once_a_minute(client, caplog, kind: str) -> None:
    """A damaged page met by a read was a 500 with a traceback each time (one a
    minute since); an I/O error the same."""
    for _ in range(3):
        response = await client.get(f"/test/raise/{kind}")
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        body = await response.get_json()
        assert body["error"]["code"] == "store_failing" and "storage" in body["error"]["message"]
        assert "malformed" not in body["error"]["message"] and "SQLITE" not in body["error"]["message"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == (0 if kind == "store-failing" else 1)  # the store says its own refusals
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_statement_the_database_refused_for_now_is_logged_as_a_warning(client, caplog) -> None:
    await client.get("/test/raise/lost")  # the store says it once, when it loses the database
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    await client.get("/test/raise/statement-timeout")  # nobody else says it
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "QueryCanceled" in warning.getMessage() and "/test/raise/statement-timeout" in warning.getMessage()


@pytest.mark.parametrize("kind", ["too-complex", "actor-bug"])
async def test_any_other_database_error_is_a_500_with_an_incident(client, caplog, kind: str) -> None:
    response = await client.get(f"/test/raise/{kind}")
    assert response.status_code == 500 and "Retry-After" not in response.headers
    incident = (await response.get_json())["error"]["details"]["incident"]
    assert [r for r in caplog.records if getattr(r, "incident", None) == incident and r.levelno == logging.ERROR]


async def test_an_agent_sockets_unexpected_errors_log_one_traceback_a_minute_of_each_cause(settings, caplog):
    """As requests' (a fault every message met wrote a traceback a message)."""
    from trioscope.http._command_ws import _answered

    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.app_context():
            acks = [_answered(n, KeyError("secret internal detail")) for n in range(3)]
    incidents = [ack["error"]["message"].rsplit(" ", 1)[1] for ack in acks]
    assert all((ack["status"], ack["error"]["status"]) == ("rejected", 500) for ack in acks)
    logged = {r.incident: r for r in caplog.records if getattr(r, "incident", None) in incidents}
    assert set(logged) == set(incidents)
    assert logged[incidents[0]].exc_info is not None
    assert all(logged[i].exc_info is None and "the same cause" in logged[i].getMessage() for i in incidents[1:])
