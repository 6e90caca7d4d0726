"""Store listings (the audit log, command pages) take turns per user: each may
take seconds on a large store, and the store's reader connections serve every
tenant. Two of one viewer's far-offset listings at once held another tenant's
command reads at 4.8 s, and ``/health/ready`` at 503."""

from __future__ import annotations

import time
from typing import Any

import trio
import trio.testing

from trioscope.domain.principals import Role, mint_user_token
from trioscope.http import _listings, create_app
from trioscope.runtime import open_actor_system
from trioscope.store import StoreReader, token_secret
from trioscope.system import supervision_tree


async def test_a_users_third_listing_at_once_gets_429_and_another_user_is_answered(settings, monkeypatch) -> None:
    release = trio.Event()
    audit = StoreReader.audit

    async def held(self: StoreReader, tenant: str | None, **kwargs: Any) -> Any:
        if tenant == "slow":
            await release.wait()
        return await audit(self, tenant, **kwargs)

    monkeypatch.setattr(StoreReader, "audit", held)
    secret = token_secret(settings.auth.secret, settings.storage.data_dir)

    def token(user: str, tenant: str) -> dict[str, str]:
        minted = mint_user_token(secret, user_id=user, tenant=tenant, role=Role.ADMIN, now=time.time(), ttl=600)
        return {"Authorization": f"Bearer {minted}"}

    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app, trio.open_nursery() as nursery:
            client = test_app.test_client()
            statuses: list[int] = []

            async def listing() -> None:
                statuses.append((await client.get("/api/v1/audit", headers=token("mallory", "slow"))).status_code)

            for _ in range(_listings.LISTINGS_AT_ONCE):
                nursery.start_soon(listing)
            await trio.testing.wait_all_tasks_blocked()
            refused = await client.get("/api/v1/audit", headers=token("mallory", "slow"))
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
            assert (await refused.get_json())["error"]["code"] == "too_many_listings"
            other = await client.get("/api/v1/audit", headers=token("alice", "fast"))
            assert other.status_code == 200
            release.set()
        assert statuses == [200] * _listings.LISTINGS_AT_ONCE

