"""An emulation of the TryDirect ``status`` agent's HTTP requests, byte for byte
where it matters: the headers it sends (``Authorization: Bearer``, ``X-Agent-Id``,
``X-Timestamp`` in unix seconds, ``X-Request-Id`` a UUID v4,
``X-Agent-Signature`` = standard padded base64 of HMAC-SHA256 over the raw body,
empty for GET), the report body serialised as serde_json does (compact, keys in
alphabetical order), and how it reads a poll answer (``item.command_id``,
``item.type``, ``item.parameters``, ``meta.next_poll_secs``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import attrs
import httpx

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

    async def signed_post(self, client: httpx.AsyncClient, path: str, document: Any) -> httpx.Response:
        """POST ``document`` signed as the project's probe signs (RFC 9421, not the
        status agent's scheme): how an enrolled probe registers and reports."""
        body = json.dumps(document).encode()
        return await client.send(signed_request(client, "POST", f"{self.base_url}{path}", agent_id=self.agent_id,
                                                token=self.token, body=body,
                                                headers={"Content-Type": "application/json"}))
