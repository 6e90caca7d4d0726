"""The web UI: ``/`` serves the page, ``/ui/...`` its modules and styles.

Plain files, no build step and no third-party code: the browser loads the
modules as they are. Every UI response carries a strict Content-Security-Policy
(only this origin's scripts, styles and connections; no inline script), so a
label that smuggles HTML into the page cannot run anything.

The files (~200 KB) are read once, at start, and served from memory by exact
name, with an ETag (a 304 when it matches) and without ranges (a server may
ignore ``Range``: RFC 9110 14.2). Quart's static files looked each name up on
disk and took ranges: a name over 255 bytes raised ``OSError`` and a suffix
range (``bytes=-1``) or one past 2^64 raised in werkzeug or h11, each a 500
with a traceback logged (17 KB of log per request anyone could send).
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

import attrs
from quart import Blueprint, Response, request

from ._errors import error_response
from ._openapi import Answer, documented

STATIC = Path(__file__).parent / "static"

blueprint = Blueprint("ui", __name__)


@attrs.frozen
class _File:
    body: bytes
    media: str
    etag: str


def _read_files(root: Path) -> dict[str, _File]:
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            body = path.read_bytes()
            media = "text/javascript" if path.suffix == ".js" else mimetypes.guess_type(path.name)[0]
            files[path.relative_to(root).as_posix()] = _File(
                body, media or "application/octet-stream", '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return files


_FILES = _read_files(STATIC)


def _send(name: str) -> Response:
    found = _FILES.get(name)
    if found is None:
        return error_response(404, "not_found", "no such file of the web UI")
    if found.etag in request.headers.get("If-None-Match", ""):
        return Response(b"", 304, headers={"ETag": found.etag})
    charset = "; charset=utf-8" if found.media.startswith("text/") else ""
    return Response(found.body, 200, content_type=found.media + charset, headers={"ETag": found.etag})


SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                "form-action 'none'"),
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@blueprint.get("/")
@documented(answers={200: Answer("the page", media="text/html", schema={"type": "string"})})
async def index() -> Response:
    """The web UI."""
    return _send("index.html")


@blueprint.get("/docs")
@documented(answers={200: Answer("the page", media="text/html", schema={"type": "string"})})
async def docs() -> Response:
    """The API reference: the OpenAPI document rendered by the UI's own script."""
    return _send("docs.html")


@blueprint.get("/ui/<path:name>", endpoint="static")  # "static": left out of the API's routes, as Quart's was
async def files(name: str) -> Response:
    """The web UI's modules and styles."""
    return _send(name)


@blueprint.after_request  # the page and its static files only: no cost to API requests
async def _headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    # Revalidate every time (ETag / Last-Modified make that a 304): an
    # upgraded server never runs with yesterday's modules.
    response.headers["Cache-Control"] = "no-cache"
    return response
