"""Errors leave the server as JSON with the right status, never as a traceback."""

from __future__ import annotations

import pytest
from quart.testing import WebsocketResponseError

from trioscope.http import create_app
from trioscope.runtime import ActorStopped, AskTimeout, MailboxFull, open_actor_system
from trioscope.system import supervision_tree


@pytest.fixture
async def client(settings):
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)

        @app.get("/test/raise/<kind>")
        async def raising(kind: str):
            raise {
                "bug": KeyError("secret internal detail"),
                "full": MailboxFull("/root/topology", 10),
                "slow": AskTimeout("/root/topology", 5),
                "overran": AskTimeout("/root/topology", 5, taken=True),
                "stopped": ActorStopped("/root/topology"),
            }[kind]

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
