"""Signing the probe's requests with its agent credentials."""

from __future__ import annotations

import time
import uuid

import httpx

from trioscope.wire import request_signing


def signed_request(client: httpx.AsyncClient, method: str, path: str, *, agent_id: str, token: str,
                   body: bytes = b"", headers: dict[str, str] | None = None,
                   timeout: float | None = None) -> httpx.Request:
    """A request signed over method, path, query, agent id, body, time and
    request id (RFC 9421, ``trioscope.wire.request_signing``): unlike the status
    agent's signature of the body alone, which proves only the body, this one
    cannot be reused as it is for another request id, time, path or body.

    It is no protection against whoever sees a request, though: the signing key
    is the agent token, which the request also carries (``Authorization:
    Bearer``), so one captured request is enough to sign any other. Only TLS
    (an https:// server) keeps the token and the requests from others."""
    request = client.build_request(
        method, path, content=body or None,
        timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,  # None would be no timeout at all
        headers={**(headers or {}), "Authorization": f"Bearer {token}", "X-Agent-Id": agent_id})
    request_signing.sign(request.method, str(request.url), request.headers, body, agent_id=agent_id, token=token,
                         now=time.time(), nonce=str(uuid.uuid4()))
    return request
