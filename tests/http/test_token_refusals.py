"""Refused credentials say why, against a real server: a user token's refusal
names the claim or check it failed (never the secret, in a bounded message),
and an agent request signed before the server started says the agent's clock
may be behind."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.integration.test_commands import setup
from tests.server_process import TEST_SECRET, ServerProcess
from trioscope.domain.principals import MAX_REASON

PREFIX = "the user token is invalid or expired: "


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


def token(claims: dict[str, Any], secret: str = TEST_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def claims(**changes: Any) -> dict[str, Any]:
    """A valid token's claims, with ``changes`` (None: the claim left out)."""
    now = int(time.time())  # at collection: valid through a long run
    found: dict[str, Any] = {"sub": "alice", "tenant": "acme", "role": "OPERATOR", "iat": now, "exp": now + 86400}
    found.update(changes)
    return {name: value for name, value in found.items() if value is not None}


@pytest.mark.parametrize(("sent", "says"), [
    (token(claims(role="operator")), "unknown role 'operator'"),
    (token(claims(exp=None)), 'missing the "exp" claim'),
    (token(claims(nbf=int(time.time()) + 3600)), "not yet valid (nbf)"),
    (token(claims(sub=42)), "ubject must be a string"),
    (token(claims(tenant=["acme"])), "sub and tenant must be non-empty strings"),
    (token(claims(exp=int(time.time()) - 10)), "token expired"),
    (token(claims(), secret="another-secret-of-at-least-32-bytes!"),  # noqa: S106  # a wrong key on purpose
     "Signature verification failed"),
    ("not.a.token", ""),  # whatever PyJWT says of it: something after the prefix
])
def test_a_refused_user_token_is_told_why(server: ServerProcess, sent: str, says: str) -> None:
    response = httpx.get(f"{server.base_url}/api/v1/users/me", headers={"Authorization": f"Bearer {sent}"})
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_token"
    assert error["message"].startswith(PREFIX) and len(error["message"]) > len(PREFIX)
    assert says in error["message"]
    assert TEST_SECRET not in response.text


def test_the_reason_is_bounded_whatever_the_token_holds(server: ServerProcess) -> None:
    sent = token(claims(role="x" * 5000))
    response = httpx.get(f"{server.base_url}/api/v1/users/me", headers={"Authorization": f"Bearer {sent}"})
    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert message.startswith(PREFIX) and len(message) <= len(PREFIX) + MAX_REASON
    assert "x" * 21 not in message


async def test_a_request_signed_before_the_server_started_says_the_agents_clock_may_be_behind() -> None:
    with ServerProcess() as server:  # its own: the module's may have started more than ``lag`` ago
        await _signed_before_start(server)


async def _signed_before_start(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        _, agent = await setup(server, client)
        lag = 120  # within the 300 s allowance, and before the server started
        response = await agent.wait(client, timeout=1, **{"X-Timestamp": str(int(time.time()) - lag)})
        assert response.status_code == 401, response.text
        error = response.json()["error"]
        assert error["code"] == "signed_before_start"
        assert "X-Timestamp" in error["message"] and "before this server started" in error["message"]
        behind = re.search(r"clock may be behind the server's by (\d+) s", error["message"])
        assert behind is not None, error["message"]
        assert lag <= int(behind.group(1)) <= lag + 30
        # Replay protection stands: the same request signed now is taken.
        assert (await agent.wait(client, timeout=1)).status_code == 204
