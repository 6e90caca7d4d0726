"""The OpenAPI document names every view ``/api/v1/ws`` takes: it said
hosts|containers|processes|pods|services, and the socket also takes
``processes-by-name`` and ``all`` (a reviewer)."""

from __future__ import annotations

from typing import Any

import pytest

from trioscope.domain.live import BadClientMessage, parse_view
from trioscope.domain.topology import View


async def _view_parameter(client: Any) -> dict[str, Any]:
    spec = await (await client.get("/api/v1/openapi.json")).get_json()
    parameters = spec["paths"]["/api/v1/ws"]["get"]["parameters"]
    return next(p for p in parameters if p["name"] == "view")


async def test_the_live_views_view_lists_every_view_the_socket_takes(client: Any) -> None:
    documented = (await _view_parameter(client))["schema"]["enum"]
    assert set(documented) == {"all", *(view.value for view in View)}, documented
    assert {"processes-by-name", "all"} <= set(documented)
    for name in documented:
        parse_view(name)  # each taken
    with pytest.raises(BadClientMessage):
        parse_view("everything")
