"""The alerts list: active system_alert events of /ws/user, shown from when
they fire until they resolve, in a real Chromium against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server_process import ServerProcess

from .conftest import Ui

SECRET = "alertmanager-webhook-secret-for-ui-tests-0123456789"


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with ServerProcess(env={"TRIOSCOPE_ALERTS_WEBHOOK_SECRET": SECRET}) as process:
        yield process


def send(server: ServerProcess, status: str, tenant: str = "acme", fingerprint: str = "f00d000000000001",
         name: str = "DiskFull", severity: str = "critical") -> None:
    alert: dict[str, Any] = {
        "status": status, "labels": {"alertname": name, "severity": severity, "tenant": tenant},
        "annotations": {"summary": f"{name} on web-1"}, "startsAt": "2026-12-02T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint}
    answer = httpx.post(f"{server.base_url}/api/v1/alerts/webhook", headers={"Authorization": f"Bearer {SECRET}"},
                        json={"version": "4", "status": status, "alerts": [alert]}, timeout=10)
    assert answer.status_code == 200, answer.text


def shown(ui: Ui) -> list[str]:
    return ui.page.eval_on_selector_all("#alerts-list li", "items => items.map(i => i.dataset.alert)")


def first_alert_shown(ui: Ui) -> None:
    """Send the DiskFull alert once the page's /ws/user socket listens, and wait until the page shows it."""
    ui.wait_for_events()
    send(ui.server, "firing")
    ui.page.wait_for_selector("#alerts-list li[data-alert=DiskFull]")


def test_alerts_are_listed_while_they_fire(ui: Ui) -> None:
    send(ui.server, "firing", fingerprint="f00d000000000009", name="EarlyBird", severity="warning")
    ui.open(role="VIEWER")
    # Fired before the page opened: listed from GET /api/v1/alerts.
    ui.page.wait_for_selector("#alerts-list li[data-alert=EarlyBird]")
    # The bar takes its own height; the view keeps the room left (the page's
    # grid gave the bar the stretching row, the view its content's height).
    view, bar, window = ui.page.evaluate("""() => [document.querySelector('main.content').getBoundingClientRect().height,
        document.querySelector('#alerts').getBoundingClientRect().height, window.innerHeight]""")
    assert view > window / 2 > bar, (view, bar, window)
    send(ui.server, "resolved", fingerprint="f00d000000000009", name="EarlyBird", severity="warning")
    ui.page.wait_for_selector("#alerts", state="hidden")
    first_alert_shown(ui)
    send(ui.server, "firing", fingerprint="f00d000000000002", name="QueueBacklog", severity="warning")
    send(ui.server, "firing", tenant="someone-else", fingerprint="f00d000000000003", name="NotYours")
    ui.page.wait_for_function("() => document.querySelector('#alerts').dataset.count === '2'")
    assert ui.page.is_visible("#alerts")
    assert shown(ui) == ["QueueBacklog", "DiskFull"]  # newest first; the other tenant's is not here
    critical = ui.page.locator("#alerts-list li[data-alert=DiskFull]")
    assert "severity-critical" in (critical.get_attribute("class") or "")
    assert "DiskFull on web-1" in critical.inner_text()

    send(ui.server, "resolved")
    ui.page.wait_for_function("() => document.querySelector('#alerts').dataset.count === '1'")
    assert shown(ui) == ["QueueBacklog"]
    ui.page.click("#alerts-list li[data-alert=QueueBacklog] .dismiss")
    ui.page.wait_for_selector("#alerts", state="hidden")


def test_an_outage_of_alerts_leaves_the_view_its_room_and_the_page_its_width(ui: Ui) -> None:
    """45 alerts took every pixel of the graph (0 px left to it), and one alert
    of a long unbroken text widened the page to 3,836 px, the graph with it."""
    for number in range(45):
        send(ui.server, "firing", fingerprint=f"f00d{number:012d}", name=f"AgentOffline{number}")
    path = "/var/lib/docker/overlay2/" + "0123456789abcdef" * 30 + "/merged"
    alert = {"status": "firing", "labels": {"alertname": "DiskFull", "severity": "critical", "tenant": "acme"},
             "annotations": {"summary": f"{path} is full"}, "startsAt": "2026-12-02T10:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "f00d0000000000ff"}
    answer = httpx.post(f"{ui.server.base_url}/api/v1/alerts/webhook", headers={"Authorization": f"Bearer {SECRET}"},
                        json={"version": "4", "status": "firing", "alerts": [alert]}, timeout=10)
    assert answer.status_code == 200, answer.text
    ui.open(role="VIEWER")
    ui.page.wait_for_function("() => document.querySelector('#alerts').dataset.count === '46'")
    view, bar, window, width, page_width = ui.page.evaluate("""() => [
        document.querySelector('main.content').getBoundingClientRect().height,
        document.querySelector('#alerts').getBoundingClientRect().height, window.innerHeight,
        window.innerWidth, document.scrollingElement.scrollWidth]""")
    assert view > window / 2 > bar, (view, bar, window)
    assert page_width <= width, (page_width, width)
    # The bar scrolls to its oldest alert.
    ui.page.locator("#alerts-list li[data-alert=AgentOffline0]").scroll_into_view_if_needed()
    assert ui.page.is_visible("#alerts-list li[data-alert=AgentOffline0]")


def test_only_newly_firing_alerts_are_read_out_and_dismissing_one_keeps_the_focus_in_the_list(ui: Ui) -> None:
    """The list was the live region, rebuilt at every event: each new alert read out
    every alert again; its Dismiss buttons were all "Dismiss", and a dismiss left
    the focus on <body>."""
    ui.open(role="VIEWER")
    first_alert_shown(ui)
    announcer = "#alerts-announcer[role=status]"
    ui.page.wait_for_function(f"() => document.querySelector('{announcer}').textContent.includes('DiskFull')")
    assert ui.page.get_attribute("#alerts", "role") is None and ui.page.locator("#alerts [aria-live]").count() == 0
    ui.page.evaluate("""() => { window.inserted = 0; window.disk = document.querySelector('#alerts-list li[data-alert=DiskFull]');
      new MutationObserver((changes) => { for (const c of changes) window.inserted += c.addedNodes.length; })
        .observe(document.querySelector('#alerts-list'), { childList: true }); }""")
    send(ui.server, "firing", fingerprint="f00d000000000002", name="QueueBacklog", severity="warning")
    ui.page.wait_for_function(f"() => document.querySelector('{announcer}').textContent.includes('QueueBacklog')")
    assert "DiskFull" not in ui.page.text_content(announcer)
    assert ui.page.evaluate("[window.inserted, window.disk.isConnected]") == [1, True]  # DiskFull's item stayed

    names = ui.page.eval_on_selector_all("#alerts-list .dismiss", "bs => bs.map((b) => b.getAttribute('aria-label'))")
    assert names == ["Dismiss QueueBacklog: QueueBacklog on web-1", "Dismiss DiskFull: DiskFull on web-1"]
    severities = ui.page.eval_on_selector_all("#alerts-list li", """items => items.map((i) =>
        [i.querySelector('.severity').textContent, getComputedStyle(i, '::before').content])""")
    assert [s[0] for s in severities] == ["warning", "critical"] and severities[0][1] != severities[1][1]  # said and shaped
    ui.page.focus("#alerts-list li[data-alert=QueueBacklog] .dismiss")
    ui.page.keyboard.press("Enter")
    ui.page.wait_for_function("() => document.activeElement.closest('li[data-alert=DiskFull]') !== null")
    ui.page.keyboard.press("Enter")  # the last one: the focus goes to the view, not <body>
    ui.page.wait_for_selector("#alerts", state="hidden")
    assert ui.page.evaluate("document.activeElement.tagName") == "MAIN"


def test_an_alerts_start_reads_as_the_users_local_time(ui: Ui) -> None:
    """It read "since 2026-12-02T10:00:00Z"; a <time> keeps that for machines."""
    cdp = ui.page.context.new_cdp_session(ui.page)
    cdp.send("Emulation.setTimezoneOverride", {"timezoneId": "Europe/Paris"})
    cdp.send("Emulation.setLocaleOverride", {"locale": "en-GB"})
    ui.open()
    first_alert_shown(ui)
    time = ui.page.locator("#alerts-list li[data-alert=DiskFull] time")
    assert time.get_attribute("datetime") == "2026-12-02T10:00:00Z"
    assert time.inner_text() == "since 2 Dec 2026, 11:00"  # Paris is an hour ahead in winter
