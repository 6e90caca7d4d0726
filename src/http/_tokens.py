"""Tokens offered by clients: ``Authorization: Bearer <token>``, on a
WebSocket a ``bearer.<token>`` subprotocol or ``?token=``, and to the
Prometheus API the password of ``Authorization: Basic``."""

from __future__ import annotations

import base64
import binascii

from quart import websocket

from ._client_address import current_connection


def bearer() -> str | None:
    return _bearer_value(current_connection().headers.get("Authorization", ""))


def _bearer_value(text: str) -> str | None:
    """The token of ``Bearer <token>`` (any case), None for anything else."""
    scheme, _, value = text.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def basic_password() -> str | None:
    """The password of ``Authorization: Basic``: where clients that cannot send a
    bearer token (``promtool query instant``, a URL with ``user:token@``, Grafana's
    basic auth) put the user token. The user name is not looked at."""
    scheme, _, value = current_connection().headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or len(value) > 8192:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def socket_token() -> str | None:
    """A WebSocket client's user token: offered as a subprotocol, else ?token=
    (None: then ``user`` reads the Authorization header)."""
    return offered_token() or query_token()


def query_token() -> str | None:
    """A WebSocket's ``?token=``, a ``Bearer <t>`` in it taken as ``<t>``
    (the command service's seed says "Bearer token in query string"; the whole
    of it was read as the token: "Invalid header padding")."""
    token = websocket.args.get("token")
    return _bearer_value(token) or token if token is not None else None


TOKEN_SUBPROTOCOL = "trioscope"
"""Chosen when a WebSocket client offers it with ``bearer.<token>``: browsers
cannot set an Authorization header on a WebSocket, and a token in the URL ends
up in proxy logs."""
_BEARER = "bearer."


def offered_token() -> str | None:
    """The token a WebSocket offers as a ``bearer.<token>`` subprotocol beside ``trioscope``."""
    offered = websocket.requested_subprotocols
    if TOKEN_SUBPROTOCOL not in offered:
        return None
    return next((p.removeprefix(_BEARER) for p in offered if p.startswith(_BEARER)), None)


def chosen_subprotocol() -> str | None:
    """What to accept a WebSocket with: ``trioscope`` if offered (a browser
    that offers subprotocols fails the connection unless one is chosen)."""
    return TOKEN_SUBPROTOCOL if TOKEN_SUBPROTOCOL in websocket.requested_subprotocols else None
