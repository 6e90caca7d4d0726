"""What the page says, as a reviewer read it in Chromium: no "null" where a
viewer's controls would be, sign-in messages that answer the last attempt,
URL parameters naming nothing that exists said as such, long group names cut
to their room (whole in the tooltip), and metric columns under human names."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.synthetic import host_report
from trioscope.wire import MemoryBudget, decode_report
from trioscope_probe._transport import encode_report

from .conftest import Ui, post_report
from .test_ui import enrolled_probe, enrolled_running


@pytest.mark.parametrize(("role", "user"), [("VIEWER", "vera"), ("OPERATOR", "bob")])
def test_who_may_not_control_a_container_sees_no_null_in_its_details(ui: Ui, role: str, user: str) -> None:
    # bob: an operator of alice's tenant, not the deployment's owner (details.controllable is false).
    enrolled_probe(ui.server, {"Authorization": f"Bearer {ui.server.user_token('alice', 'acme', 'OPERATOR')}"})
    running = enrolled_running()
    ui.open(f"?view=containers&node={running}", role=role, user=user)
    ui.page.wait_for_selector(f"#details[data-state=loaded][data-node='{running}']")
    assert ui.page.locator(".controls-section").count() == 0
    assert "null" not in ui.page.inner_text("#details-body")


def test_sign_in_says_a_token_is_needed_or_empty_in_place_of_the_last_message(ui: Ui) -> None:
    ui.expected.append("status of 401")
    ui.page.goto(ui.server.base_url + "/")
    ui.page.wait_for_selector("#signin[open]")
    error = "() => document.querySelector('#signin-error').textContent"
    ui.page.fill("#signin-token", ui.server.user_token(ttl=60, issued_ago=120))
    ui.page.click("#signin-submit")
    ui.page.wait_for_function(f"{error}.includes('expired at')")

    ui.page.fill("#signin-token", "")
    ui.page.click("#signin-submit")
    ui.page.wait_for_function(f"{error}.includes('A token is needed')")
    assert "expired" not in ui.page.inner_text("#signin-error")

    ui.page.fill("#signin-token", "   \n ")
    ui.page.click("#signin-submit")
    ui.page.wait_for_function(f"{error}.includes('empty')")
    assert ui.page.locator("#signin[open]").count() == 1


def test_an_unknown_view_in_the_url_is_said_and_goes_from_the_url(ui: Ui) -> None:
    post_report(ui.server, 0, containers=1, processes=1, connections=0)
    ui.open("?view=garbage&q=host")
    ui.wait_for_nodes({"host:host-0"})
    query = parse_qs(urlparse(ui.page.url).query)
    assert "view" not in query and query["q"] == ["host"]  # what is shown: Hosts, searched
    assert ui.page.get_attribute("[data-view=hosts]", "aria-pressed") == "true"
    notice = ui.page.locator("#notice")
    assert notice.is_visible()
    assert ui.page.inner_text("#notice-text") == 'There is no view "garbage": showing Hosts.'
    ui.page.click("[data-view=containers]")  # the user chose: nothing to say any more
    ui.page.wait_for_selector("#notice", state="hidden")


def test_a_node_the_page_never_showed_is_not_in_the_topology_and_a_shown_one_is_gone(ui: Ui) -> None:
    ui.expected.append("status of 404")
    post_report(ui.server, 0, containers=0, processes=1, connections=0)
    ui.open("?node=host%3Anever-existed")
    ui.page.wait_for_selector("#details[data-state=unknown]")
    said = ui.page.inner_text("#details-body")
    assert "not in the topology" in said and "gone:" not in said

    ui.wait_for_nodes({"host:host-0"})
    ui.click_node("host:host-0")
    ui.page.wait_for_selector("#details[data-state=loaded][data-node='host:host-0']")
    # From here the server no longer knows it (as when its probe stopped reporting it).
    ui.page.route("**/api/v1/query/nodes/host%3Ahost-0*", lambda route: route.fulfill(
        status=404, json={"error": {"code": "not_found", "message": "no such node"}}))
    post_report(ui.server, 0, containers=0, processes=1, connections=0, cpu=70.0)  # the live view touches it: fetched again
    ui.page.wait_for_selector("#details[data-state=gone]")
    assert "This node is gone" in ui.page.inner_text("#details-body")


def report_with_hostname(index: int, hostname: str) -> dict:
    body = host_report(index, timestamp=time.time(), containers=2, processes=2, connections=0)
    body["hostname"] = body["host_info"]["hostname"] = hostname
    return body


def test_long_group_names_are_cut_to_their_room_and_whole_in_the_tooltip(ui: Ui) -> None:
    names = ["alpha-" + "x" * 150, "bravo-" + "y" * 150]
    for index, name in enumerate(names):
        response = httpx.post(f"{ui.server.base_url}/api/v1/reports", json=report_with_hostname(index, name), timeout=10)
        assert response.status_code == 202, response.text
    ui.open("?view=containers")
    ui.page.wait_for_function("() => trioscope.groupLabels().length === 2")
    labels = sorted(ui.page.evaluate("trioscope.groupLabels()"), key=lambda label: label["left"])
    assert [label["full"] for label in labels] == names
    for label, name in zip(labels, names, strict=True):
        assert label["text"].endswith("…") and name.startswith(label["text"][:-1])
        assert label["canvasLeft"] <= label["left"] and label["right"] <= label["canvasRight"]  # not off screen
    assert labels[0]["right"] < labels[1]["left"]  # not over each other

    first = labels[0]
    ui.page.mouse.move((first["left"] + first["right"]) / 2, first["y"] - 5)
    ui.page.wait_for_function("name => document.querySelector('#canvas').title === name", arg=names[0])


def test_metric_columns_have_names_not_keys(ui: Ui) -> None:
    post_report(ui.server, 0, containers=1, processes=12, connections=0)
    ui.open("?view=processes&mode=table")  # grouped by name: CPU summed, and its busiest process's
    ui.page.wait_for_selector(".th[data-key=cpu_percent_max]")
    headers = dict(ui.page.eval_on_selector_all(
        "#table-head .th", "cells => cells.map((c) => [c.dataset.key, c.textContent])"))
    assert headers["cpu_percent"] == "CPU %" and headers["cpu_percent_max"] == "CPU % (max)"
    assert headers["memory_mb"] == "Memory" and headers["processes"] == "Processes"
    assert len(set(headers.values())) == len(headers)
    assert ui.page.locator(".th[data-key=cpu_percent_max] button").get_attribute("title") == "Sort by CPU % (max)"


def test_a_host_whose_probe_cut_its_report_says_what_was_left_out_in_its_details(ui: Ui) -> None:
    """A probe cuts a report over the server's memory budget (processes that
    hold no socket first); before, only the probe's log on that host said so,
    and the graph showed the host as if it were all of it."""
    budget = MemoryBudget(limit=1024**2, history=3600.0, process_history=900.0)
    report = decode_report(host_report(0, timestamp=time.time(), containers=0, processes=3000, connections=10,
                                       peers=[1]))
    body, dropped = encode_report(report, budget=budget)  # as the probe sends it
    assert dropped > 0
    response = httpx.post(f"{ui.server.base_url}/api/v1/reports", content=body, timeout=10,
                          headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 202, response.text
    ui.open("?node=host%3Ahost-0")
    ui.page.wait_for_selector("#details[data-state=loaded][data-node='host:host-0'] [data-left-out]")
    assert ui.page.inner_text("[data-left-out]") == (
        f"This host's report was cut to fit the server's limits: {dropped} processes left out. Raise the "
        "server's --agent-memory-budget or --max-body-size to see all of it.")
    assert "left_out" not in ui.page.inner_text("#details-body")  # in words, not also as a key

    post_report(ui.server, 0, containers=0, processes=3, connections=0)  # whole again: said no more
    ui.page.wait_for_selector("[data-left-out]", state="detached")


def test_a_hosts_details_say_no_history_is_known_before_the_embedded_server_started(ui: Ui) -> None:
    """Its sparklines were empty up to the server's start (a restart loses the
    history without a report bus), as if the host had been away."""
    post_report(ui.server, 0, containers=0, processes=1, connections=0)
    ui.open("?node=host%3Ahost-0")
    ui.page.wait_for_selector("#details[data-state=loaded][data-node='host:host-0'] [data-history-since]")
    said = ui.page.inner_text("[data-history-since]")
    assert said.startswith("No history before ") and "the server started then" in said


def test_a_host_whose_probe_could_not_see_all_of_it_says_what_and_what_to_grant(ui: Ui) -> None:
    """A probe run as a user without the rights to read other processes'
    descriptors (or under hidepid, or in a container's PID namespace) sent a
    report that looked complete: the host's details now say what is missing."""
    body = host_report(0, timestamp=time.time(), containers=0, processes=2, connections=0)
    body["gaps"] = {"unowned_sockets": 14, "hidden_threads": 0, "own_pid_namespace": True,
                    "own_network_namespace": False, "unreadable": ["memory"]}
    response = httpx.post(f"{ui.server.base_url}/api/v1/reports", json=body, timeout=10)
    assert response.status_code == 202, response.text
    ui.open("?node=host%3Ahost-0")
    ui.page.wait_for_selector("#details[data-state=loaded][data-node='host:host-0'] [data-gap]")
    said = ui.page.locator("[data-gap]").all_inner_texts()
    assert len(said) == 3
    assert said[0].startswith("This host's probe runs in a PID namespace of its own") and "--pid=host" in said[0]
    assert said[1].startswith("14 sockets of this host came without their processes") and "CAP_SYS_PTRACE" in said[1]
    assert said[2].startswith("This host's probe could not read or measure its memory")
    assert "gaps" not in ui.page.inner_text("#details-body")  # in words, not also as a key
