"""Debian's Chromium driven by Playwright, for the UI tests and benchmarks.

``tests/tools/chromium.sh`` installs Chromium when the machine lacks it;
Playwright never downloads a browser of its own. The flags keep a headless
Chromium from calling home (the machines' network is closed) and let it run as
root in a container.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Playwright

from tests.tools_path import tool_path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
"""Screenshots of every UI test end up here (kept by CI as artifacts)."""

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    """The Chromium executable, installed first if need be (takes a minute once)."""
    return tool_path("chromium.sh")


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=chromium_path(), args=FLAGS, headless=True)
