"""The client address's API budget (``limits.per_address``) in a running app,
in process: every HTTP route is charged, open reads included, except the
orchestrators' health checks and the probes' requests (budgets of their own);
and a request is charged once however many gates it passes."""

from __future__ import annotations

import re

import attrs
import pytest

from trioscope.domain.rates import RateLimiter
from trioscope.http import create_app
from trioscope.http._app import UNCHARGED_ROUTES
from trioscope.http._services import services_of
from trioscope.runtime import open_actor_system
from trioscope.system import supervision_tree

BUDGET = 10
"""A minute's budget of 10: a burst of 10, then one every 6 s (none within a test)."""
_VARIABLE = re.compile(r"<(?:[^:>]+:)?[^>]+>")


def _limited(settings, *, protect_reads: bool = False):
    return attrs.evolve(settings, limits=attrs.evolve(settings.limits, per_address=BUDGET),
                        auth=attrs.evolve(settings.auth, protect_reads=protect_reads))


@pytest.fixture
async def open_reads(settings):
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, _limited(settings))
        async with app.test_app() as test_app:
            yield app, test_app.test_client()


@pytest.fixture
async def protected_reads(settings):
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, _limited(settings, protect_reads=True))
        async with app.test_app() as test_app:
            yield app, test_app.test_client()


def _fresh_budget(app) -> None:
    services_of(app).gate.per_address = RateLimiter(BUDGET)


async def _address_refused(client, method: str, path: str, count: int) -> list[bool]:
    """For each of ``count`` requests in a row, whether it was refused for its address's budget."""
    refused = []
    for _ in range(count):
        response = await client.open(path, method=method)
        body = await response.get_json(silent=True) or {}
        # 503 for an agent's result or app status (its agent resends only after a 5xx), 429 for the rest.
        refused.append(response.status_code in (429, 503) and body.get("error", {}).get("code") == "rate_limited"
                       and body["error"]["details"]["scope"] == "address")
    return refused


async def test_every_http_route_is_charged_but_health_checks_and_probe_requests(open_reads):
    app, client = open_reads
    routes = [(rule.rule, method) for rule in app.url_map.iter_rules() if not rule.websocket
              for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})]
    assert ("/metrics", "GET") in routes and ("/api/v1/query/topology", "GET") in routes
    charged, uncharged = [], []
    for rule, method in routes:
        _fresh_budget(app)
        path = _VARIABLE.sub("x", rule)
        refused = await _address_refused(client, method, path, BUDGET + 1)
        (charged if refused == [False] * BUDGET + [True] else uncharged).append((rule, method, refused))
    assert {rule for rule, _, _ in uncharged} == UNCHARGED_ROUTES, uncharged
    assert not [entry for entry in uncharged if any(entry[2])]  # never charged at all
    # Requests to no route (404) are charged like the rest.
    _fresh_budget(app)
    assert (await _address_refused(client, "GET", "/no/such/route", BUDGET + 1))[-1]


@pytest.mark.parametrize("path", ["/api/v1/agents/list", "/api/v1/agents/config/agent-0", "/api/v1/query/stats",
                                  "/metrics"])
async def test_a_protected_read_is_charged_once(protected_reads, path):
    """A route that charges the address and then asks for the reader's token
    (which charges it too) spent two of the budget per request."""
    app, client = protected_reads
    _fresh_budget(app)
    statuses = [(await client.get(path)).status_code for _ in range(BUDGET + 1)]
    assert statuses == [401] * BUDGET + [429], statuses
