"""JSON on the wire: orjson-encoded bodies (times are written by `wire.rfc3339_seconds` and `rfc3339_millis`)."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Response

JSON = "application/json"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Encode ``body`` with orjson (attrs/dataclass instances included)."""
    return Response(orjson.dumps(body), status=status, content_type=JSON, headers=headers)


def no_content(headers: dict[str, str] | None = None) -> Response:
    """204 without a ``Content-Type`` (Quart gives every response one,
    ``text/html`` by default): there is no content to have a type."""
    response = Response(b"", status=204, headers=headers)
    del response.headers["Content-Type"]
    return response


def json_bytes_response(encoded: bytes, status: int = 200) -> Response:
    """A body already encoded once and cached (topology snapshots, for instance)."""
    return Response(encoded, status=status, content_type=JSON)


