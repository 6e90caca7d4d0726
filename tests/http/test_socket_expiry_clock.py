"""A socket opened with a user token closes when the token expires by the wall
clock, which its wait reads again (``EXPIRY_RECHECK``): the clock set forward
(NTP fixing a clock that was behind, a VM resumed) ends the token sooner, and
trio's clock, which measures the wait, does not count the step."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from trioscope.actors.client_link import ClientLink
from trioscope.domain.principals import Principal, Role
from trioscope.http import _client_sockets
from trioscope.http._client_sockets import EXPIRY_RECHECK, TOKEN_EXPIRED, _close_on_expiry, _Holder

START = 1_800_000_000.0
HOUR = 3600.0


def _wall(monkeypatch: pytest.MonkeyPatch, step: list[float]) -> None:
    """The wall clock as trio's mock clock runs, plus whatever ``step`` holds."""
    base = trio.current_time()
    monkeypatch.setattr(_client_sockets.time, "time", lambda: START + trio.current_time() - base + step[0])


async def test_a_step_forward_past_the_expiry_closes_the_socket_within_the_recheck(
        monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    step = [0.0]
    _wall(monkeypatch, step)
    link = ClientLink(16)
    holder = _Holder(Principal(user_id="alice", tenant="acme", role=Role.VIEWER, expires_at=START + 2 * HOUR))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_close_on_expiry, link, holder)
        await trio.sleep(10)
        assert link.close_code is None
        step[0] = 2 * HOUR  # set forward: the token's two hours are over now
        stepped_at = trio.current_time()
        with trio.fail_after(2 * HOUR):
            await link.closed.wait()
        assert trio.current_time() - stepped_at <= EXPIRY_RECHECK
    assert (link.close_code, link.close_reason) == (TOKEN_EXPIRED, "token_expired")


async def test_without_a_step_the_socket_closes_at_the_expiry(
        monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> None:
    _wall(monkeypatch, [0.0])  # time.time is the module's: patched for this test
    link = ClientLink(16)
    holder = _Holder(Principal(user_id="alice", tenant="acme", role=Role.VIEWER, expires_at=START + HOUR))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_close_on_expiry, link, holder)
        with trio.fail_after(2 * HOUR):
            await link.closed.wait()
        closed_at = time.time()
    assert START + HOUR <= closed_at < START + HOUR + 1e-3  # not a recheck late, nor early
    assert link.close_code == TOKEN_EXPIRED
