"""Signing the probe's requests with its agent credentials."""

from __future__ import annotations

import time
import uuid

import httpx

from trioscope.wire import request_signing


def signed_request(client: httpx.AsyncClient, method: str, path: str, *, agent_id: str, token: str,
                   body: bytes = b"", headers: dict[str, str] | None = None,
                   timeout: float | None = None) -> httpx.Request:
    """A request signed over method, path, query, agent id and body (RFC 9421,
    ``trioscope.wire.request_signing``): unlike the status agent's signature of
    the body alone, a captured one cannot be sent again under another request id."""
    request = client.build_request(method, path, content=body or None, timeout=timeout, headers={
        **(headers or {}), "Authorization": f"Bearer {token}", "X-Agent-Id": agent_id})
    request_signing.sign(request.method, str(request.url), request.headers, body, agent_id=agent_id, token=token,
                         now=time.time(), nonce=str(uuid.uuid4()))
    return request
