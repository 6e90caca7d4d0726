"""An accessibility review's findings (WCAG 2.2 AA), each as what a user of the
keyboard, of a screen reader, of a zoomed or narrow window, or who tells colours
apart poorly meets on the page: dialogs answer Enter with their action, the
graph's health reads by shape, nothing overlaps at 400 % zoom, the table's
columns and selection are within reach, and the page says where it is."""

from __future__ import annotations

from urllib.parse import quote

from .conftest import Ui
from .test_ui import enrolled_probe, enrolled_running


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
    """"Cancel / OK" said nothing of what OK does."""
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
