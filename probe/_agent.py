"""The probe as its deployment's command agent: enrollment, then a signed long
poll, each command run against the container engine under its timeout, and a
progress report and a result for each — the same requests as the TryDirect
``status`` agent (``Authorization: Bearer``, ``X-Agent-Id``, ``X-Timestamp``,
``X-Request-Id``, ``X-Agent-Signature`` over the raw body)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import docker
import httpx
import trio

from ._executor import DEFAULT_ALLOWED, ControlError, execute
from ._transport import RETRIABLE, Backoff, ServerUnavailable

log = logging.getLogger("trioscope_probe")
POLL_SECONDS = 60


@attrs.frozen
class Credentials:
    deployment_hash: str
    agent_id: str
    agent_token: str = attrs.field(repr=False)


def load_credentials(path: Path, deployment_hash: str) -> Credentials | None:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("deployment_hash") != deployment_hash:
        return None
    return Credentials(deployment_hash, saved["agent_id"], saved["agent_token"])


def save_credentials(path: Path, credentials: Credentials) -> None:
    """Written 0600 and renamed into place: a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(attrs.asdict(credentials), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


async def enroll(client: httpx.AsyncClient, deployment_hash: str, enrollment_token: str,
                 capabilities: list[str]) -> Credentials:
    """One enrollment attempt.

    Raises:
        ServerUnavailable: the server is away or asks us to come back (try again).
        ControlError: the server refused the enrollment (trying again will not help).
    """
    try:
        response = await client.post("/api/v1/agent/register", json={
            "deployment_hash": deployment_hash, "enrollment_token": enrollment_token, "capabilities": capabilities,
            "agent_version": "trioscope-probe", "system_info": {"os": os.uname().sysname}})
    except httpx.TransportError as exc:
        raise ServerUnavailable(f"{type(exc).__name__}: {exc}") from None
    if response.status_code in RETRIABLE:
        raise ServerUnavailable(f"enrollment answered {response.status_code}")
    if response.status_code != 201:
        raise ControlError(f"enrollment refused ({response.status_code}): {response.text[:300]}")
    body = response.json()
    return Credentials(deployment_hash, body["agent_id"], body["agent_token"])


def signed_headers(credentials: Credentials, body: bytes) -> dict[str, str]:
    signature = hmac.new(credentials.agent_token.encode(), body, hashlib.sha256).digest()
    return {
        "Authorization": f"Bearer {credentials.agent_token}",
        "X-Agent-Id": credentials.agent_id,
        "X-Timestamp": str(int(time.time())),
        "X-Request-Id": str(uuid.uuid4()),
        "X-Agent-Signature": base64.b64encode(signature).decode(),
    }


class CommandAgent:
    def __init__(self, client: httpx.AsyncClient, credentials: Credentials, docker_host: str | None,
                 allowed: tuple[str, ...] = DEFAULT_ALLOWED) -> None:
        self.client = client
        self.credentials = credentials
        self.docker_host = docker_host
        self.allowed = allowed

    async def run(self) -> None:
        log.info("polling for commands for deployment %s as agent %s", self.credentials.deployment_hash,
                 self.credentials.agent_id)
        backoff = Backoff()
        failing = False
        while True:
            try:
                item = await self._poll()
            except (httpx.TransportError, ControlError) as exc:
                if not failing:
                    log.warning("command polling failed (%s); retrying with backoff", exc)
                failing = True
                await trio.sleep(backoff.next())
                continue
            if failing:
                log.info("command polling works again")
            failing = False
            backoff.reset()
            if item is not None:
                await self._run_command(item)

    async def _poll(self) -> dict[str, Any] | None:
        path = f"/api/v1/agent/commands/wait/{self.credentials.deployment_hash}?timeout={POLL_SECONDS}"
        response = await self.client.get(path, headers=signed_headers(self.credentials, b""),
                                         timeout=POLL_SECONDS + 10)
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise ControlError(f"poll answered {response.status_code}: {response.text[:200]}")
        item = response.json().get("item")
        return item if isinstance(item, dict) and item.get("command_id") else None

    async def _report(self, body: dict[str, Any]) -> None:
        raw = json.dumps({"deployment_hash": self.credentials.deployment_hash, **body}).encode()
        for _ in range(3):
            try:
                response = await self.client.post("/api/v1/agent/commands/report", content=raw, headers={
                    **signed_headers(self.credentials, raw), "Content-Type": "application/json"})
            except httpx.TransportError as exc:
                log.warning("report of %s failed (%s); retrying", body["command_id"], exc)
                await trio.sleep(2)
                continue
            if response.status_code >= 400:
                log.warning("report of %s refused (%s): %s", body["command_id"], response.status_code,
                            response.text[:200])
            return

    async def _run_command(self, item: dict[str, Any]) -> None:
        command_id, kind = item["command_id"], item.get("type", "")
        if kind == "cancel":
            # Commands run one at a time: by the time a cancel arrives its command has finished.
            await self._report({"command_id": command_id, "status": "completed",
                                "result": {"note": "nothing running to cancel"}})
            return
        timeout = item.get("timeout_seconds") or 300
        parameters = item.get("parameters")
        own = parameters.get("timeout") if isinstance(parameters, dict) and kind == "docker.exec" else None
        if type(own) is int and 0 < own < timeout:
            timeout = own  # exec's own limit; the command's timeout bounds everything
        log.info("running %s (%s)", kind, command_id)
        await self._report({"command_id": command_id, "status": "executing", "progress": 0, "stage": "started"})
        result: dict[str, Any] | None = None
        error: str | None = None
        with trio.move_on_after(timeout) as scope:
            try:
                result = await trio.to_thread.run_sync(self._execute, kind, item.get("parameters"),
                                                       abandon_on_cancel=True)
            except ControlError as exc:
                error = str(exc)
        if scope.cancelled_caught:
            error = f"timed out after {timeout}s"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if error is None:
            await self._report({"command_id": command_id, "status": "completed", "result": result,
                                "completed_at": stamp})
        else:
            log.warning("%s (%s) failed: %s", kind, command_id, error)
            await self._report({"command_id": command_id, "status": "failed", "error": error,
                                "completed_at": stamp})

    def _execute(self, kind: str, parameters: Any) -> dict[str, Any]:
        try:
            client = (docker.DockerClient(base_url=self.docker_host, timeout=30) if self.docker_host
                      else docker.from_env(timeout=30))
        except docker.errors.DockerException as exc:
            raise ControlError(f"no container engine: {exc}") from None
        try:
            return execute(client, kind, parameters, self.allowed)
        finally:
            client.close()
