"""An accessibility review's findings (WCAG 2.2 AA), each as what a user of the
keyboard, of a screen reader, of a zoomed or narrow window, or who tells colours
apart poorly meets on the page: dialogs answer Enter with their action, the
graph's health reads by shape (and its names under a contrast theme), the graph
pans from the keyboard, nothing overlaps at 400 % zoom, the table's columns and
selection are within reach, and the page says where it is. (An alert's time:
test_ui_alerts.py.)"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.synthetic import host_report
from trioscope.domain.topology import process_id

from .conftest import Ui, post_report
from .test_ui import enrolled_probe, enrolled_running
from .test_ui_access import container


def controls_of_a_running_container(ui: Ui) -> None:
    """Alice's enrolled probe's running container, its details open with their controls."""
    enrolled_probe(ui.server, {"Authorization": f"Bearer {ui.server.user_token('alice', 'acme', 'OPERATOR')}"})
    ui.open(f"?view=containers&mode=table&node={quote(enrolled_running())}")
    ui.page.wait_for_selector("[data-control=exec]")


def test_enter_in_the_run_command_dialog_runs_the_command(ui: Ui) -> None:
    """Cancel came first of two submit buttons: Enter in the field cancelled."""
    controls_of_a_running_container(ui)
    ui.page.click("[data-control=exec]")
    ui.page.wait_for_selector("#confirm[open]")
    ui.page.keyboard.type("ls -l /")  # the field has the focus
    ui.page.keyboard.press("Enter")
    ui.page.wait_for_selector("#confirm", state="hidden")
    ui.page.locator(".commands li[data-command]", has_text="exec").wait_for()

    ui.page.click("[data-control=exec]")  # Cancel still cancels
    ui.page.fill("#confirm-input", "true")
    ui.page.click("#confirm-cancel")
    ui.page.wait_for_selector("#confirm", state="hidden")
    assert ui.page.evaluate("document.querySelector('#confirm').returnValue") == "cancel"
    assert ui.page.locator(".commands li[data-command]").count() == 1


def test_a_destructive_confirmation_names_its_action_and_starts_on_cancel(ui: Ui) -> None:
    """The buttons said "Cancel" and "OK": nothing of what OK does."""
    controls_of_a_running_container(ui)
    ui.page.click("[data-control=stop]")
    ui.page.wait_for_selector("#confirm[open]")
    assert ui.page.inner_text("#confirm-ok") == "Stop svc-0-1"
    assert ui.page.evaluate("document.activeElement.id") == "confirm-cancel"  # Enter at once stops nothing
    ui.page.keyboard.press("Enter")
    ui.page.wait_for_selector("#confirm", state="hidden")
    ui.page.click("[data-control=exec]")
    ui.page.wait_for_selector("#confirm[open]")
    assert ui.page.inner_text("#confirm-ok") == "Run"
    ui.page.keyboard.press("Escape")
    assert ui.page.locator(".commands li[data-command]").count() == 0


# Pixels of the mark drawn in a node: light ones (a white ▲ or ✖, a ring's
# hollow) within half its radius of its centre, as [dx, dy] offsets.
MARK_PIXELS = """([id, radius]) => {
  const canvas = document.querySelector('#canvas'), rect = canvas.getBoundingClientRect();
  const at = trioscope.position(id), half = Math.floor(radius / 2);
  const x = Math.round(at.x - rect.left), y = Math.round(at.y - rect.top);
  const { data } = canvas.getContext('2d').getImageData(x - half, y - half, 2 * half + 1, 2 * half + 1);
  const light = [];
  for (let i = 0; i < data.length; i += 4) {
    if (Math.min(data[i], data[i + 1], data[i + 2]) > 200) light.push([(i / 4) % (2 * half + 1) - half, Math.floor(i / 4 / (2 * half + 1)) - half]);
  }
  return light; }"""


def test_the_graph_draws_the_legends_health_marks_on_nodes_big_enough_to_show_them(ui: Ui) -> None:
    """Health in the graph was colour alone, healthy and critical of equal
    lightness, where the legend promised ▲, ✖ and ○."""
    body = host_report(0, timestamp=time.time(), containers=0, processes=4, connections=0)
    statuses = {"healthy": "sleeping", "warning": "stopped", "critical": "zombie", "unknown": "no-such-state"}
    for process, status in zip(body["processes_info"]["processes"], statuses.values(), strict=True):
        process["status"] = status
    assert httpx.post(f"{ui.server.base_url}/api/v1/reports", json=body, timeout=10).status_code == 202
    ids = {health: process_id("host-0", 1000 + i) for i, health in enumerate(statuses)}
    ui.open("?view=processes&group=0")
    ui.wait_for_nodes(set(ids.values()))
    ui.page.wait_for_function("() => trioscope.idle()")
    radius = ui.page.evaluate("(id) => trioscope.radius(id) * trioscope.zoom()", ids["healthy"])  # on screen
    assert radius >= 6
    marks = {health: ui.page.evaluate(MARK_PIXELS, [node, radius]) for health, node in ids.items()}
    assert marks["healthy"] == []  # a plain disc
    assert marks["warning"] and marks["critical"] and marks["unknown"]
    assert marks["warning"] != marks["critical"]  # ▲ and ✖ are not the same shape

    draws = ui.page.evaluate("trioscope.draws()")
    for _ in range(3):  # to below 6 px: dots, no marks
        ui.page.click("#zoom-out")
    ui.page.wait_for_function("(before) => trioscope.draws() > before && trioscope.idle()", arg=draws)
    small = ui.page.evaluate("(id) => trioscope.radius(id) * trioscope.zoom()", ids["healthy"])
    assert small < 6
    assert ui.page.evaluate(MARK_PIXELS, [ids["critical"], small]) == []


def contrast(a: str, b: str) -> float:
    """WCAG's contrast ratio of two computed colours (``rgb(r, g, b)``)."""
    def luminance(colour: str) -> float:
        channels = [int(c) / 255 for c in colour[colour.index("(") + 1:colour.index(")")].split(",")[:3]]
        r, g, b = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    high, low = sorted([luminance(a), luminance(b)], reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_health_marks_stand_out_3_to_1_where_they_are_shown_and_the_graph_uses_the_same_colours(ui: Ui) -> None:
    """The warning ▲ was 2.8:1 on a selected row, 2.9:1 on the details' badge."""
    post_report(ui.server, 0, containers=2, processes=0, connections=0)  # svc-0-0 paused: a warning
    ui.open(f"?view=containers&mode=table&node={quote(container(0, 0))}")
    ui.page.wait_for_selector("#details[data-state=loaded] .badge.status.warning")
    ui.page.wait_for_selector("#table-body .tr.selected .status.warning")
    pairs = ui.page.evaluate("""() => {
      const mark = (s) => getComputedStyle(document.querySelector(s), '::before').color;
      const ground = (s) => getComputedStyle(document.querySelector(s)).backgroundColor;
      return [[mark('#table-body .tr.selected .status.warning'), ground('#table-body .tr.selected')],
              [mark('#details .badge.status.warning'), ground('#details .badge.status.warning')]]; }""")
    for mark, ground in pairs:
        assert contrast(mark, ground) >= 3, (mark, ground)
    # Healthy and critical are text too (a command's state): 4.5:1 on white.
    css, graph = ui.page.evaluate("""async () => {
      const { COLOURS } = await import('/ui/js/health.js');
      const probe = document.createElement('span');
      document.body.append(probe);
      const css = {}, graph = {};
      for (const [name, value] of Object.entries(COLOURS)) {
        probe.style.color = `var(--${name})`;
        css[name] = getComputedStyle(probe).color;
        probe.style.color = value;
        graph[name] = getComputedStyle(probe).color;
      }
      probe.remove();
      return [css, graph]; }""")
    assert css == graph
    for name in ("healthy", "critical"):
        assert contrast(css[name], "rgb(255, 255, 255)") >= 4.5


def test_at_200_and_400_percent_zoom_the_page_scrolls_instead_of_overlapping(ui: Ui) -> None:
    """At 700 x 450 the stats bar lay over the details' title and Close button;
    at 320 x 256 (a 1280 px window at 400 %) the view was 0 px high."""
    post_report(ui.server, 0, containers=2, processes=0, connections=0)
    ui.page.set_viewport_size({"width": 700, "height": 450})
    ui.open(f"?view=containers&mode=table&node={quote(container(0, 1))}")
    ui.page.wait_for_selector("#details[data-state=loaded]")
    for width, height in [(700, 450), (320, 256)]:
        ui.page.set_viewport_size({"width": width, "height": height})
        seen = ui.page.evaluate("""() => {
          const box = (s) => document.querySelector(s).getBoundingClientRect();
          const close = document.querySelector('#details-close');
          close.scrollIntoView({ block: 'center' });
          const at = close.getBoundingClientRect();
          const top = document.elementFromPoint(at.left + at.width / 2, at.top + at.height / 2);
          return { covered: top === close ? null : (top ? top.className || top.tagName : 'nothing'),
                   view: box('main').height, under: box('.statsbar').top - Math.max(box('#details').bottom, box('#stage').bottom),
                   sideways: document.scrollingElement.scrollWidth - innerWidth }; }""")
        assert seen["covered"] is None, (width, height, seen)
        assert seen["under"] >= 0, (width, height, seen)  # the stats bar comes after the view and the details, not over them
        assert seen["view"] >= 200, (width, height, seen)  # the table or the graph keeps room to be used
        assert seen["sideways"] <= 0, (width, height, seen)


def test_at_320_px_the_tables_columns_out_of_sight_are_reached_from_the_keyboard(ui: Ui) -> None:
    """The rows took no ArrowLeft/ArrowRight, and a header's button focused out of
    sight scrolled the header alone (rows and header as wide as the window)."""
    post_report(ui.server, 0, containers=3, processes=0, connections=0)
    ui.page.set_viewport_size({"width": 320, "height": 640})
    ui.open("?view=containers&mode=table")
    ui.page.wait_for_selector("#table-body .tr")
    geometry = """() => { const box = (e) => e.getBoundingClientRect();
      const table = box(document.querySelector('#table')), heads = [...document.querySelectorAll('.thead .th')];
      const row = document.querySelector('#table-body .tr');
      return { rows: document.querySelector('#table-scroll').scrollLeft, head: document.querySelector('.thead').scrollLeft,
               lastRight: box(heads.at(-1)).right - table.right, rowRight: box(row).right - box(row.lastElementChild).right,
               headRight: box(document.querySelector('#table-head')).right - box(heads.at(-1)).right,
               focusedIn: (() => { const f = box(document.activeElement); return f.left >= table.left - 1 && f.right <= table.right + 1; })() }; }"""

    def settled() -> dict[str, Any]:
        """The geometry once the header has followed the rows (a frame later: scroll events)."""
        ui.page.wait_for_function(f"() => {{ const g = ({geometry})(); return g.head === g.rows; }}")
        seen: dict[str, Any] = ui.page.evaluate(geometry)
        return seen

    ui.page.focus("#table-body .tr >> nth=0")
    ui.page.keyboard.press("ArrowRight")
    ui.page.wait_for_function("() => document.querySelector('#table-scroll').scrollLeft > 0")
    assert settled()["rows"] > 0
    for _ in range(10):
        ui.page.keyboard.press("ArrowRight")
    ui.page.wait_for_function(f"() => ({geometry})().lastRight <= 1")  # the last column in sight
    end = settled()
    assert end["rowRight"] >= -1 and end["headRight"] >= -1, end  # rows and header as wide as their columns
    ui.page.keyboard.press("ArrowLeft")
    ui.page.wait_for_function(f"(end) => {{ const g = ({geometry})(); return 0 < g.rows && g.rows < end; }}", arg=end["rows"])
    ui.page.keyboard.press("Home")  # still the rows' own: the first row
    assert ui.page.evaluate("document.activeElement.getAttribute('aria-rowindex')") == "2"

    ui.page.evaluate("document.querySelector('#table-scroll').scrollLeft = 0")
    settled()
    ui.page.focus(".thead .th >> nth=-2 >> button")  # a header out of sight, as Tab reaches it
    ui.page.wait_for_function(f"() => {{ const g = ({geometry})(); return g.focusedIn && g.rows === g.head && g.rows > 0; }}")


def test_the_selected_row_is_exposed_marked_beyond_colour_and_its_opening_announced(ui: Ui) -> None:
    """The selected row only changed its background (gone in forced colours),
    said nothing to a screen reader, and opening it from the keyboard was silent."""
    post_report(ui.server, 0, containers=3, processes=0, connections=0)
    ui.open("?view=containers&mode=table")
    ui.page.wait_for_selector("#table-body .tr")
    assert ui.page.get_attribute("#table", "role") == "grid"
    ui.page.focus("#table-body .tr >> nth=0")
    ui.page.keyboard.press("ArrowDown")
    ui.page.keyboard.press("Enter")
    ui.page.wait_for_selector(f"#details[data-state=loaded][data-node='{container(0, 1)}']")
    ui.page.wait_for_function("() => document.querySelector('#announcer').textContent === 'Details of svc-0-1 opened'")
    rows = f"""() => [...document.querySelectorAll('#table-body .tr')].map((r) =>
        [r.dataset.id === '{container(0, 1)}', r.getAttribute('aria-selected'), getComputedStyle(r).borderLeftWidth])"""
    ui.page.wait_for_function(f"() => ({rows})().some(([mine, selected]) => mine && selected === 'true')")
    ui.page.emulate_media(forced_colors="active")  # a background colour is no mark there
    for mine, selected, border in ui.page.evaluate(rows):
        assert selected == ("true" if mine else "false")
        assert (border != "0px") == mine, (mine, border)


def test_controls_have_visible_borders_names_as_labelled_and_no_decoration_read_aloud(ui: Ui) -> None:
    """Inputs' and buttons' borders were 1.3:1; "size by" was named "Size nodes
    by"; the connection's dot, the sort arrow and the notice's dot were read out."""
    post_report(ui.server, 0, containers=2, processes=0, connections=0)
    ui.open("?view=containers&mode=table&bogus=1&type=nope")  # type= is not shown here: a notice says so
    ui.page.wait_for_selector(".th[aria-sort]")
    borders = ui.page.evaluate("""() => ['#search', '#size-by', '#clear-filters', '#metric-min'].map((s) => {
      const e = document.querySelector(s);
      return [getComputedStyle(e).borderTopColor, getComputedStyle(e.parentElement.closest('section')).backgroundColor]; })""")
    borders += ui.page.evaluate("""() => [[getComputedStyle(document.querySelector('#sign-out')).borderTopColor,
                                         getComputedStyle(document.querySelector('.topbar')).backgroundColor]]""")
    for border, ground in borders:
        assert contrast(border, ground) >= 3, (border, ground)
    page = ui.page
    assert page.get_by_role("combobox", name="Size by", exact=True).count() == 1
    # Names as Chromium's accessibility tree has them (what a screen reader reads).
    names = {node["name"]["value"] for node in page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")["nodes"]
             if node.get("name", {}).get("value")}
    assert "Name" in names and "live" in names, sorted(names)
    assert not any(name.startswith("●") or name.endswith("▲") for name in names), sorted(names)


def test_the_title_and_a_heading_say_which_view_display_and_node_are_shown(ui: Ui) -> None:
    """The title was "trioscope" whatever was shown, and the page had no h1."""
    post_report(ui.server, 0, containers=2, processes=0, connections=0)
    ui.open(f"?view=containers&mode=table&node={quote(container(0, 1))}")
    ui.page.wait_for_function("() => document.title === 'svc-0-1 · Containers (table) · trioscope'")
    assert ui.page.locator("h1").count() == 1
    ui.page.wait_for_function("() => document.querySelector('h1').textContent === 'Containers (table): 2 nodes'")
    ui.page.click("#mode-graph")
    ui.page.wait_for_function("() => document.title === 'svc-0-1 · Containers (graph) · trioscope'")
    ui.page.click("#details-close")
    ui.page.wait_for_function("() => document.title === 'Containers (graph) · trioscope'")
    ui.page.click("[data-view=hosts]")
    ui.page.wait_for_function("() => document.querySelector('h1').textContent === 'Hosts (graph): 1 node'")


def test_a_sign_in_error_is_tied_to_the_token_field_while_it_shows(ui: Ui) -> None:
    """The error was an alert read once, then nowhere from the field it is about."""
    ui.page.goto(ui.server.base_url + "/")
    ui.page.wait_for_selector("#signin[open]")
    field = "() => { const f = document.querySelector('#signin-token'); return [f.getAttribute('aria-invalid'), f.getAttribute('aria-describedby')]; }"
    assert ui.page.evaluate(field) == [None, None]
    ui.page.click("#signin-submit")  # nothing pasted
    ui.page.wait_for_function("() => document.querySelector('#signin-error').textContent !== ''")
    assert ui.page.evaluate(field) == ["true", "signin-error"]
    ui.page.fill("#signin-token", ui.server.user_token())
    ui.page.click("#signin-submit")
    ui.page.wait_for_selector("html[data-ready=true]")
    ui.page.click("#sign-out")
    ui.page.wait_for_selector("#signin[open]")
    assert ui.page.evaluate(field) == [None, None]


def test_the_graph_pans_from_the_keyboard(ui: Ui) -> None:
    """Only a pointer's drag moved the picture; the canvas was no Tab stop."""
    post_report(ui.server, 0, containers=2, processes=0, connections=0)
    ui.open("?view=containers")
    node = container(0, 1)
    ui.wait_for_nodes({node})
    ui.page.focus("#clear-filters")
    ui.page.keyboard.press("Tab")  # the alerts bar is hidden: the view's canvas is next
    assert ui.page.evaluate("document.activeElement.id") == "canvas"
    (x, y), = ui.positions({node}).values()
    ui.page.keyboard.press("ArrowRight")  # look further right: the picture moves left
    ui.page.keyboard.press("ArrowDown")
    (right, down), = ui.positions({node}).values()
    assert right < x and down < y
    ui.page.keyboard.press("ArrowLeft")
    ui.page.keyboard.press("ArrowUp")
    assert ui.positions({node})[node] == pytest.approx((x, y))
    zoom = ui.page.evaluate("trioscope.zoom()")
    ui.page.keyboard.press("-")
    assert ui.page.evaluate("trioscope.zoom()") < zoom


def test_under_forced_colours_the_graph_draws_in_the_themes_colours(ui: Ui) -> None:
    """The canvas is not repainted by a contrast theme: its names stayed dark grey on black."""
    post_report(ui.server, 0, containers=2, processes=0, connections=0)
    ui.page.emulate_media(forced_colors="active", color_scheme="dark")
    ui.open("?view=containers")
    ui.wait_for_nodes({container(0, 1)})
    ui.page.wait_for_function("() => trioscope.idle() && trioscope.groupLabels().length === 1")
    # The lightest pixel of the group's name, against the theme's background (black).
    lightest = ui.page.evaluate("""() => {
      const canvas = document.querySelector('#canvas'), rect = canvas.getBoundingClientRect();
      const [label] = trioscope.groupLabels();
      const { data } = canvas.getContext('2d').getImageData(Math.round(label.left - rect.left), Math.round(label.y - rect.top - 12),
                                                            Math.round(label.right - label.left), 14);
      let best = [0, 0, 0];
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] > 200 && data[i] + data[i + 1] + data[i + 2] > best[0] + best[1] + best[2]) best = [data[i], data[i + 1], data[i + 2]];
      }
      return `rgb(${best.join(', ')})`; }""")
    assert contrast(lightest, "rgb(0, 0, 0)") >= 4.5, lightest
