"""A NUL character (``%00``) in what a request names: PostgreSQL cannot take
one as text, so a replica refuses it at the edge (400 ``invalid_text`` naming
where it was), before any lookup. Looked up, a deployment hash holding one
crashed the directory actor, and five such requests of a VIEWER's token made
the server give up and exit."""

from __future__ import annotations

import httpx

from tests.integration.test_commands import Operator, fresh
from tests.replicas.conftest import replica


async def test_nul_characters_in_paths_and_queries_are_refused_and_the_replica_lives_on(postgres_url: str) -> None:
    with replica(postgres_url) as server:
        viewer = Operator(server, fresh("user"), fresh("tenant"), role="VIEWER")
        admin = Operator(server, viewer.user_id, viewer.tenant, role="ADMIN")
        async with httpx.AsyncClient(timeout=30) as client:
            for attempt in range(8):  # beyond the root supervisor's restart intensity (5 in 30 s)
                response = await client.get(viewer.url(f"x%00{attempt}"), headers=viewer.auth)
                assert response.status_code == 400, response.text
                error = response.json()["error"]
                assert (error["code"], error["details"]["errors"][0]["path"]) == ("invalid_text", "path")
            for url in (viewer.url(f"{'a' * 32}/commands/c%00"), f"{server.base_url}/api/v1/audit?actor=%00",
                        f"{server.base_url}/api/v1/audit?action=a%00b"):
                response = await client.get(url, headers=admin.auth)
                assert response.status_code == 400, (url, response.text)
                assert response.json()["error"]["code"] == "invalid_text"
            response = await client.get(f"{server.base_url}/api/v1/audit?action=a%00b", headers=admin.auth)
            assert response.json()["error"]["details"]["errors"][0]["path"] == "action"
            assert (await client.get(f"{server.base_url}/health")).status_code == 200
            assert (await client.get(viewer.url(), headers=viewer.auth)).status_code == 200
            # The topology's reads name what reports hold: not refused for it.
            response = await client.get(f"{server.base_url}/api/v1/query/nodes/pod:a%00b", headers=admin.auth)
            assert response.status_code == 404, response.text
        assert "crashed" not in server.stderr()
