"""The processes view at scale, as Weave Scope's "application processes" showed
it: processes of one name on one host are one node (the server's
processes-by-name view), kernel threads are hidden, and both are toggles kept
in the URL (ungrouped: the server's processes view)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from tests.synthetic import host_report

from .conftest import Ui

# What psutil reports for kernel threads: kthreadd (pid 2) and its children, no command line.
KERNEL_THREADS = [
    {"pid": 2, "ppid": 0, "name": "kthreadd", "user": "root", "status": "sleeping"},
    {"pid": 3, "ppid": 2, "name": "rcu_gp", "user": "root", "status": "idle"},
    {"pid": 9, "ppid": 2, "name": "kworker/0:1", "user": "root", "status": "idle"},
]
KERNEL_IDS = {f"process:host-0:{p['pid']}" for p in KERNEL_THREADS}


def report_processes(ui: Ui, processes: int, extra: Sequence[dict[str, Any]] = ()) -> None:
    """Host 0 with ``processes`` synthetic processes, named worker-0 .. worker-12
    in turn (pid 1000 + n is worker-(n % 13)), and ``extra`` ones."""
    body = host_report(0, timestamp=time.time(), containers=2, processes=processes, connections=0)
    body["processes_info"]["processes"] += list(extra)
    response = httpx.post(f"{ui.server.base_url}/api/v1/reports", json=body, timeout=10)
    assert response.status_code == 202, response.text


def table_rows(ui: Ui) -> dict[str, list[str]]:
    """The table's rows in sight: node id -> its cells' text."""
    return ui.page.evaluate("() => Object.fromEntries([...document.querySelectorAll('#table-body .tr')]"
                            ".map((row) => [row.dataset.id, [...row.querySelectorAll('.td')].map((c) => c.textContent)]))")


def wait_for_counts(ui: Ui, text: str) -> None:
    ui.page.wait_for_function("(text) => document.querySelector('#counts').textContent === text", arg=text)


def test_kernel_threads_are_hidden_until_asked_for_and_the_choice_is_in_the_url(ui: Ui) -> None:
    report_processes(ui, 4, KERNEL_THREADS)
    ui.open("?view=processes&mode=table")
    wait_for_counts(ui, "4 nodes")  # grouped: no kernel threads in groups, and no toggle for them
    assert not ui.node_ids() & KERNEL_IDS and ui.page.is_hidden("#show-kernel")
    ui.page.uncheck("#group-by-name")
    # Grouped and ungrouped both count 4 nodes: the ungrouped view is there once it says what it hides.
    ui.page.wait_for_function("() => document.querySelector('#kernel-count').textContent === '(3 hidden)'")
    wait_for_counts(ui, "4 nodes")
    assert not ui.node_ids() & KERNEL_IDS
    assert ui.page.is_visible("#show-kernel") and not ui.page.is_checked("#show-kernel")

    ui.page.check("#show-kernel")
    ui.wait_for_nodes(KERNEL_IDS)
    wait_for_counts(ui, "7 nodes")
    assert "kworker/0:1" in {cells[0] for cells in table_rows(ui).values()}
    shared = ui.page.url
    assert parse_qs(urlparse(shared).query)["kthreads"] == ["1"]

    ui.page.goto(shared)  # the same view in a new load, as someone given the link sees it
    ui.page.wait_for_selector("html[data-ready=true]")
    ui.wait_for_nodes(KERNEL_IDS)
    assert ui.page.is_checked("#show-kernel")
    ui.page.uncheck("#show-kernel")
    wait_for_counts(ui, "4 nodes")
    assert "kthreads" not in ui.page.url


def test_processes_are_grouped_by_name_until_the_toggle_ungroups_them(ui: Ui) -> None:
    report_processes(ui, 26)  # worker-0 .. worker-12, two processes each
    ui.open("?view=processes&mode=table")
    groups = {f"process_group:host-0:worker-{n}" for n in range(13)}
    ui.wait_for_nodes(groups)
    wait_for_counts(ui, "13 nodes")
    assert ui.page.is_checked("#group-by-name")
    assert any("view=processes-by-name" in url for url in ui.sockets)  # grouped by the server
    rows = table_rows(ui)
    # pids 1001 and 1014: CPU (n % 17) * 0.5 = 0.5 % and 7 %, summed; the group sits on its host.
    assert rows["process_group:host-0:worker-1"][:3] == ["worker-1 (2)", "sleeping", "host-0"]
    assert "7.5%" in rows["process_group:host-0:worker-1"]

    ui.page.uncheck("#group-by-name")
    processes = {f"process:host-0:{1000 + p}" for p in range(26)}
    ui.wait_for_nodes(processes)
    wait_for_counts(ui, "26 nodes")
    assert not ui.node_ids() & groups
    shared = ui.page.url
    assert parse_qs(urlparse(shared).query)["group"] == ["0"]

    ui.page.goto(shared)
    ui.page.wait_for_selector("html[data-ready=true]")
    wait_for_counts(ui, "26 nodes")
    assert not ui.page.is_checked("#group-by-name")
    ui.page.check("#group-by-name")
    wait_for_counts(ui, "13 nodes")
    assert "group=" not in ui.page.url


def test_a_live_update_changes_a_groups_count(ui: Ui) -> None:
    report_processes(ui, 26)
    ui.open("?view=processes&mode=table")
    ui.wait_for_nodes({"process_group:host-0:worker-0", "process_group:host-0:worker-1"})
    ui.page.evaluate("window.sameDocument = true")

    report_processes(ui, 27)  # a third worker-0 (pid 1026)
    ui.page.wait_for_function("() => [...document.querySelectorAll('#table-body .tr .td:first-child')]"
                              ".some((cell) => cell.textContent === 'worker-0 (3)')")
    report_processes(ui, 14)  # worker-0 back to two (1000, 1013); worker-1 down to one (1001)
    ui.page.wait_for_function("() => [...document.querySelectorAll('#table-body .tr .td:first-child')]"
                              ".some((cell) => cell.textContent === 'worker-1')")
    rows = table_rows(ui)
    assert rows["process_group:host-0:worker-0"][0] == "worker-0 (2)"
    assert rows["process_group:host-0:worker-1"][0] == "worker-1"  # a group of one: its name
    wait_for_counts(ui, "13 nodes")
    report_processes(ui, 12)  # worker-12 gone
    wait_for_counts(ui, "12 nodes")
    assert ui.page.evaluate("window.sameDocument") is True  # live, no reload


def test_a_search_for_a_process_shows_its_group_whose_details_list_its_processes(ui: Ui) -> None:
    report_processes(ui, 26)
    ui.open("?view=processes")
    group = "process_group:host-0:worker-0"
    ui.wait_for_nodes({group})
    ui.page.fill("#search", "pids=1013")  # the second worker-0
    wait_for_counts(ui, "1 of 13 nodes")

    ui.click_node(group)
    ui.page.wait_for_selector(f"#details[data-state=loaded][data-node='{group}']")
    assert ui.page.inner_text("#details-title") == "worker-0"
    # Summed resident sizes count shared pages once per process: said beside the sums.
    assert "shared pages count once per process" in ui.page.inner_text("#details .metrics")
    links = ui.page.locator("[data-list=processes] a")
    assert sorted(links.evaluate_all("(links) => links.map((a) => a.dataset.node)")) == [
        "process:host-0:1000", "process:host-0:1013"]
    assert "node=process_group%3Ahost-0%3Aworker-0" in ui.page.url

    ui.page.click("[data-list=processes] a[data-node='process:host-0:1013']")  # a process: from the server
    ui.page.wait_for_selector("#details[data-state=loaded][data-node='process:host-0:1013']")
    assert "1013" in ui.page.inner_text("#details-body")
    assert parse_qs(urlparse(ui.page.url).query)["view"] == ["processes"]
