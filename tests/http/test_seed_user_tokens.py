"""A user token shaped as the command service seed's ``UserToken`` (``tenant_id``,
``roles``, ``permissions``: stacker-command-service §7.1), signed with the
server's secret by an auth service built to the seed, is a user like one
``trioscope token create`` mints."""

from __future__ import annotations

import time

import jwt

from trioscope.store import token_secret


def seed_token(secret: bytes, roles: list[str]) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "u1", "tenant_id": "acme", "roles": roles, "permissions": ["deployment:read"],
                       "iat": now, "exp": now + 600}, secret, algorithm="HS256")


async def test_a_seed_shaped_token_names_its_user_tenant_and_highest_role(client, settings):
    secret = token_secret(settings.auth.secret, settings.storage.data_dir)
    response = await client.get("/api/v1/users/me",
                                headers={"Authorization": f"Bearer {seed_token(secret, ['VIEWER', 'OPERATOR'])}"})
    assert response.status_code == 200, await response.get_data()
    body = await response.get_json()
    assert (body["user_id"], body["tenant"], body["role"]) == ("u1", "acme", "OPERATOR")


async def test_a_seed_shaped_token_with_no_role_of_ours_is_401(client, settings):
    secret = token_secret(settings.auth.secret, settings.storage.data_dir)
    response = await client.get("/api/v1/users/me",
                                headers={"Authorization": f"Bearer {seed_token(secret, ['billing'])}"})
    assert response.status_code == 401
    assert (await response.get_json())["error"]["code"] == "invalid_token"
