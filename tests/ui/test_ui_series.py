"""The details panel's metrics API series, in a real Chromium against a real
server: the probe's host metrics (trioscope_node_*) and the points its
deployment's agent wrote are listed for the node, and the chosen one is drawn
from query_range; nodes without series and refused queries say so."""

from __future__ import annotations

import json
import time

import httpx
import trio
from playwright.sync_api import Route

from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from trioscope.domain.topology import host_id

from .conftest import ACME, Ui, post_report, register_agent

PANEL = "#details .series"
ENROLLED = host_id("host-0", ACME)
"""``enrolled_host``'s host-0: reported by alice's deployment's probe, its id carries tenant acme's scope."""


def enrolled_agent(server: ServerProcess) -> StatusAgent:
    """A deployment of alice's (tenant acme) with its agent enrolled."""
    auth = {"Authorization": f"Bearer {server.user_token('alice', 'acme', 'OPERATOR')}"}
    deployment = httpx.post(f"{server.base_url}/api/v1/users/alice/deployments", json={}, headers=auth).json()
    enrolled = httpx.post(f"{server.base_url}/api/v1/agent/register", json={
        "deployment_hash": deployment["deployment_hash"], "enrollment_token": deployment["enrollment_token"],
        "public_key": "", "capabilities": [], "system_info": {}, "agent_version": "1"}).json()
    return StatusAgent(server.base_url, enrolled["agent_id"], enrolled["agent_token"], deployment["deployment_hash"])


def write(server: ServerProcess, agent: StatusAgent, lines: str) -> None:
    async def post() -> httpx.Response:
        body = lines.encode()
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(f"{server.base_url}/api/v1/metrics/write?precision=s", content=body,
                                     headers={**agent.headers(body), "Content-Type": "text/plain"})

    response = trio.run(post)
    assert response.status_code == 204, response.text


def enrolled_host(ui: Ui) -> StatusAgent:
    """host-0, reported by a probe enrolled in alice's deployment (three
    reports 15 s apart, cpu 20 → 60 %), whose agent wrote requests_count
    of two routes over the last two minutes; host-1 reported unsigned."""
    agent = enrolled_agent(ui.server)
    register_agent(ui.server, 0, agent)
    now = time.time()
    for step, cpu in enumerate((20.0, 35.0, 60.0)):
        post_report(ui.server, 0, timestamp=now - 30 + 15 * step, cpu=cpu, signer=agent)
    post_report(ui.server, 1, timestamp=now)
    at = int(now)
    write(ui.server, agent, "".join(f"requests,route=/a count={n}i {at - 120 + 30 * n}\n"
                                    f"requests,route=/b count={10 * n}i {at - 120 + 30 * n}\n"
                                    f'requests,route=/say"hi count={n + 1}i {at - 120 + 30 * n}\n' for n in range(5)))
    return agent


def options(ui: Ui) -> list[str]:
    return ui.page.eval_on_selector_all(f"{PANEL} select option", "items => items.map(o => o.textContent)")


def open_host(ui: Ui, node: str) -> None:
    ui.open()
    ui.wait_for_nodes({node})
    ui.click_node(node)
    ui.page.wait_for_selector(f"#details[data-state=loaded][data-node='{node}']")


def test_the_nodes_series_are_listed_and_the_chosen_one_is_drawn_from_query_range(ui: Ui) -> None:
    agent = enrolled_host(ui)
    open_host(ui, ENROLLED)
    # The probe's host metrics (by agent_id) and what its deployment's agent wrote (by deployment_hash).
    ui.page.wait_for_function(f"() => [...document.querySelectorAll('{PANEL} select option')]"
                              ".some(o => o.textContent.startsWith('requests_count'))")
    listed = options(ui)
    assert listed[0] == "choose a series…"
    assert {"trioscope_node_cpu_usage", "trioscope_node_memory_usage", 'requests_count{route="/a"}',
            'requests_count{route="/b"}'} <= set(listed)
    assert ui.page.get_attribute(PANEL, "data-state") == "listed"
    assert ui.page.inner_text(f"{PANEL} h3").lower() == "metrics api series of host-0"

    ranges: list[str] = []
    ui.page.on("request", lambda r: ranges.append(r.url) if "/prometheus/api/v1/query_range" in r.url else None)
    ui.page.select_option(f"{PANEL} select", label='requests_count{route="/b"}')
    ui.page.wait_for_selector(f"{PANEL}[data-state=drawn] svg.sparkline polyline")
    # The five samples written 30 s apart, each at its own step: a bare selector
    # drew each again at the next step (its 5 minute lookback), a writer's
    # silence as its last value.
    assert int(ui.page.get_attribute(f"{PANEL} svg.sparkline", "data-points") or 0) == 5
    assert ui.page.inner_text(f"{PANEL} .series-chart .value") == "40.00"  # the newest point written
    assert ranges, "the sparkline's points come from query_range"

    # A label value with a quote in it: quoted in the selector, still that one series.
    ui.page.select_option(f"{PANEL} select", label='requests_count{route="/say\\"hi"}')
    ui.page.wait_for_function(f"() => document.querySelector('{PANEL} .series-chart .value')?.textContent === '5.00'")

    ui.page.select_option(f"{PANEL} select", label="trioscope_node_cpu_usage")
    ui.page.wait_for_function(f"() => document.querySelector('{PANEL} .series-chart .value')?.textContent === '60.0%'")
    assert int(ui.page.get_attribute(f"{PANEL} svg.sparkline", "data-points") or 0) >= 3

    # A new report changes the node: the panel refreshes, and the chart with it.
    post_report(ui.server, 0, timestamp=time.time(), cpu=80.0, signer=agent)
    ui.page.wait_for_function(f"() => document.querySelector('{PANEL} .series-chart .value')?.textContent === '80.0%'")
    assert ui.page.eval_on_selector(f"{PANEL} select", "s => s.selectedOptions[0].textContent") == \
        "trioscope_node_cpu_usage"

    # A container's series are its host's: the chosen one is still drawn there.
    ui.page.click("[data-list=children] a >> nth=0")
    ui.page.wait_for_selector("#details[data-state=loaded][data-node^='container:']")
    ui.page.wait_for_selector(f"{PANEL}[data-state=drawn] svg.sparkline polyline")
    assert ui.page.inner_text(f"{PANEL} h3").lower() == "metrics api series of host-0"
    assert ui.page.inner_text(f"{PANEL} .series-chart .value") == "80.0%"

    # The choice follows the user to the next host: it has no series there, so nothing is drawn.
    ui.page.click("[data-view=hosts]")
    ui.wait_for_nodes({"host:host-1"})
    ui.click_node("host:host-1")
    ui.page.wait_for_selector(f"{PANEL}[data-state=empty]")
    assert "No series of this node" in ui.page.inner_text(PANEL)
    assert ui.page.is_hidden(f"{PANEL} select")


def test_a_refused_query_and_a_refused_token_are_said_plainly(ui: Ui) -> None:
    enrolled_host(ui)
    # What the engine answers when it will not run a query (Prometheus' shape, 422).
    refusal = {"status": "error", "errorType": "execution",
               "error": "the query would read more than 1000 samples (metrics.max_query_samples)"}

    def refuse(route: Route) -> None:
        route.fulfill(status=422, content_type="application/json", body=json.dumps(refusal))

    ui.page.route("**/prometheus/api/v1/query_range?**", refuse)
    ui.expected.append("422")  # Chromium logs the refused fetch
    open_host(ui, ENROLLED)
    ui.page.wait_for_selector(f"{PANEL} select option >> text=trioscope_node_load1", state="attached")
    ui.page.select_option(f"{PANEL} select", label="trioscope_node_load1")
    ui.page.wait_for_selector(f"{PANEL}[data-state=refused][data-status='422']")
    assert "cannot answer this query: the query would read more than 1000 samples" in ui.page.inner_text(PANEL)
    assert ui.page.query_selector(f"{PANEL} svg.sparkline") is None

    # The engine behind the metrics API (metrics.url) refusing: said in the panel, the user stays signed in.
    ui.page.unroute("**/prometheus/api/v1/query_range?**")
    ui.page.route("**/prometheus/api/v1/query_range?**", lambda route: route.fulfill(
        status=401, content_type="application/json",
        body=json.dumps({"status": "error", "errorType": "unauthorized", "error": "engine wants credentials"})))
    ui.expected.append("401")
    ui.page.select_option(f"{PANEL} select", label="trioscope_node_cpu_usage")
    ui.page.wait_for_selector(f"{PANEL}[data-state=unauthorized]")
    assert "The metrics engine refused the request: engine wants credentials" in ui.page.inner_text(PANEL)
    assert not ui.page.is_visible("#signin")

    # trioscope refusing the token (ours, in our error shape): the user is asked to sign in again.
    ui.page.route("**/prometheus/api/v1/series?**", lambda route: route.fulfill(
        status=401, content_type="application/json",
        body=json.dumps({"error": {"code": "invalid_token", "message": "the user token is invalid or expired"}})))
    ui.page.evaluate("() => document.querySelector('#details-close').click()")
    ui.click_node(ENROLLED)
    ui.page.wait_for_selector("#signin[open]")
    assert "Your session ended" in ui.page.inner_text("#signin-error")


def test_an_engine_that_keeps_no_host_series_still_lists_what_the_deployments_agent_wrote(ui: Ui) -> None:
    # Behind --metrics-url the engine holds only the written points (no
    # trioscope_node_* series to learn the deployment from): the node's
    # details name its probe's deployment, and its series are listed by it.
    enrolled_host(ui)

    def without_host_series(route: Route) -> None:
        answer = route.fetch()
        found = answer.json()
        found["data"] = [labels for labels in found["data"] if not labels["__name__"].startswith("trioscope_node_")]
        route.fulfill(response=answer, body=json.dumps(found))

    ui.page.route("**/prometheus/api/v1/series?**", without_host_series)
    open_host(ui, ENROLLED)
    ui.page.wait_for_function(f"() => [...document.querySelectorAll('{PANEL} select option')]"
                              ".some(o => o.textContent.startsWith('requests_count'))")
    assert not any(label.startswith("trioscope_node_") for label in options(ui))


def test_node_details_name_the_probes_deployment_to_a_user_of_its_tenant_only(ui: Ui) -> None:
    agent = enrolled_host(ui)
    url = f"{ui.server.base_url}/api/v1/query/nodes/{ENROLLED}"

    def named(token: str | None) -> object:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx.get(url, headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.json()["deployment_hash"]

    assert named(ui.server.user_token("alice", "acme", "VIEWER")) == agent.deployment_hash
    assert named(ui.server.user_token("mallory", "other", "ADMIN")) is None
    assert named(None) is None
    assert named("not-a-token") is None  # the read is open: a bad token loses only the extra
