"""The details panel's sparklines in a real Chromium against a real server:
their points are laid out by time over the window, and a stretch without
points (the probe down, the container stopped) is drawn as a gap."""

from __future__ import annotations

import time
from datetime import datetime

import httpx

from .conftest import Ui, post_report

HOST = "host:host-0"
WIDTH = 120
"""The sparkline's viewBox width."""
WINDOW_S = 900
"""The details' history window (15 minutes)."""


def cpu_times(ui: Ui) -> list[float]:
    """The unix times of host-0's CPU points, as the details API gives them to the page."""
    answer = httpx.get(f"{ui.server.base_url}/api/v1/query/nodes/{HOST}?duration=15m", timeout=10)
    assert answer.status_code == 200, answer.text
    return [datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00")).timestamp()
            for p in answer.json()["metrics_history"]["points"] if "cpu_usage" in p]


def test_a_gap_in_the_history_is_drawn_as_a_gap_and_points_are_placed_by_time(ui: Ui) -> None:
    # Three reports 15 s apart ten minutes ago, none for nine minutes (the probe
    # was down), three more up to now: every line was six points evenly spaced.
    now = time.time()
    for at, cpu in ((now - 600, 20.0), (now - 585, 30.0), (now - 570, 40.0),
                    (now - 30, 50.0), (now - 15, 60.0), (now, 70.0)):
        post_report(ui.server, 0, timestamp=at, cpu=cpu)
    times = cpu_times(ui)
    assert len(times) == 6 and times[3] - times[2] > 500

    ui.open("?node=host%3Ahost-0")
    line = "#details[data-state=loaded] [data-metric=cpu_usage] svg.sparkline"
    ui.page.wait_for_selector(f"{line}[data-points='6']")
    runs = ui.page.eval_on_selector_all(
        f"{line} polyline", "lines => lines.map(l => l.getAttribute('points').trim().split(/\\s+/)"
                            ".map(p => Number(p.split(',')[0])))")

    # No line across the nine minutes without points: one before, one after.
    assert [len(run) for run in runs] == [3, 3], runs
    assert ui.page.get_attribute(line, "data-runs") == "2"
    xs = [x for run in runs for x in run]
    # x is proportional to time, at the window's scale (120 units for 15 minutes):
    # the gap takes the width of nine minutes, a 15-second step the width of 15 s.
    scale = WIDTH / WINDOW_S
    for x, t in zip(xs, times, strict=True):
        assert abs((x - xs[0]) - (t - times[0]) * scale) < 0.2, (xs, times)
    assert 0 <= xs[0] and xs[-1] <= WIDTH
    assert xs[-1] > WIDTH - 5  # the newest point is at the window's end: now
