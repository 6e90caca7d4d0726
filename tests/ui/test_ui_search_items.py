"""A search word ``key=value`` finds the nodes with that item whole (a pid, a
name, a label's value), not every node whose item has it as a substring: a
search for ``pids=<pid>`` shows that process's group alone. Other words are
found anywhere, as before."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.synthetic import host_report

from .conftest import Ui

# Reported by a reviewer: pids=1 showed podman, process_api, python3 (10) and
# trioscope-probe; only process_api holds pid 1.
PROCESSES = [("process_api", [1]), ("python3", list(range(10, 20))), ("podman", [100]),
             ("trioscope-probe", [1001]), ("worker", [2000])]


def _process(name: str, pid: int) -> dict[str, Any]:
    return {"pid": pid, "ppid": 0 if pid == 1 else 1, "name": name, "cmdline": f"/usr/bin/{name} --port=8080",
            "user": "app", "cpu_percent": 0.5, "memory_rss_bytes": 20 * 1048576, "threads": 4, "status": "sleeping"}


def report(ui: Ui, *, containers: int = 0) -> None:
    body = host_report(0, timestamp=time.time(), containers=containers, processes=0, connections=0)
    body["processes_info"]["processes"] = [_process(name, pid) for name, pids in PROCESSES for pid in pids]
    response = httpx.post(f"{ui.server.base_url}/api/v1/reports", json=body, timeout=10)
    assert response.status_code == 202, response.text


def search(ui: Ui, text: str, counts: str) -> set[str]:
    """Type ``text`` in the search box and wait until the page has drawn what it
    finds (the search in the URL, nothing left to draw) and counts ``counts``;
    the ids of the nodes the table then shows."""
    ui.page.fill("#search", text)
    ui.page.wait_for_function("([text, counts]) => new URLSearchParams(location.search).get('q') === text"
                              " && trioscope.idle() && document.querySelector('#counts').textContent === counts",
                              arg=[text, counts])
    return set(ui.page.evaluate("() => [...document.querySelectorAll('#table-body .tr')].map((row) => row.dataset.id)"))


def test_a_search_for_a_pid_shows_the_group_that_holds_it_and_no_other(ui: Ui) -> None:
    report(ui)
    ui.open("?view=processes&mode=table")
    groups = {f"process_group:host-0:{name}" for name, _ in PROCESSES}
    ui.wait_for_nodes(groups)
    assert search(ui, "pids=1", "1 of 5 nodes") == {"process_group:host-0:process_api"}
    assert search(ui, "PIDS=1001", "1 of 5 nodes") == {"process_group:host-0:trioscope-probe"}
    assert search(ui, "pids=15", "1 of 5 nodes") == {"process_group:host-0:python3"}  # one of a group's ten
    assert search(ui, "pids=3", "0 of 5 nodes") == set()
    # A group's count of processes in a state is an item too: python3's ten are not one.
    assert search(ui, "sleeping=10", "1 of 5 nodes") == {"process_group:host-0:python3"}
    assert "process_group:host-0:python3" not in search(ui, "sleeping=1", "4 of 5 nodes")
    # Words without "=" are found anywhere, as before; and "key=", typed so far, finds every node with the key.
    assert search(ui, "100", "2 of 5 nodes") == {  # podman's 100, trioscope-probe's 1001
        "process_group:host-0:podman", "process_group:host-0:trioscope-probe"}
    search(ui, "pids=", "5 of 5 nodes")

    ui.page.uncheck("#group-by-name")  # one node per process: its pid and user are items too
    ui.wait_for_nodes({"process:host-0:1", "process:host-0:1001"})
    assert search(ui, "pid=1", "1 of 14 nodes") == {"process:host-0:1"}
    search(ui, "user=ap", "0 of 14 nodes")
    search(ui, "user=app", "14 of 14 nodes")


def test_a_word_with_an_equals_sign_but_no_key_of_the_node_is_found_anywhere(ui: Ui) -> None:
    ui.open()
    found = ui.page.evaluate("""async () => {
      const { compileFilter } = await import('/ui/js/filter.js');
      const node = { id: 'process:h:7', type: 'process', label: 'server', parent: 'host:h', status: 'running',
                     metadata: { pid: 7, cmdline: 'server --port=8080', env: 'a\\npid=8' }, metrics: {} };
      return ['--port=8080', 'port=8080', 'pid=7', 'cmdline=server', 'pid=8'].map((q) => compileFilter({ q })(node));
    }""")
    # A command line's flag is text; "pid=7" is the pid, "cmdline=server" is not the whole
    # command line, and a value's newline makes no item of its own (the env's "pid=8").
    assert found == [True, True, True, False, False]


def test_a_search_for_a_name_or_a_label_value_matches_it_whole(ui: Ui) -> None:
    report(ui, containers=12)  # svc-0-0 .. svc-0-11; the even ones labelled io.kubernetes.pod.name=web-0-<n>
    ui.open("?view=containers&mode=table")
    ui.page.wait_for_function("() => document.querySelector('#counts').textContent === '12 nodes'")
    [one] = search(ui, "name=svc-0-1", "1 of 12 nodes")  # not svc-0-10 nor svc-0-11
    assert ui.page.inner_text(f"#table-body .tr[data-id='{one}'] .td") == "svc-0-1"
    search(ui, "io.kubernetes.pod.name=web-0-1", "0 of 12 nodes")  # web-0-10's label is another value
    search(ui, "io.kubernetes.pod.name=web-0-10", "1 of 12 nodes")
    search(ui, "app=web-0", "3 of 12 nodes")  # containers 0, 4 and 8
    search(ui, "svc-0-1", "3 of 12 nodes")  # a word without "=": anywhere, as documented
