"""One user's PromQL reads answered at once are bounded: the embedded engine
answers reads one at a time, so twenty heavy queries sent together by one user
made another tenant's query wait 88 s behind them (a reviewer, measured)."""

from __future__ import annotations

import time

import pytest
import trio

from trioscope.domain.principals import Role, mint_user_token
from trioscope.http import _metrics_api, create_app
from trioscope.http._metrics_backends import EmbeddedMetrics, success
from trioscope.runtime import open_actor_system
from trioscope.store import token_secret
from trioscope.system import supervision_tree


async def test_a_users_reads_beyond_the_limit_get_429_and_others_are_answered(settings, monkeypatch) -> None:
    release = trio.Event()
    held: list[str] = []

    async def held_read(self, tenant, api, params, label=""):  # noqa: ANN001, ANN202 - EmbeddedMetrics.read's
        held.append(tenant)
        await release.wait()
        return success({"resultType": "vector", "result": []})

    monkeypatch.setattr(EmbeddedMetrics, "read", held_read)
    secret = token_secret(settings.auth.secret, settings.storage.data_dir)

    def token(user: str, tenant: str) -> dict[str, str]:
        minted = mint_user_token(secret, user_id=user, tenant=tenant, role=Role.VIEWER, now=time.time(), ttl=600)
        return {"Authorization": f"Bearer {minted}"}

    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app, trio.open_nursery() as nursery:
            client = test_app.test_client()
            answered: list[int] = []

            async def read(headers: dict[str, str]) -> None:
                response = await client.get("/prometheus/api/v1/query?query=up", headers=headers)
                answered.append(response.status_code)

            for _ in range(_metrics_api.READS_AT_ONCE):
                nursery.start_soon(read, token("mallory", "heavy"))
            with trio.fail_after(5):
                while len(held) < _metrics_api.READS_AT_ONCE:
                    await trio.sleep(0.001)
            with trio.fail_after(5):  # held like the others, had it not been refused
                refused = await client.get("/prometheus/api/v1/query?query=up", headers=token("mallory", "heavy"))
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
            body = await refused.get_json()
            assert body["status"] == "error" and "at most 2 queries" in body["error"]
            nursery.start_soon(read, token("alice", "other"))  # another user: not refused
            with trio.fail_after(5):
                while len(held) < _metrics_api.READS_AT_ONCE + 1:
                    await trio.sleep(0.001)
            release.set()
        assert answered == [200] * (_metrics_api.READS_AT_ONCE + 1)
        again = await client.get("/prometheus/api/v1/query?query=up", headers=token("mallory", "heavy"))
        assert again.status_code == 200  # its reads answered, its count is back to none
