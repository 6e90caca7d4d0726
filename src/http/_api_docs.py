"""``/api/v1/openapi.json``: the API's description, built from the running
application's routes once (``_openapi.build``) and served as is."""

from __future__ import annotations

import orjson
from quart import Blueprint, Response, current_app

from ._openapi import Answer, build, documented
from ._responses import json_bytes_response

blueprint = Blueprint("api_docs", __name__)

_KEY = "trioscope.openapi"


@blueprint.get("/api/v1/openapi.json")
@documented(answers={200: Answer("the OpenAPI 3.1 document")})
async def openapi() -> Response:
    """This API's OpenAPI 3.1 description (the /docs page renders it)."""
    encoded = current_app.extensions.get(_KEY)
    if encoded is None:  # the routes do not change once the app serves: built once
        encoded = current_app.extensions[_KEY] = orjson.dumps(build(current_app))
    return json_bytes_response(encoded)
