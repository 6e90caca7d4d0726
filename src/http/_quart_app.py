"""Quart-Trio's application, with a cancelled handler's exception left in no
reference cycle.

Quart-Trio ends a WebSocket handler by cancelling it, and a handler whose
nursery is cancelled raises a group of ``Cancelled``. Quart-Trio 0.12 re-raises
that group from frames that keep it in a local variable (``error`` in
``handle_user_exception``, ``filtered_error`` in ``handle_websocket``), and
those frames are in the group's own traceback: a reference cycle. Through the
frames below it (the handler's) it held the whole connection: Hypercorn's
stream, the handler's tasks, the client actor's link and whatever its outbox
still held, ~270 objects per WebSocket, until the cyclic collector's oldest
generation came by (rarely, with ``server.tune_garbage_collector``'s
thresholds). HTTP handlers cancelled mid-request go the same way.

Clearing the finished frames of the group's traceback as it leaves Quart-Trio
breaks the cycle, so the connection is freed when the last reference goes.
The traceback itself (files, lines) is kept for whoever logs it.
"""

from __future__ import annotations

import traceback
from typing import Any

from quart_trio import QuartTrio


class TrioscopeApp(QuartTrio):
    """``QuartTrio`` whose request and WebSocket handlers leave no cycle when
    they end with an exception group (a cancelled handler)."""

    async def handle_request(self, request: Any) -> Any:
        try:
            return await super().handle_request(request)
        except BaseExceptionGroup as group:
            traceback.clear_frames(group.__traceback__)  # frames still running (this one) are skipped
            raise

    async def handle_websocket(self, websocket: Any) -> Any:
        try:
            return await super().handle_websocket(websocket)
        except BaseExceptionGroup as group:
            traceback.clear_frames(group.__traceback__)
            raise
