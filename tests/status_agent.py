"""An emulation of the TryDirect ``status`` agent's HTTP requests, byte for byte
where it matters: the headers it sends (``Authorization: Bearer``, ``X-Agent-Id``,
``X-Timestamp`` in unix seconds, ``X-Request-Id`` a UUID v4,
``X-Agent-Signature`` = standard padded base64 of HMAC-SHA256 over the raw body,
empty for GET), the report body serialised as serde_json does (compact, keys in
alphabetical order; an app status, a struct, in its fields' order), and how it
reads a poll answer (``item.command_id``, ``item.type``, ``item.parameters``,
``meta.next_poll_secs``).

``StatusAgent.socket()`` is the same agent on ``/ws/agent`` instead (the real
status agent long-polls): it acknowledges each command with ``received`` as it
arrives, answers the server's pings, and sends signed reports."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from trioscope_probe._signing import signed_request


def signature(token: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(token.encode(), body, hashlib.sha256).digest()).decode()


@attrs.frozen
class PolledCommand:
    """What the status agent keeps of a command (its ``transport::Command``)."""

    command_id: str
    name: str
    params: Any
    deployment_hash: str | None


@attrs.define
class StatusAgent:
    base_url: str
    agent_id: str
    token: str
    deployment_hash: str

    def headers(self, body: bytes, *, timestamp: int | None = None, request_id: str | None = None) -> dict[str, str]:
        return {
            "X-Agent-Id": self.agent_id,
            "X-Timestamp": str(int(time.time()) if timestamp is None else timestamp),
            "X-Request-Id": request_id or str(uuid.uuid4()),
            "X-Agent-Signature": signature(self.token, body),
            "Authorization": f"Bearer {self.token}",
        }

    async def wait(self, client: httpx.AsyncClient, timeout: int = 30, **headers: Any) -> httpx.Response:
        url = f"{self.base_url}/api/v1/agent/commands/wait/{self.deployment_hash}?timeout={timeout}"
        return await client.get(url, headers={**self.headers(b""), **headers}, timeout=timeout + 5)

    async def poll(self, client: httpx.AsyncClient, timeout: int = 30) -> PolledCommand | None:
        """One poll, parsed the way the agent parses it (``None``: no command)."""
        response = await self.wait(client, timeout)
        if response.status_code == 204:
            return None
        assert response.status_code == 200, response.text
        body = response.json()
        item = body.get("item")
        if not isinstance(item, dict) or not item:
            return None
        assert isinstance(item["command_id"], str)
        next_poll = body["meta"]["next_poll_secs"]
        assert isinstance(next_poll, int)
        name = item.get("type") if isinstance(item.get("type"), str) else "unknown"
        return PolledCommand(item["command_id"], name, item.get("parameters", {}), item.get("deployment_hash"))

    def report_body(self, command_id: str, status: str, *, result: Any = None, error: str | None = None,
                    completed_at: str | None = None) -> bytes:
        body: dict[str, Any] = {
            "command_id": command_id,
            "completed_at": completed_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "deployment_hash": self.deployment_hash,
            "error": error,
            "status": status,
        }
        if result is not None:
            body["result"] = result
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    async def report(self, client: httpx.AsyncClient, command_id: str, status: str = "success", *,
                     result: Any = None, error: str | None = None, body: bytes | None = None,
                     **headers: Any) -> httpx.Response:
        raw = body if body is not None else self.report_body(command_id, status, result=result, error=error)
        return await client.post(f"{self.base_url}/api/v1/agent/commands/report", content=raw,
                                 headers={**self.headers(raw), "Content-Type": "application/json", **headers})

    def app_status_body(self, app_code: str, status: str, logs: list[str] | None = None, *,
                        timestamp: str | None = None, deployment_hash: str | None = None) -> bytes:
        """What the agent posts after a ``health``, ``logs`` or ``restart``
        command (its ``AppStatusUpdate``, a struct: serde_json writes its
        fields in their declared order, compact, UTF-8 unescaped; the time to
        the second, ``Z``)."""
        body = {"deployment_hash": deployment_hash or self.deployment_hash, "app_code": app_code, "status": status,
                "logs": logs if logs is not None else [],
                "timestamp": timestamp or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    async def update_app_status(self, client: httpx.AsyncClient, app_code: str = "web", status: str = "running",
                                logs: list[str] | None = None, *, body: bytes | None = None,
                                **fields: Any) -> httpx.Response:
        """``POST /api/v1/apps/status``, signed as its other requests (``update_app_status_with_retry``)."""
        raw = body if body is not None else self.app_status_body(app_code, status, logs, **fields)
        return await client.post(f"{self.base_url}/api/v1/apps/status", content=raw,
                                 headers={**self.headers(raw), "Content-Type": "application/json"})

    async def signed_post(self, client: httpx.AsyncClient, path: str, document: Any) -> httpx.Response:
        """POST ``document`` signed as the project's probe signs (RFC 9421, not the
        status agent's scheme): how an enrolled probe registers and reports."""
        body = json.dumps(document).encode()
        return await client.send(signed_request(client, "POST", f"{self.base_url}{path}", agent_id=self.agent_id,
                                                token=self.token, body=body,
                                                headers={"Content-Type": "application/json"}))

    @asynccontextmanager
    async def socket(self, *, token_in_url: bool = True, acknowledge: bool = True,
                     answer_pings: bool = True, bearer_in_url: bool = False) -> AsyncIterator[AgentSocket]:
        """``/ws/agent``, opened with a signed handshake (the token in the URL, or
        in the Authorization header; ``bearer_in_url``: as ``?token=Bearer <t>``).
        ``acknowledge`` / ``answer_pings`` False: an agent that takes commands but
        never says ``received``, or a connection that stopped answering pings."""
        headers = self.headers(b"")
        if token_in_url:
            headers.pop("Authorization")
        query = f"?token={'Bearer%20' if bearer_in_url else ''}{self.token}" if token_in_url else ""
        url = self.base_url.replace("http://", "ws://") + f"/ws/agent/{self.deployment_hash}{query}"
        async with open_websocket_url(url, extra_headers=[(k.encode(), v.encode()) for k, v in headers.items()]) as ws:
            yield AgentSocket(self, ws, acknowledge=acknowledge, answer_pings=answer_pings)


@attrs.define
class AgentSocket:
    """The agent's side of ``/ws/agent``."""

    agent: StatusAgent
    ws: WebSocketConnection
    acknowledge: bool = True
    answer_pings: bool = True

    async def message(self, kind: str, deadline: float = 10.0) -> dict[str, Any]:
        """The next message of type ``kind``; others are skipped, pings answered
        (if ``answer_pings``) and commands acknowledged (if ``acknowledge``) on the way.

        Raises:
            trio.TooSlowError: none came within ``deadline`` seconds.
            trio_websocket.ConnectionClosed: the server closed the socket.
        """
        with trio.fail_after(deadline):
            while True:
                message = json.loads(await self.ws.get_message())
                if message["type"] == "ping" and self.answer_pings:
                    await self.ws.send_message('{"type":"pong"}')
                elif message["type"] == "command" and self.acknowledge:
                    await self.received(message["item"]["command_id"])
                if message["type"] == kind:
                    return message  # type: ignore[no-any-return]

    async def received(self, command_id: str) -> None:
        """Acknowledge a command: it reached the agent."""
        await self.ws.send_message(json.dumps({"type": "received", "command_id": command_id}))

    def signed(self, body: bytes) -> dict[str, Any]:
        """A report envelope, signed as the agent signs its HTTP requests."""
        return {"type": "report", "request_id": str(uuid.uuid4()), "timestamp": int(time.time()),
                "signature": signature(self.agent.token, body), "body": body.decode()}

    async def report(self, body: bytes) -> dict[str, Any]:
        """Send a signed report; answers the server's ``ack``."""
        await self.ws.send_message(json.dumps(self.signed(body)))
        return await self.message("ack")
