"""Times in answers never fail a request: a user token whose expiry lies past
the year 9999 (minted with the server's secret by something other than
``token create``, or before it capped its ttl) is still answered, not a 500."""

from __future__ import annotations

import time

import jwt
import pytest

from trioscope.domain.principals import Role, mint_user_token
from trioscope.wire import rfc3339_millis
from trioscope.store import token_secret


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "1970-01-01T00:00:00.000Z"),
    (1.5, "1970-01-01T00:00:01.500Z"),
    (3_000_000 * 86400.0, "9999-12-31T23:59:59.999Z"),
    (1e300, "9999-12-31T23:59:59.999Z"),
    (float("inf"), "9999-12-31T23:59:59.999Z"),
    (-1e20, "0001-01-01T00:00:00.000Z"),
    (float("nan"), None),
    (None, None),
])
def test_a_time_outside_the_calendar_is_shown_as_its_nearest_end(seconds, shown):
    assert rfc3339_millis(seconds) == shown


@pytest.mark.parametrize("ttl", [3_000_000 * 86400.0, 1e30])
async def test_a_token_expiring_past_the_year_9999_is_answered(client, settings, ttl):
    secret = token_secret(settings.auth.secret, settings.storage.data_dir)
    token = mint_user_token(secret, user_id="z", tenant="ta", role=Role.VIEWER, now=time.time(), ttl=ttl)
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, await response.get_data()
    body = await response.get_json()
    assert body["user_id"] == "z" and body["expires_at"] == "9999-12-31T23:59:59.999Z"


async def test_a_token_with_an_ordinary_expiry_shows_it(client, settings):
    secret = token_secret(settings.auth.secret, settings.storage.data_dir)
    exp = 2_000_000_000
    token = jwt.encode({"sub": "z", "tenant": "ta", "role": "VIEWER", "iat": int(time.time()), "exp": exp}, secret,
                       algorithm="HS256")
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert (await response.get_json())["expires_at"] == "2033-05-18T03:33:20.000Z"
