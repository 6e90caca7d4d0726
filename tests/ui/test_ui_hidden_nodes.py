"""An empty page where reads are protected (``--protect-reads``): a plain
probe, as the server's local probe is, reports unsigned and is hidden from
every user, so the page does not tell them to start one that way. An ADMIN
whose stats show the server's nodes hears that they exist and what shows
them: enrolling the probe in a deployment of their tenant, or
``--show-unassigned-agents true``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import attrs
import httpx
import pytest

from tests.server_process import ServerProcess
from trioscope.config import Settings
from trioscope.server import open_reads_warning

from .conftest import Ui, post_report

PROTECTED = ["--protect-reads", "true"]
LOCAL_PROBE = {"TRIOSCOPE_AGENTS_LOCAL_PROBE": "true"}  # as `trioscope serve` runs by default


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    args, env = getattr(request, "param", (PROTECTED, None))
    with ServerProcess(args, env=env) as process:
        yield process


def empty_page(ui: Ui) -> dict[str, str]:
    """The empty page's texts, once the stats have answered (the advice needs them)."""
    ui.page.wait_for_selector("#empty:not([hidden])")
    ui.page.wait_for_function("() => document.querySelector('#stat-nodes').textContent !== '–'")
    return ui.page.evaluate("() => Object.fromEntries(['title', 'hidden', 'lead', 'command', 'note'].map((part) =>"
                            " { const element = document.getElementById(`empty-${part}`);"
                            " return [part, element.hidden ? '' : element.textContent]; }))")


def server_nodes(server: ServerProcess, token: str) -> int:
    """The whole server's node count, as an ADMIN's stats give it (0 until the local probe reported)."""
    stats = httpx.get(f"{server.base_url}/api/v1/query/stats", headers={"Authorization": f"Bearer {token}"}).json()
    return int(stats["server"]["topology"]["nodes"])


@pytest.mark.parametrize("server", [(PROTECTED, LOCAL_PROBE)], indirect=True)
def test_an_admin_who_sees_none_of_the_servers_nodes_hears_what_shows_them_not_to_start_a_probe(ui: Ui) -> None:
    token = ui.server.user_token("root", "acme", "ADMIN")
    ui.open(token=token)
    # The reviewer's case: the local probe's nodes are the server's, none of them acme's.
    ui.page.wait_for_function("() => document.querySelector('#empty-title').textContent === 'No reports you can see'")
    nodes = server_nodes(ui.server, token)
    shown = empty_page(ui)
    assert re.search(r"The server holds \d+ nodes from 1 agent, none from a probe enrolled in a deployment of "
                     r"your tenant \(acme\)", shown["hidden"]), shown
    assert nodes > 0 and "--protect-reads" in shown["hidden"]
    assert "enrol it in a deployment of acme" in shown["lead"] and "/api/v1/users/root/deployments" in shown["lead"]
    assert shown["command"] == ("TRIOSCOPE_PROBE_ENROLLMENT_TOKEN=TOKEN "
                                f".venv/bin/trioscope-probe --server {ui.server.base_url} --deployment-hash HASH")
    assert "--show-unassigned-agents true" in shown["note"] and "local probe" in shown["note"]
    assert ui.page.inner_text("#stat-nodes") == "0"


@pytest.mark.parametrize("server", [([*PROTECTED, "--show-unassigned-agents", "true"], LOCAL_PROBE)], indirect=True)
def test_the_option_the_advice_names_shows_the_local_probes_nodes(ui: Ui) -> None:
    ui.open(role="ADMIN")
    ui.page.wait_for_function("() => trioscope.nodeIds().some((id) => id.startsWith('host:'))")  # this machine
    ui.page.wait_for_function("() => Number(document.querySelector('#stat-nodes').textContent) > 0")
    assert ui.page.is_hidden("#empty")


def test_an_admin_of_a_protected_server_without_reports_is_shown_how_to_start_an_enrolled_probe(ui: Ui) -> None:
    ui.open(role="ADMIN")
    shown = empty_page(ui)
    assert shown["title"] == "No reports yet" and shown["hidden"] == ""
    assert shown["command"].startswith("TRIOSCOPE_PROBE_ENROLLMENT_TOKEN=TOKEN ")
    assert shown["command"].endswith(" --deployment-hash HASH")
    assert "--show-unassigned-agents true" in shown["note"]
    post_report(ui.server, 0)  # unsigned: hidden here, so the advice stays, and now says what the server holds
    ui.page.wait_for_function("() => document.querySelector('#empty-title').textContent === 'No reports you can see'")
    nodes = server_nodes(ui.server, ui.server.user_token("root", "acme", "ADMIN"))
    assert f"The server holds {nodes} nodes from 1 agent" in ui.page.inner_text("#empty-hidden")


def test_a_user_whose_stats_cannot_say_whether_reads_are_protected_is_told_what_then_applies(ui: Ui) -> None:
    ui.open(role="VIEWER", user="vera", tenant="newco")  # no `server` figures: only an ADMIN gets them
    shown = empty_page(ui)
    assert shown["title"] == "No reports yet"
    assert shown["command"] == f".venv/bin/trioscope-probe --server {ui.server.base_url}"
    assert shown["note"].startswith("If the server protects reads (--protect-reads), you see only the probes "
                                    "enrolled in a deployment of your tenant (newco)")
    assert "an OPERATOR of newco creates one" in shown["note"]  # a VIEWER may not create a deployment


@pytest.mark.parametrize("server", [([], None)], indirect=True)
def test_an_admin_where_reads_are_open_is_told_to_start_a_probe_as_before(ui: Ui) -> None:
    ui.open(role="ADMIN")
    shown = empty_page(ui)
    assert shown == {"title": "No reports yet", "hidden": "",
                     "lead": "trioscope shows what probes report. Start one on any host you want to see:",
                     "command": f".venv/bin/trioscope-probe --server {ui.server.base_url}", "note": ""}


def test_the_warning_that_recommends_protecting_reads_says_it_hides_unsigned_probes() -> None:
    defaults = Settings.defaults()
    settings = attrs.evolve(defaults, server=attrs.evolve(defaults.server, host="0.0.0.0"))
    warning = open_reads_warning(settings)
    assert warning is not None and "--protect-reads true" in warning
    assert "unsigned probes' nodes, the local probe's included, only with --show-unassigned-agents true" in warning
