"""The page from the keyboard, for screen readers and against hostile names:
the table's headers sort and its rows move with keys, focus follows its node
while rows re-sort (and shows where it waits while its row is out of sight),
the counts are read out after a search, long names wrap in the details panel,
control and bidi characters show as escapes, and the sign-in reads what people
paste."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, quote, urlparse

import httpx
import trio

from tests.synthetic import container_hex, host_report

from .conftest import Ui, post_report
from .test_ui import enrolled_probe, enrolled_running

FOCUSED = "() => { const e = document.activeElement; return [e.dataset.id || null, e.querySelector('.td') ? e.querySelector('.td').textContent : e.tagName]; }"


def container(index: int, c: int) -> str:
    return f"container:{container_hex(f'agent-{index}', c)}"


def test_the_table_is_usable_from_the_keyboard_and_focus_follows_the_node(ui: Ui) -> None:
    for index in range(3):  # 30 containers: CPU 1.5 + c + 10 * index
        post_report(ui.server, index, containers=10, processes=2, connections=0, container_load=10.0 * index)
    ui.open("?view=containers&mode=table")
    ui.page.wait_for_function("() => document.querySelector('#counts').textContent === '30 nodes'")
    header = ui.page.locator(".th[data-key=cpu_percent] button")
    header.focus()
    ui.page.keyboard.press("Enter")
    ui.page.keyboard.press("Enter")  # descending, and the focus is still on its button
    ui.page.wait_for_selector(".th[data-key=cpu_percent][aria-sort=descending]")  # at the page's next draw
    ui.page.wait_for_function("() => document.querySelector('#table-body .tr .td').textContent === 'svc-2-9'")

    ui.page.focus("#table-body .tr >> nth=0")
    assert ui.page.evaluate(FOCUSED)[1] == "svc-2-9"
    ui.page.keyboard.press("ArrowDown")
    assert ui.page.evaluate(FOCUSED)[1] == "svc-2-8"
    ui.page.keyboard.press("End")
    assert ui.page.evaluate(FOCUSED)[1] == "svc-0-0"  # the idlest
    ui.page.keyboard.press("PageUp")
    assert ui.page.evaluate(FOCUSED)[1] not in ("svc-0-0", "svc-0-1")
    ui.page.keyboard.press("Home")
    assert ui.page.evaluate(FOCUSED)[1] == "svc-2-9"
    ui.page.keyboard.press("Tab")  # the rows are one Tab stop: the next one is out of the table
    assert ui.page.evaluate("() => !document.activeElement.closest('#table')")

    idle = container(0, 0)
    ui.page.focus(f"#table-body .tr[data-id='{idle}']")
    post_report(ui.server, 0, containers=10, processes=2, connections=0, container_load=100.0)  # host 0's are busiest
    ui.page.wait_for_function("() => document.querySelector('#table-body .tr .td').textContent === 'svc-0-9'")
    assert ui.page.evaluate(FOCUSED) == [idle, "svc-0-0"]  # the focus moved with its node
    ui.page.keyboard.press("Enter")
    ui.page.wait_for_selector(f"#details[data-state=loaded][data-node='{idle}']")
    assert parse_qs(urlparse(ui.page.url).query)["node"] == [idle]


def test_long_names_wrap_in_the_details_and_metric_headers_keep_apart(ui: Ui) -> None:
    body = host_report(0, timestamp=time.time(), containers=2, processes=2, connections=0)
    body["docker_info"]["containers"][0]["name"] = "/" + "x" * 250
    assert httpx.post(f"{ui.server.base_url}/api/v1/reports", json=body, timeout=10).status_code == 202
    ui.open("?view=hosts&node=host%3Ahost-0")
    ui.page.wait_for_selector("#details[data-state=loaded] [data-list=children] a")
    assert ui.page.evaluate("document.querySelector('#details').getBoundingClientRect().width") <= 381
    ui.page.click("[data-mode=table]")
    ui.page.wait_for_selector(".th.num")
    paddings = ui.page.evaluate("[...document.querySelectorAll('.th.num, .td.num')].map((e) => getComputedStyle(e).paddingRight)")
    assert len(set(paddings)) == 1 and paddings[0] != "0px"  # headers as apart as the numbers under them


def test_control_and_bidi_characters_in_names_show_as_escapes(ui: Ui) -> None:
    body = host_report(0, timestamp=time.time(), containers=1, processes=1, connections=0)
    body["docker_info"]["containers"][0]["name"] = "/evil\u202egnp.exe\u200b\nx"
    assert httpx.post(f"{ui.server.base_url}/api/v1/reports", json=body, timeout=10).status_code == 202
    node = container(0, 0)
    ui.open(f"?view=containers&mode=table&node={node}")
    ui.page.wait_for_selector("#details[data-state=loaded]")
    shown = "evil\\u202Egnp.exe\\u200B\\u000Ax"
    assert ui.page.inner_text("#table-body .tr .td") == shown
    assert ui.page.inner_text("#details-title") == shown


def test_sign_in_takes_a_pasted_bearer_token_and_says_when_a_token_expired(ui: Ui) -> None:
    ui.expected.append("status of 401")
    ui.page.goto(ui.server.base_url + "/")
    ui.page.wait_for_selector("#signin[open]")
    ui.page.fill("#signin-token", ui.server.user_token(ttl=60, issued_ago=120))
    ui.page.click("#signin-submit")
    ui.page.wait_for_function("() => document.querySelector('#signin-error').textContent.includes('expired at')")
    ui.page.fill("#signin-token", "not-a-token")
    ui.page.click("#signin-submit")
    ui.page.wait_for_function("() => document.querySelector('#signin-error').textContent.includes('not valid')")
    assert "expired" not in ui.page.inner_text("#signin-error")
    ui.page.fill("#signin-token", f"Bearer {ui.server.user_token()}")
    ui.page.click("#signin-submit")
    ui.page.wait_for_selector("html[data-ready=true]")
    assert ui.page.inner_text("#who") == "alice · acme · OPERATOR"


def test_the_counts_are_announced_after_a_search_and_not_after_a_diff(ui: Ui) -> None:
    for index in range(2):
        post_report(ui.server, index, containers=0, processes=1, connections=0)
    ui.open()
    ui.wait_for_nodes({"host:host-0", "host:host-1"})
    assert ui.page.inner_text("#counts-announcer") == ""  # the view's own counts: not read out
    ui.page.fill("#search", "host-1")
    ui.page.wait_for_function("() => document.querySelector('#counts-announcer').textContent === '1 of 2 nodes'")
    assert ui.page.get_attribute("#counts-announcer", "role") == "status"
    post_report(ui.server, 2, containers=0, processes=1, connections=0)  # a diff changes the counts
    ui.page.wait_for_function("() => document.querySelector('#counts').textContent === '1 of 3 nodes'")
    ui.page.wait_for_function("() => trioscope.idle()")
    assert ui.page.inner_text("#counts-announcer") == "1 of 2 nodes"


def test_the_scroller_holding_the_focus_of_a_row_out_of_sight_shows_it(ui: Ui) -> None:
    post_report(ui.server, 0, containers=0, processes=120, connections=0)
    ui.open("?view=processes&group=0&mode=table")
    ui.page.wait_for_function("() => document.querySelectorAll('#table-body .tr').length > 10")
    ui.page.focus("#table-body .tr >> nth=0")
    ui.page.evaluate("document.querySelector('#table-scroll').scrollTop = 1e6")  # the focused row scrolls away
    ui.page.wait_for_function("() => document.activeElement.id === 'table-scroll'")
    outline = ui.page.evaluate("(() => { const s = getComputedStyle(document.activeElement);"
                               " return [s.outlineStyle, s.outlineWidth]; })()")
    assert outline[0] != "none" and outline[1] != "0px"


def test_focus_stays_on_a_containers_control_while_its_details_refresh(ui: Ui) -> None:
    """The details are built anew at every refresh (every 15 s, and a second after
    each report of the node): a keyboard user was sent back to <body> each time."""
    _, agent = enrolled_probe(ui.server, {"Authorization": f"Bearer {ui.server.user_token('alice', 'acme', 'OPERATOR')}"})
    ui.open(f"?view=containers&mode=table&node={quote(enrolled_running())}")
    ui.page.wait_for_selector("[data-control=stop]")

    def refreshed() -> None:
        """A report of the container's host: the details are rebuilt (new Stop button)."""
        ui.page.evaluate("window.before = document.querySelector('[data-control=stop]')")
        post_report(ui.server, 0, signer=agent)
        ui.page.wait_for_function("() => document.querySelector('[data-control=stop]') !== window.before")

    focused = "() => [document.activeElement.dataset.control, 'follow' in document.activeElement.dataset]"
    ui.page.focus("[data-control=stop]")
    refreshed()
    assert ui.page.evaluate(focused) == ["stop", False]
    ui.page.focus("[data-follow]")
    refreshed()
    assert ui.page.evaluate(focused) == [None, True]
    # Stop's confirmation open while the button it came from is replaced: Escape
    # gives the focus to the new Stop button.
    ui.page.focus("[data-control=stop]")
    ui.page.keyboard.press("Enter")
    ui.page.wait_for_selector("#confirm[open]")
    refreshed()
    ui.page.keyboard.press("Escape")
    ui.page.wait_for_function("() => document.activeElement.dataset.control === 'stop'")
    assert ui.page.locator(".commands li").count() == 0  # cancelled: nothing sent


def test_a_narrow_window_keeps_every_control_in_reach_and_the_table_header_over_its_columns(ui: Ui) -> None:
    """At 375 px (a phone) and 640 px (200 % zoom) the top bar ran off the page (904 px
    wide, its last controls light on the light page), the details took the view's
    every pixel, and the table's header stayed put while its rows scrolled sideways."""
    post_report(ui.server, 0, containers=4, processes=2, connections=0)
    ui.page.set_viewport_size({"width": 375, "height": 667})
    ui.open(f"?view=containers&mode=table&node={quote(container(0, 1))}")
    ui.page.wait_for_selector("#details[data-state=loaded]")
    layout = ui.page.evaluate("""() => {
      const box = (s) => document.querySelector(s).getBoundingClientRect();
      const bar = box('.topbar');
      const outside = [...document.querySelectorAll('.topbar > :not([hidden]):not(.sr-only)')].filter((e) => {
        const b = e.getBoundingClientRect();
        return b.left < bar.left || b.right > bar.right || b.top < bar.top || b.bottom > bar.bottom; });
      return {page: document.scrollingElement.scrollWidth, window: innerWidth, bar: bar.width,
              outside: outside.map((e) => e.id || e.className), details: box('#details').width,
              stage: [box('#stage').width, box('#stage').height]}; }""")
    assert layout["page"] <= layout["window"], layout  # nothing to scroll sideways to
    assert layout["outside"] == [] and layout["bar"] <= layout["window"], layout  # all on the dark bar
    assert layout["details"] <= layout["window"] and min(layout["stage"]) > 100, layout

    ui.page.set_viewport_size({"width": 800, "height": 600})  # the details beside a table wider than its room
    ui.page.wait_for_function("() => document.querySelector('#table-scroll').scrollWidth > document.querySelector('#table-scroll').clientWidth")
    head_right, details_left = ui.page.evaluate("""() => [document.querySelector('.thead').getBoundingClientRect().right,
        document.querySelector('#details').getBoundingClientRect().left]""")
    assert head_right <= details_left + 1
    ui.page.evaluate("document.querySelector('#table-scroll').scrollLeft = 200")
    ui.page.wait_for_function("""() => { const left = (e) => Math.round(e.getBoundingClientRect().left);
      const head = [...document.querySelectorAll('.thead .th')].map(left);
      const row = [...document.querySelector('#table-body .tr').children].map(left);
      return head[0] < 0 && JSON.stringify(head) === JSON.stringify(row); }""")


def test_the_view_and_display_shown_are_marked(ui: Ui) -> None:
    """The top bar's own button style hid the pressed one's: all looked alike."""
    ui.open("?view=containers")
    looks = """(selector) => [...document.querySelectorAll(selector)].map((b) => {
      const s = getComputedStyle(b); return [b.getAttribute('aria-pressed'), s.backgroundColor + s.fontWeight]; })"""

    def marked(selector: str) -> list[str]:
        buttons = ui.page.evaluate(looks, selector)
        plain = {look for pressed, look in buttons if pressed == "false"}
        assert len(plain) == 1, buttons  # the others all look alike...
        return [pressed for pressed, look in buttons if look not in plain]  # ...and the pressed one apart

    assert marked("[data-view]") == ["true"] and marked("[data-mode]") == ["true"]
    ui.page.click("[data-mode=table]")
    ui.page.wait_for_selector("[data-mode=table][aria-pressed=true]")
    assert marked("[data-mode]") == ["true"]


def test_a_commands_outcome_and_the_follow_state_are_read_out(ui: Ui) -> None:
    """The commands list is rebuilt at each change (no live region can be it): a
    failed Stop, or a follow that started or ended, was shown and never said."""
    _, agent = enrolled_probe(ui.server, {"Authorization": f"Bearer {ui.server.user_token('alice', 'acme', 'OPERATOR')}"})
    ui.open(f"?view=containers&mode=table&node={quote(enrolled_running())}")
    ui.page.click("[data-control=stop]")
    ui.page.click("#confirm-ok")
    announcer = "#commands-announcer[role=status]"
    ui.page.wait_for_function(f"() => document.querySelector('{announcer}').textContent.startsWith('stop svc-0-1: queued')")

    async def agent_fails_it() -> None:
        async with httpx.AsyncClient() as client:
            polled = await agent.poll(client, timeout=10)
            assert polled is not None
            assert (await agent.report(client, polled.command_id, "failed", error="no such container")).status_code == 200

    trio.run(agent_fails_it)
    ui.page.wait_for_function(f"() => document.querySelector('{announcer}').textContent"
                              ".startsWith('stop svc-0-1: failed: no such container')")

    assert ui.page.text_content(".live-log-section h3") == "Live log"  # the checkbox is not in the heading's name
    ui.page.check("[data-follow]")
    state = ui.page.locator("[data-follow-state]")
    ui.page.wait_for_selector("[data-follow-state=following]")
    assert state.get_attribute("role") == "status" and state.inner_text() == "following"
    ui.page.uncheck("[data-follow]")
    ui.page.wait_for_selector("[data-follow-state=stopped]")


def test_health_shows_by_shape_not_by_colour_alone(ui: Ui) -> None:
    """Hosts at 95 % and 80 % CPU showed "● up" as a healthy one did: only the dot's colour differed."""
    for index, cpu in enumerate((20.0, 80.0, 95.0)):
        post_report(ui.server, index, containers=0, processes=1, connections=0, cpu=cpu)
    ui.open("?view=hosts&mode=table&node=host%3Ahost-2")
    ui.page.wait_for_selector("#details[data-state=loaded] .badge.status")
    symbol = "(e) => getComputedStyle(e, '::before').content"
    cells = {host: ui.page.eval_on_selector(f"#table-body .tr[data-id='host:{host}'] .status", symbol)
             for host in ("host-0", "host-1", "host-2")}
    assert len(set(cells.values())) == 3, cells  # healthy, warning, critical: three shapes
    assert "warning" in cells["host-1"] and "critical" in cells["host-2"]  # and words for screen readers
    assert ui.page.eval_on_selector("#details .badge.status", symbol) == cells["host-2"]
    assert ui.page.inner_text("#details .badge.status") == "up"  # the status itself as it was


def luminance(rgb: str) -> float:
    """The relative luminance (WCAG 2) of a CSS colour, ``#rrggbb`` or ``rgb(r, g, b)``."""
    rgb = rgb.strip()
    if rgb.startswith("#"):
        rgb = "#" + "".join(c * 2 for c in rgb[1:]) if len(rgb) == 4 else rgb
        channels = [int(rgb[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    else:
        channels = [int(part) / 255 for part in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_health_colours_are_legible_as_text_and_as_marks(ui: Ui) -> None:
    """A command "completed" was 3.45:1 on white, "failed" and stderr below 4.5:1, the warning
    and unknown dots below 3:1 (WCAG: 4.5:1 for text, 3:1 for graphics)."""
    ui.open()
    colours = ui.page.evaluate("""async () => {
      const css = getComputedStyle(document.documentElement);
      const named = Object.fromEntries(['healthy', 'warning', 'critical', 'unknown', 'panel', 'bg']
        .map((n) => [n, css.getPropertyValue('--' + n).trim()]));
      const { COLOURS } = await import('/ui/js/health.js');
      return { ...named, pre: getComputedStyle(document.querySelector('#empty-command')).backgroundColor,
               bar: getComputedStyle(document.querySelector('.topbar')).backgroundColor, graph: COLOURS }; }""")
    for text in ("healthy", "critical"):  # "completed", "failed", sign-in errors, stderr in a <pre>
        for ground in ("panel", "pre"):
            assert contrast(colours[text], colours[ground]) >= 4.5, (text, ground, colours)
    for mark in ("healthy", "warning", "critical", "unknown"):  # dots, symbols, graph nodes
        for ground in ("panel", "bg", "bar"):
            assert contrast(colours[mark], colours[ground]) >= 3, (mark, ground, colours)
        assert colours["graph"][mark] == colours[mark]  # the graph draws with the same colours


def test_the_details_close_with_escape_and_the_focus_goes_back_to_the_node(ui: Ui) -> None:
    """Close (×) sent the focus to <body>, Escape did nothing, and a link to another
    node (gone as the panel showed that node) left the focus on <body> too."""
    post_report(ui.server, 0, containers=4, processes=2, connections=0)
    node = container(0, 1)
    ui.open("?view=containers&mode=table")
    row = f"#table-body .tr[data-id='{node}']"
    focused_row = "() => document.activeElement.dataset.id || document.activeElement.tagName"
    for close in ("Escape", "#details-close"):
        ui.page.focus(row)
        ui.page.keyboard.press("Enter")
        ui.page.wait_for_selector(f"#details[data-state=loaded][data-node='{node}']")
        if close != "Escape":
            ui.page.focus(close)
        ui.page.keyboard.press("Escape" if close == "Escape" else "Enter")
        ui.page.wait_for_selector("#details", state="hidden")
        assert ui.page.evaluate(focused_row) == node, close
        assert "node=" not in ui.page.url

    ui.page.keyboard.press("Enter")
    ui.page.focus("[data-list=parents] a")
    ui.page.keyboard.press("Enter")  # to the container's host
    ui.page.wait_for_selector("#details[data-state=loaded][data-node='host:host-0']")
    assert ui.page.evaluate("document.activeElement.id") == "details-title"

    ui.page.click("[data-mode=graph]")
    ui.page.keyboard.press("Escape")  # in the graph, the focus goes to the graph
    ui.page.wait_for_selector("#details", state="hidden")
    assert ui.page.evaluate("document.activeElement.id") == "canvas"


def test_dialogs_buttons_sparklines_and_the_long_table_are_named_and_placed(ui: Ui) -> None:
    """The dialogs had no name, the zoom buttons were "+" and "−", sparklines were
    unnamed images, and a screen reader counted the table's rows in the DOM (a
    screenful) instead of its rows."""
    ui.page.goto(ui.server.base_url + "/")
    ui.page.wait_for_selector("#signin[open]")
    assert ui.page.get_by_role("dialog", name="Sign in to trioscope").is_visible()
    assert ui.page.evaluate("""[...document.querySelectorAll('dialog')].every((d) =>
        document.getElementById(d.getAttribute('aria-labelledby'))?.tagName === 'H2')""")
    post_report(ui.server, 0, containers=0, processes=120, connections=0)
    ui.open("?node=host%3Ahost-0")
    for name in ("Zoom in", "Zoom out"):
        assert ui.page.get_by_role("button", name=name, exact=True).count() == 1
    ui.page.wait_for_selector("#details[data-state=loaded] svg.sparkline")
    assert ui.page.eval_on_selector_all("svg.sparkline", "svgs => svgs.every((s) => s.getAttribute('aria-hidden') === 'true')")
    ui.page.click("[data-view=processes]")
    ui.page.click("#group-by-name")  # one row per process: 120 and more
    ui.page.click("[data-mode=table]")
    ui.page.wait_for_function("() => Number(document.querySelector('#counts').dataset.shown) > 100")
    shown = ui.shown()
    assert ui.page.get_attribute("#table", "aria-rowcount") == str(shown + 1)
    ui.page.evaluate("document.querySelector('#table-scroll').scrollTop = 1e6")
    ui.page.wait_for_function("""(n) => [...document.querySelectorAll('#table-body .tr')]
        .some((r) => r.getAttribute('aria-rowindex') === String(n + 1))""", arg=shown)
    assert ui.page.get_attribute("#table-head", "aria-rowindex") == "1"


def test_the_graph_says_what_it_shows_and_where_to_read_it(ui: Ui) -> None:
    """The canvas was no element of the accessibility tree: nothing said what it
    showed, nor that the Table display is the same nodes, usable from the keyboard."""
    for index in range(3):
        post_report(ui.server, index, containers=0, processes=1, connections=0)
    ui.open()
    ui.wait_for_nodes({"host:host-0", "host:host-1", "host:host-2"})
    graph = ui.page.get_by_role("img", name="Topology graph of 3 nodes: the Table display lists them", exact=False)
    graph.wait_for()
    ui.page.fill("#search", "host-1")
    ui.page.get_by_role("img", name="Topology graph of 1 of 3 nodes", exact=False).wait_for()
