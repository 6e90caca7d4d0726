"""The web UI: ``/`` serves the page, ``/ui/...`` its modules and styles.

Plain files, no build step and no third-party code: the browser loads the
modules as they are. Every UI response carries a strict Content-Security-Policy
(only this origin's scripts, styles and connections; no inline script), so a
label that smuggles HTML into the page cannot run anything.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response

from ._openapi import Answer, documented

STATIC = Path(__file__).parent / "static"

blueprint = Blueprint("ui", __name__, static_folder=str(STATIC), static_url_path="/ui")

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                "form-action 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@blueprint.get("/")
@documented(answers={200: Answer("the page", media="text/html", schema={"type": "string"})})
async def index() -> Response:
    """The web UI."""
    response = await blueprint.send_static_file("index.html")
    return response


@blueprint.get("/docs")
@documented(answers={200: Answer("the page", media="text/html", schema={"type": "string"})})
async def docs() -> Response:
    """The API reference: the OpenAPI document rendered by the UI's own script."""
    return await blueprint.send_static_file("docs.html")


@blueprint.after_request  # the page and its static files only: no cost to API requests
async def _headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    # Revalidate every time (ETag / Last-Modified make that a 304): an
    # upgraded server never runs with yesterday's modules.
    response.headers["Cache-Control"] = "no-cache"
    return response
