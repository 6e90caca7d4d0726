"""The ``endpoint`` label of the seed's API metrics (``trydirect_api_requests_total``)
is the route template, also when the route refuses the request's method (405):
only a path no route has is ``unmatched``. In process, one app."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


async def _requests(client) -> set[tuple[str, str, str]]:
    """(endpoint, method, status) of every ``trydirect_api_requests_total`` series."""
    text = await (await client.get("/metrics")).get_data(as_text=True)
    return {(s.labels["endpoint"], s.labels["method"], s.labels["status"])
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "trydirect_api_requests_total"}


async def test_a_method_a_route_does_not_take_is_labelled_with_the_route(client):
    assert (await client.get("/api/v1/alerts/webhook")).status_code == 405
    assert (await client.delete("/api/v1/agent/commands/wait/abc")).status_code == 405
    assert (await client.get("/api/v1/no/such/route")).status_code == 404
    requests = await _requests(client)
    assert ("/api/v1/alerts/webhook", "GET", "405") in requests
    assert ("/api/v1/agent/commands/wait/<deployment_hash>", "DELETE", "405") in requests
    assert ("unmatched", "GET", "404") in requests
    assert not any(endpoint == "unmatched" and status == "405" for endpoint, _, status in requests)
